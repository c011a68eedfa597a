/** Auth API schemas; TypeScript types derive from them. */
import { type Static, Type } from 'typebox'

export const Role = Type.Union([Type.Literal('admin'), Type.Literal('user')])
export type Role = Static<typeof Role>

export const Username = Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' })

/** `POST /oauth/token`, form-encoded or JSON (OAuth 2 password and refresh grants). */
export const TokenRequest = Type.Union([
  Type.Object({
    grant_type: Type.Literal('password'),
    username: Type.String({ minLength: 1 }),
    password: Type.String({ minLength: 1 }),
  }),
  Type.Object({ grant_type: Type.Literal('refresh_token'), refresh_token: Type.String({ minLength: 1 }) }),
])
export type TokenRequest = Static<typeof TokenRequest>

export const TokenResponse = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('Bearer'),
  expires_in: Type.Integer(),
  refresh_token: Type.String(),
  role: Role,
})

export const UserCreate = Type.Object(
  { username: Username, password: Type.String({ minLength: 8 }), role: Type.Optional(Role) },
  { additionalProperties: false },
)
export type UserCreate = Static<typeof UserCreate>

/** A user as the API shows it: never the password hash. */
export const UserView = Type.Object({
  username: Type.String(),
  role: Role,
  enabled: Type.Boolean(),
  created_ts: Type.Integer(),
})
export type UserView = Static<typeof UserView>

/** A stored user. */
export interface UserRecord extends UserView {
  passwordHash: string
}

/** Claims of Tether access and refresh tokens. */
export interface TokenClaims {
  usr: string
  role: Role
  typ: 'access' | 'refresh'
}

export const ErrorResponse = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String() }),
})
