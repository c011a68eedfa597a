/**
 * API tokens: long-lived bearer tokens a user creates for scripts and devices, optionally scoped to some
 * buckets, devices or endpoints (read, write or both), and revocable. The token itself is a JWT naming its id;
 * the stored record decides whether it is still valid, so revocation takes effect at once.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { type Static, Type } from 'typebox'
import { RelayErrors } from '../errors.ts'
import type { KeyValueTable } from '../store/level-store.ts'
import { randomSecret } from './passwords.ts'
import { ErrorResponse } from './schemas.ts'

export const TokenScope = Type.Object(
  {
    type: Type.Union([Type.Literal('bucket'), Type.Literal('device'), Type.Literal('endpoint')]),
    id: Type.String({ minLength: 1, description: 'the resource id, or * for every resource of that type' }),
    access: Type.Union([Type.Literal('read'), Type.Literal('write'), Type.Literal('all')]),
  },
  { additionalProperties: false },
)
export type TokenScope = Static<typeof TokenScope>

export const ApiTokenCreate = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 128 }),
    scopes: Type.Optional(
      Type.Array(TokenScope, {
        maxItems: 100,
        description: 'absent: the token acts as its user; present: only these resources',
      }),
    ),
    expires_in: Type.Optional(Type.Integer({ minimum: 60, description: 'seconds; absent = until revoked' })),
  },
  { additionalProperties: false },
)
export type ApiTokenCreate = Static<typeof ApiTokenCreate>

export const ApiTokenView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  scopes: Type.Optional(Type.Array(TokenScope)),
  created_ts: Type.Integer(),
  expires_ts: Type.Optional(Type.Integer()),
})
export type ApiTokenView = Static<typeof ApiTokenView>

export interface ApiTokenRecord extends ApiTokenView {
  user: string
}

/** Claims of an API token (`typ: "api"`). */
export interface ApiTokenClaims {
  typ: 'api'
  usr: string
  jti: string
}

const key = (user: string, id: string) => `${user}/${id}`

/** The live record of an API token, or undefined when revoked, expired or unknown. */
export async function liveApiToken(
  table: KeyValueTable<ApiTokenRecord>,
  claims: ApiTokenClaims,
): Promise<ApiTokenRecord | undefined> {
  const record = await table.get(key(claims.usr, claims.jti))
  if (!record || (record.expires_ts !== undefined && record.expires_ts <= Date.now())) return undefined
  return record
}

/** The resource a request addresses, for scope checks: the most specific of bucket, endpoint, device. */
function addressed(req: FastifyRequest): { type: TokenScope['type']; id: string } | undefined {
  const p = (req.params ?? {}) as Record<string, string | undefined>
  if (p.bucket) return { type: 'bucket', id: p.bucket }
  if (p.endpoint) return { type: 'endpoint', id: p.endpoint }
  if (p.device) return { type: 'device', id: p.device }
  return undefined
}

/** Whether `scopes` grant `access` to one resource. */
export function scopesAllow(
  scopes: readonly TokenScope[],
  type: TokenScope['type'],
  id: string,
  access: 'read' | 'write',
): boolean {
  return scopes.some(
    (s) => s.type === type && (s.id === '*' || s.id === id) && (s.access === 'all' || s.access === access),
  )
}

/** Why a scoped token may not make this request, or undefined when a scope covers it. */
export function scopeRefusal(scopes: readonly TokenScope[], req: FastifyRequest): string | undefined {
  const target = addressed(req)
  const read = req.method === 'GET' || req.method === 'HEAD'
  const path = req.url.split('?')[0]
  if (!target) return `this token is scoped and ${req.method} ${path} names no bucket, device or endpoint`
  const ok = scopesAllow(scopes, target.type, target.id, read ? 'read' : 'write')
  return ok
    ? undefined
    : `this token's scopes do not allow ${read ? 'reading' : 'writing'} ${target.type} ${target.id}`
}

/** Routes `GET|POST /v1/users/{user}/tokens`, `DELETE /v1/users/{user}/tokens/{token}`. */
export async function apiTokenRoutes(app: FastifyInstance, table: KeyValueTable<ApiTokenRecord>) {
  const owner = { onRequest: app.requireOwner }
  const errors = { '4xx': ErrorResponse }
  const view = ({ user: _, ...rest }: ApiTokenRecord): ApiTokenView => rest

  app.get(
    '/v1/users/:user/tokens',
    { ...owner, schema: { response: { 200: Type.Array(ApiTokenView), ...errors } } },
    async (req) => (await table.values(`${(req.params as { user: string }).user}/`)).map(view),
  )

  app.post(
    '/v1/users/:user/tokens',
    {
      ...owner,
      schema: {
        body: ApiTokenCreate,
        response: { 201: Type.Intersect([ApiTokenView, Type.Object({ token: Type.String() })]), ...errors },
      },
    },
    async (req, reply) => {
      const { user } = req.params as { user: string }
      // A scoped token cannot mint a wider one.
      if (req.principal?.scopes)
        throw new RelayErrors.TETHER_ERR_FORBIDDEN('a scoped token cannot create tokens')
      const body = req.body as ApiTokenCreate
      const now = Date.now()
      const record: ApiTokenRecord = {
        user,
        id: randomSecret(9),
        name: body.name,
        ...(body.scopes ? { scopes: body.scopes } : {}),
        created_ts: now,
        ...(body.expires_in ? { expires_ts: now + body.expires_in * 1000 } : {}),
      }
      await table.put(key(user, record.id), record)
      const claims: ApiTokenClaims = { typ: 'api', usr: user, jti: record.id }
      reply.code(201)
      return { ...view(record), token: app.jwt.sign(claims) }
    },
  )

  app.delete(
    '/v1/users/:user/tokens/:token',
    { ...owner, schema: { response: errors } },
    async (req, reply) => {
      const { user, token } = req.params as { user: string; token: string }
      if (!(await table.get(key(user, token)))) throw new RelayErrors.TETHER_ERR_NOT_FOUND(`token ${token}`)
      await table.del(key(user, token))
      reply.code(204)
    },
  )
}
