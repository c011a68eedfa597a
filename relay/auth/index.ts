/**
 * Auth capability: users with roles, JWT access/refresh tokens (`POST /oauth/token`), the first-start admin,
 * and the request guards other plugins use (`authenticate`, `requireAdmin`, `requireOwner`).
 */
import fastifyFormbody from '@fastify/formbody'
import fastifyJwt from '@fastify/jwt'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Type } from 'typebox'
import { RelayErrors } from '../errors.ts'
import type { KeyValueTable } from '../store/level-store.ts'
import {
  type ApiTokenClaims,
  type ApiTokenRecord,
  apiTokenRoutes,
  liveApiToken,
  scopeRefusal,
  type TokenScope,
} from './api-tokens.ts'
import { hashSecret, randomSecret, verifySecretOrDummy } from './passwords.ts'
import {
  ErrorResponse,
  type TokenClaims,
  TokenRequest,
  TokenResponse,
  UserCreate,
  type UserRecord,
  UserView,
} from './schemas.ts'
import type { UsersStore } from './users-store.ts'

/** Who made the request, once authenticated. */
export interface Principal {
  user: string
  role: 'admin' | 'user'
  /** Set for a scoped API token: the only resources it may touch. */
  scopes?: readonly TokenScope[]
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal
  }
  interface FastifyInstance {
    /** onRequest guard: a valid access token is required. */
    authenticate(req: FastifyRequest, reply: FastifyReply): Promise<void>
    /** onRequest guard: an admin's access token is required. */
    requireAdmin(req: FastifyRequest, reply: FastifyReply): Promise<void>
    /** onRequest guard: the token's user must be the `:user` of the path, or an admin (else 404). */
    requireOwner(req: FastifyRequest, reply: FastifyReply): Promise<void>
  }
}

export interface AuthOptions {
  users: UsersStore
  /** API tokens (`/v1/users/{user}/tokens`). */
  apiTokens: KeyValueTable<ApiTokenRecord>
  meta: KeyValueTable<string>
  accessTokenTtlSec: number
  refreshTokenTtlSec: number
  /** First start: the admin's password; a random one is generated when absent. */
  adminPassword?: string
  /** Called once when the admin user is created, with the password to show. */
  onAdminCreated?: (username: string, password: string, generated: boolean) => void
}

/** Loads the JWT secret from the data dir, creating it at first start. */
async function jwtSecret(meta: KeyValueTable<string>): Promise<string> {
  const existing = await meta.get('jwtSecret')
  if (existing) return existing
  const secret = randomSecret(48)
  await meta.put('jwtSecret', secret)
  return secret
}

/** Reads a bearer token from `Authorization` or `?authorization=` (Thinger-compatible). */
export function bearerToken(req: FastifyRequest): string | undefined {
  const header = req.headers.authorization
  if (header) {
    const [scheme, token] = header.split(' ')
    return scheme?.toLowerCase() === 'bearer' && token ? token : undefined
  }
  const query = req.query as { authorization?: unknown } | undefined
  return typeof query?.authorization === 'string' ? query.authorization : undefined
}

