/**
 * Portals capability: signed links that open a portal session (`POST …/proxies/{proxy}/portal`), session
 * listing and revocation. Serving the portals themselves is PortalServer's job, ahead of fastify.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { ErrorResponse } from '../auth/schemas.ts'
import type { DevicesStore } from '../devices/devices-store.ts'
import { RelayErrors } from '../errors.ts'
import type { ProxiesStore } from '../proxies/proxies-store.ts'
import type { PortalRegistry } from './portal-registry.ts'
import { OPEN_PATH, PATH_MODE_PREFIX } from './portal-server.ts'
import type { PortalSessions } from './portal-sessions.ts'
import { PortalLink, PortalLinkRequest, type PortalParams, PortalSession, SessionParams } from './schemas.ts'

export interface PortalsOptions {
  registry: PortalRegistry
  sessions: PortalSessions
  proxies: ProxiesStore
  devices: DevicesStore
  portalDomain: string
  mode: 'subdomain' | 'path'
  sessionTtlSec: number
  linkTtlSec: number
  /** Configured browser-facing origin of the relay, if any. */
  publicUrl?: string
}

/** The relay origin a browser used for this request (or the configured public URL). */
export function relayOrigin(req: FastifyRequest, publicUrl?: string): string {
  return publicUrl ?? `${req.protocol}://${req.headers.host ?? req.hostname}`
}

export default async function portalsPlugin(app: FastifyInstance, opts: PortalsOptions) {
  const { registry, sessions } = opts
  const owner = { onRequest: app.requireOwner }
  const errors = { '4xx': ErrorResponse }

  /** The served portal of (user, device, proxy), or a 4xx naming what is missing. */
  const portalOf = async ({ user, device, proxy }: PortalParams) => {
    if (!(await opts.devices.get(user, device)))
      throw new RelayErrors.TETHER_ERR_NOT_FOUND(`device ${user}/${device}`)
    const profile = await opts.proxies.get(proxy)
    const target = profile?.target
    if (!profile || target?.type !== 'device' || target.user !== user || target.device !== device) {
      throw new RelayErrors.TETHER_ERR_NOT_FOUND(`proxy ${proxy} of device ${user}/${device}`)
    }
    if (profile.protocol !== 'http-iotmp') {
      throw new RelayErrors.TETHER_ERR_BAD_REQUEST(`proxy ${proxy} is ${profile.protocol}, not http-iotmp`)
    }
    const portal = registry.get(proxy)
    if (!portal) throw new RelayErrors.TETHER_ERR_CONFLICT(`proxy ${proxy} is disabled`)
    return portal
  }

  /** Browser-facing origin of a portal (with the path prefix in path mode). */
  const portalOrigin = (base: string, label: string) => {
    if (opts.mode === 'path') return `${base}${PATH_MODE_PREFIX}${label}`
    const url = new URL(base)
    return `${url.protocol}//${label}.${opts.portalDomain}${url.port ? `:${url.port}` : ''}`
  }

  app.post(
    '/v1/users/:user/devices/:device/proxies/:proxy/portal',
    {
      ...owner,
      // The body is optional: a bare `curl -X POST` asks for a link with the default lifetime.
      preValidation: async (req) => {
        if (req.body === undefined) req.body = {}
      },
      schema: {
        body: PortalLinkRequest,
        response: { 201: PortalLink, ...errors },
      },
    },
    async (req, reply) => {
      const params = req.params as PortalParams
      const portal = await portalOf(params)
      const ttl = Math.min(
        (req.body as PortalLinkRequest | undefined)?.ttl_sec ?? opts.sessionTtlSec,
        opts.sessionTtlSec,
      )
      const base = relayOrigin(req, opts.publicUrl)
      const { session, ticket } = await sessions.create(
        {
          user: params.user,
          device: params.device,
          proxy: params.proxy,
          label: portal.label,
          opened_by: req.principal?.user ?? params.user,
          frame_ancestor: base,
        },
        ttl,
      )
      const origin = portalOrigin(base, portal.label)
      reply.code(201)
      return {
        url: `${origin}${OPEN_PATH}?ticket=${ticket}`,
        url_expires_ts: Date.now() + opts.linkTtlSec * 1000,
        origin,
        session,
      }
    },
  )

  app.get(
    '/v1/users/:user/devices/:device/proxies/:proxy/portal/sessions',
    { ...owner, schema: { response: { 200: Type.Array(PortalSession), ...errors } } },
    async (req) => {
      const { user, device, proxy } = req.params as PortalParams
      return sessions.list({ user, device, proxy })
    },
  )

  app.delete(
    '/v1/users/:user/devices/:device/proxies/:proxy/portal/sessions',
    { ...owner, schema: { response: { 200: Type.Object({ revoked: Type.Integer() }), ...errors } } },
    async (req) => {
      const { user, device, proxy } = req.params as PortalParams
      return { revoked: await sessions.revoke({ user, device, proxy }) }
    },
  )

  app.delete(
    '/v1/users/:user/devices/:device/proxies/:proxy/portal/sessions/:session',
    { ...owner, schema: { params: SessionParams, response: errors } },
    async (req, reply) => {
      const { user, device, proxy, session } = req.params as PortalParams & { session: string }
      if ((await sessions.revoke({ id: session, user, device, proxy })) === 0) {
        throw new RelayErrors.TETHER_ERR_NOT_FOUND(`portal session ${session}`)
      }
      reply.code(204)
    },
  )
}
