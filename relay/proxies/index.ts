/** Proxies capability (admin only): profile CRUD under `/v1/server/proxies`, applied live. */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { ErrorResponse } from '../auth/schemas.ts'
import { RelayErrors } from '../errors.ts'
import { checkProfile } from './profile-rules.ts'
import type { ProxiesStore } from './proxies-store.ts'
import type { ProxyManager } from './proxy-manager.ts'
import { ProxyDeleteMany, ProxyParams, ProxyProfile, ProxyView } from './schemas.ts'

export interface ProxiesOptions {
  proxies: ProxiesStore
  manager: ProxyManager
  /** Names of the plugins configured on this relay. */
  plugins: readonly string[]
  /** Called after a profile is deleted (portal sessions of the profile are revoked there). */
  onDeleted?: (id: string) => Promise<unknown>
}

export default async function proxiesPlugin(
  app: FastifyInstance,
  { proxies, manager, plugins, onDeleted }: ProxiesOptions,
) {
  const view = (profile: ProxyProfile) => ({ ...profile, status: manager.status(profile.id) })
  const admin = { onRequest: app.requireAdmin }
  const errors = { '4xx': ErrorResponse }

  const checkSupported = (profile: ProxyProfile) => {
    const problem = checkProfile(profile, plugins)
    if (problem) throw new RelayErrors.TETHER_ERR_BAD_REQUEST(problem)
  }

  /** Saves and applies; a listen failure keeps the profile (marked with the error) and answers 409. */
  const saveAndApply = async (profile: ProxyProfile) => {
    await proxies.put(profile)
    const error = await manager.apply(profile)
    if (error)
      throw new RelayErrors.TETHER_ERR_CONFLICT(`${error}; profile ${profile.id} saved with this error`)
    return view(profile)
  }

  app.get(
    '/v1/server/proxies',
    { ...admin, schema: { response: { 200: Type.Array(ProxyView), ...errors } } },
    async () => (await proxies.list()).map(view),
  )

  app.post(
    '/v1/server/proxies',
    { ...admin, schema: { body: ProxyProfile, response: { 201: ProxyView, ...errors } } },
    async (req, reply) => {
      const profile = req.body as ProxyProfile
      checkSupported(profile)
      if (await proxies.get(profile.id))
        throw new RelayErrors.TETHER_ERR_CONFLICT(`proxy ${profile.id} already exists`)
      const result = await saveAndApply(profile)
      reply.code(201)
      return result
    },
  )

  app.delete(
    '/v1/server/proxies',
    {
      ...admin,
      schema: {
        body: ProxyDeleteMany,
        response: {
          200: Type.Object({ deleted: Type.Array(Type.String()), not_found: Type.Array(Type.String()) }),
        },
      },
    },
    async (req) => {
      const { ids } = req.body as ProxyDeleteMany
      const deleted: string[] = []
      const notFound: string[] = []
      for (const id of new Set(ids)) {
        if (!(await proxies.get(id))) {
          notFound.push(id)
          continue
        }
        await manager.remove(id)
        await proxies.del(id)
        await onDeleted?.(id)
        deleted.push(id)
      }
      return { deleted, not_found: notFound }
    },
  )

  app.get(
    '/v1/server/proxies/:id',
    { ...admin, schema: { params: ProxyParams, response: { 200: ProxyView, ...errors } } },
    async (req) => {
      const { id } = req.params as { id: string }
      const profile = await proxies.get(id)
      if (!profile) throw new RelayErrors.TETHER_ERR_NOT_FOUND(`proxy ${id}`)
      return view(profile)
    },
  )

  app.put(
    '/v1/server/proxies/:id',
    {
      ...admin,
      schema: { params: ProxyParams, body: ProxyProfile, response: { 200: ProxyView, ...errors } },
    },
    async (req) => {
      const { id } = req.params as { id: string }
      const profile = req.body as ProxyProfile
      if (profile.id !== id) {
        throw new RelayErrors.TETHER_ERR_BAD_REQUEST(
          'body/id cannot change: delete the profile and create a new one',
        )
      }
      if (!(await proxies.get(id))) throw new RelayErrors.TETHER_ERR_NOT_FOUND(`proxy ${id}`)
      checkSupported(profile)
      return saveAndApply(profile)
    },
  )

  app.delete(
    '/v1/server/proxies/:id',
    { ...admin, schema: { params: ProxyParams, response: errors } },
    async (req, reply) => {
      const { id } = req.params as { id: string }
      if (!(await proxies.get(id))) throw new RelayErrors.TETHER_ERR_NOT_FOUND(`proxy ${id}`)
      await manager.remove(id)
      await proxies.del(id)
      await onDeleted?.(id)
      reply.code(204)
    },
  )
}