async function authPlugin(app: FastifyInstance, opts: AuthOptions): Promise<void> {
  const { users } = opts
  await app.register(fastifyFormbody)
  await app.register(fastifyJwt, { secret: await jwtSecret(opts.meta) })

  if ((await users.list()).length === 0) {
    const password = opts.adminPassword ?? randomSecret(12)
    await users.put({
      username: 'admin',
      role: 'admin',
      enabled: true,
      created_ts: Date.now(),
      passwordHash: await hashSecret(password),
    })
    opts.onAdminCreated?.('admin', password, !opts.adminPassword)
  }

  const verifyToken = async (req: FastifyRequest): Promise<Principal> => {
    const token = bearerToken(req)
    if (!token) throw new RelayErrors.TETHER_ERR_UNAUTHORIZED('missing bearer token (Authorization header)')
    let claims: TokenClaims | ApiTokenClaims
    try {
      claims = app.jwt.verify<TokenClaims | ApiTokenClaims>(token)
    } catch (err) {
      const expired = (err as { code?: string }).code === 'FAST_JWT_EXPIRED'
      throw new RelayErrors.TETHER_ERR_UNAUTHORIZED(expired ? 'token expired' : 'invalid token')
    }
    if (claims.typ !== 'access' && claims.typ !== 'api') {
      throw new RelayErrors.TETHER_ERR_UNAUTHORIZED('not an access token')
    }
    const user = await users.get(claims.usr)
    if (!user?.enabled) throw new RelayErrors.TETHER_ERR_UNAUTHORIZED('user disabled or removed')
    if (claims.typ === 'access') return { user: user.username, role: user.role }
    const record = await liveApiToken(opts.apiTokens, claims as ApiTokenClaims)
    if (!record) throw new RelayErrors.TETHER_ERR_UNAUTHORIZED('token revoked or expired')
    // A scoped token never acts as an admin, whoever created it.
    if (record.scopes) return { user: user.username, role: 'user', scopes: record.scopes }
    return { user: user.username, role: user.role }
  }

  /** verifyToken, then the scope check of a scoped API token against the route's resource. */
  const principalOf = async (req: FastifyRequest): Promise<Principal> => {
    const principal = await verifyToken(req)
    const refusal = principal.scopes && scopeRefusal(principal.scopes, req)
    if (refusal) throw new RelayErrors.TETHER_ERR_FORBIDDEN(refusal)
    return principal
  }

  app.decorate('authenticate', async (req: FastifyRequest) => {
    req.principal = await principalOf(req)
  })
  app.decorate('requireAdmin', async (req: FastifyRequest) => {
    req.principal = await principalOf(req)
    if (req.principal.role !== 'admin') throw new RelayErrors.TETHER_ERR_FORBIDDEN('admin role required')
  })
  app.decorate('requireOwner', async (req: FastifyRequest) => {
    req.principal = await principalOf(req)
    const owner = (req.params as { user?: string }).user
    // Another user's resources do not exist for you: 404, the same as for a missing one (no enumeration).
    if (req.principal.role !== 'admin' && owner !== req.principal.user) {
      throw new RelayErrors.TETHER_ERR_NOT_FOUND(req.url.split('?')[0] as string)
    }
  })

  const issue = (user: UserRecord) => ({
    access_token: app.jwt.sign({ usr: user.username, role: user.role, typ: 'access' } satisfies TokenClaims, {
      expiresIn: opts.accessTokenTtlSec,
    }),
    token_type: 'Bearer' as const,
    expires_in: opts.accessTokenTtlSec,
    refresh_token: app.jwt.sign(
      { usr: user.username, role: user.role, typ: 'refresh' } satisfies TokenClaims,
      {
        expiresIn: opts.refreshTokenTtlSec,
      },
    ),
    role: user.role,
  })

  app.post(
    '/oauth/token',
    { schema: { body: TokenRequest, response: { 200: TokenResponse, '4xx': ErrorResponse } } },
    async (req) => {
      const body = req.body as TokenRequest
      if (body.grant_type === 'password') {
        const user = await users.get(body.username)
        const ok = (await verifySecretOrDummy(body.password, user?.passwordHash)) && user?.enabled === true
        if (!ok) throw new RelayErrors.TETHER_ERR_BAD_CREDENTIALS()
        return issue(user)
      }
      let claims: TokenClaims
      try {
        claims = app.jwt.verify<TokenClaims>(body.refresh_token)
      } catch {
        throw new RelayErrors.TETHER_ERR_UNAUTHORIZED('invalid or expired refresh token')
      }
      const user = await users.get(claims.usr)
      if (claims.typ !== 'refresh' || !user?.enabled) {
        throw new RelayErrors.TETHER_ERR_UNAUTHORIZED('invalid refresh token')
      }
      return issue(user)
    },
  )

  const view = ({ passwordHash: _omit, ...user }: UserRecord) => user

  await apiTokenRoutes(app, opts.apiTokens)

  app.get(
    '/v1/users',
    { onRequest: app.requireAdmin, schema: { response: { 200: Type.Array(UserView) } } },
    async () => (await users.list()).map(view),
  )

  app.post(
    '/v1/users',
    {
      onRequest: app.requireAdmin,
      schema: { body: UserCreate, response: { 201: UserView, '4xx': ErrorResponse } },
    },
    async (req, reply) => {
      const body = req.body as UserCreate
      if (await users.get(body.username)) {
        throw new RelayErrors.TETHER_ERR_CONFLICT(`user ${body.username} already exists`)
      }
      const user: UserRecord = {
        username: body.username,
        role: body.role ?? 'user',
        enabled: true,
        created_ts: Date.now(),
        passwordHash: await hashSecret(body.password),
      }
      await users.put(user)
      reply.code(201)
      return view(user)
    },
  )
}

/** The auth plugin; named so capability plugins can declare it as a dependency. */
export default fp(authPlugin, { name: 'tether-auth', fastify: '5.x' })
