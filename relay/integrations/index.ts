/** Integrations capability: CRUD of integrations (live start/stop), debug events and device downlinks. */
import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { ErrorResponse } from '../auth/schemas.ts'
import type { ConverterService } from '../converters/converter-service.ts'
import type { DebugEvents } from '../converters/debug-events.ts'
import type { DevicesStore } from '../devices/devices-store.ts'
import { DeviceParams } from '../devices/schemas.ts'
import { RelayErrors } from '../errors.ts'
import httpIntegrationPlugin from './http-integration.ts'
import { type IntegrationManager, integrationDebugKey } from './integration-manager.ts'
import type { IntegrationRuntime } from './integration-runtime.ts'
import type { IntegrationsStore } from './integrations-store.ts'
import {
  DebugEventList,
  DownlinkResult,
  IntegrationConfig,
  IntegrationParams,
  type IntegrationRecord,
  IntegrationView,
  UserParams,
} from './schemas.ts'

export interface IntegrationsOptions {
  store: IntegrationsStore
  manager: IntegrationManager
  converters: ConverterService
  devices: DevicesStore
  debug: DebugEvents
  /** The relay's public base URL (for the HTTP integration's uplink URL in the status); else the request's. */
  publicUrl?: string
}

export const IntegrationPatch = Type.Object(
  { enabled: Type.Optional(Type.Boolean()), debug: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
)

/** The API view: no MQTT password, only whether one is set; with the live status. */
export function integrationView(rt: IntegrationRuntime, baseUrl: string, agentOnline?: boolean) {
  const { user: _user, ...config } = rt.record
  if (config.type === 'mqtt') {
    const { password, ...mqtt } = config.mqtt
    Object.assign(config, { mqtt: { ...mqtt, password_set: password !== undefined } })
  }
  const routingKey = config.type === 'http' ? config.http?.routingKey : undefined
  return {
    ...config,
    status: rt.status(routingKey && `${baseUrl}/api/v1/integrations/http/${routingKey}`, agentOnline),
  }
}

/** Registers `/v1/users/:user/integrations…`, `/v1/users/:user/devices/:device/downlink` and the HTTP integration. */
export default async function integrationsPlugin(app: FastifyInstance, opts: IntegrationsOptions) {
  const { store, manager, converters, devices } = opts
  const owner = { onRequest: app.requireOwner }
  const errors = { '4xx': ErrorResponse }
  const base = (req: { protocol: string; host: string }) => opts.publicUrl ?? `${req.protocol}://${req.host}`

  /** Rules the schema cannot say: converters that exist with the right direction, an agent to run on, unique keys. */
  const check = async (user: string, config: IntegrationConfig, previous?: IntegrationRecord) => {
    for (const [field, direction] of [
      ['uplinkConverter', 'uplink'],
      ['downlinkConverter', 'downlink'],
    ] as const) {
      const id = config[field]
      if (id === undefined) continue
      const converter = await converters.store.get(user, id)
      if (!converter)
        throw new RelayErrors.TETHER_ERR_BAD_REQUEST(`body/${field}: converter ${id} does not exist`)
      if (converter.direction !== direction) {
        throw new RelayErrors.TETHER_ERR_BAD_REQUEST(
          `body/${field}: converter ${id} is a ${converter.direction} converter`,
        )
      }
    }
    if (config.runOn) {
      const agent = await devices.get(user, config.runOn.device)
      if (agent?.type !== 'agent') {
        throw new RelayErrors.TETHER_ERR_BAD_REQUEST(
          `body/runOn/device: ${config.runOn.device} is not an agent device of ${user}`,
        )
      }
      if (config.type === 'http')
        throw new RelayErrors.TETHER_ERR_BAD_REQUEST('body/runOn: http integrations run on the relay')
    }
    if (config.type === 'http') {
      const key = config.http?.routingKey
      const owner = key ? manager.byRoutingKey(key) : undefined
      if (owner && owner.key !== `${user}/${config.id}`) {
        throw new RelayErrors.TETHER_ERR_CONFLICT(`body/http/routingKey is already in use`)
      }
    }
    if (config.type === 'mqtt' && config.mqtt.password === undefined && previous?.type === 'mqtt') {
      const same = previous.mqtt.url === config.mqtt.url && previous.mqtt.username === config.mqtt.username
      // The API never returns the password, so a client cannot resend it: an omitted one is kept.
      if (same && previous.mqtt.password !== undefined) config.mqtt.password = previous.mqtt.password
    }
  }

  const save = async (user: string, config: IntegrationConfig, previous?: IntegrationRecord) => {
    await check(user, config, previous)
    const now = Date.now()
    const record = {
      ...config,
      user,
      created_ts: previous?.created_ts ?? now,
      updated_ts: now,
    } as IntegrationRecord
    if (record.type === 'http') {
      const kept = previous?.type === 'http' ? previous.http?.routingKey : undefined
      record.http = {
        ...record.http,
        routingKey: record.http?.routingKey ?? kept ?? randomBytes(16).toString('base64url'),
      }
    }
    await store.put(record)
    if (!record.debug) opts.debug.clear(integrationDebugKey(user, record.id))
    return manager.apply(record)
  }

  const load = async (user: string, id: string) => {
    const record = await store.get(user, id)
    if (!record) throw new RelayErrors.TETHER_ERR_NOT_FOUND(`integration ${user}/${id}`)
    return record
  }
  const view = (rt: IntegrationRuntime, req: { protocol: string; host: string }) =>
    integrationView(rt, base(req), manager.agentOnline(rt))
  const runtime = (record: IntegrationRecord) => manager.get(record.user, record.id) ?? manager.apply(record)

  app.get(
    '/v1/users/:user/integrations',
    { ...owner, schema: { params: UserParams, response: { 200: Type.Array(IntegrationView), ...errors } } },
    async (req) => {
      const { user } = req.params as UserParams
      const records = await store.list(user)
      return Promise.all(records.map(async (r) => view(await runtime(r), req)))
    },
  )

  app.post(
    '/v1/users/:user/integrations',
    {
      ...owner,
      schema: { params: UserParams, body: IntegrationConfig, response: { 201: IntegrationView, ...errors } },
    },
    async (req, reply) => {
      const { user } = req.params as UserParams
      const body = req.body as IntegrationConfig
      if (await store.get(user, body.id))
        throw new RelayErrors.TETHER_ERR_CONFLICT(`integration ${body.id} already exists`)
      reply.code(201)
      return view(await save(user, body), req)
    },
  )

  app.get(
    '/v1/users/:user/integrations/:integration',
    { ...owner, schema: { params: IntegrationParams, response: { 200: IntegrationView, ...errors } } },
    async (req) => {
      const { user, integration } = req.params as IntegrationParams
      return view(await runtime(await load(user, integration)), req)
    },
  )

  app.put(
    '/v1/users/:user/integrations/:integration',
    {
      ...owner,
      schema: {
        params: IntegrationParams,
        body: IntegrationConfig,
        response: { 200: IntegrationView, ...errors },
      },
    },
    async (req) => {
      const { user, integration } = req.params as IntegrationParams
      const body = req.body as IntegrationConfig
      if (body.id !== integration) {
        throw new RelayErrors.TETHER_ERR_BAD_REQUEST(`body/id cannot change (${integration} → ${body.id})`)
      }
      const previous = await load(user, integration)
      if (previous.type !== body.type) {
        throw new RelayErrors.TETHER_ERR_BAD_REQUEST(
          `body/type cannot change (${previous.type} → ${body.type})`,
        )
      }
      return view(await save(user, body, previous), req)
    },
  )

  app.patch(
    '/v1/users/:user/integrations/:integration',
    {
      ...owner,
      schema: {
        params: IntegrationParams,
        body: IntegrationPatch,
        response: { 200: IntegrationView, ...errors },
      },
    },
    async (req) => {
      const { user, integration } = req.params as IntegrationParams
      const previous = await load(user, integration)
      const { user: _u, created_ts: _c, updated_ts: _t, ...config } = previous
      return view(
        await save(user, { ...config, ...(req.body as object) } as IntegrationConfig, previous),
        req,
      )
    },
  )

  app.delete(
    '/v1/users/:user/integrations/:integration',
    { ...owner, schema: { params: IntegrationParams, response: errors } },
    async (req, reply) => {
      const { user, integration } = req.params as IntegrationParams
      await load(user, integration)
      await store.del(user, integration)
      await manager.remove(user, integration)
      reply.code(204)
    },
  )

  app.get(
    '/v1/users/:user/integrations/:integration/events',
    { ...owner, schema: { params: IntegrationParams, response: { 200: DebugEventList, ...errors } } },
    async (req) => {
      const { user, integration } = req.params as IntegrationParams
      await load(user, integration)
      return opts.debug.list(integrationDebugKey(user, integration))
    },
  )

  app.post(
    '/v1/users/:user/devices/:device/downlink',
    {
      ...owner,
      schema: {
        params: DeviceParams,
        body: Type.Unknown({ description: 'the RPC message: any JSON, the Encoder msg' }),
        response: { 200: DownlinkResult, ...errors },
      },
    },
    async (req) => {
      const { user, device } = req.params as { user: string; device: string }
      return manager.downlink(user, device, req.body ?? {}, 'RPC_CALL')
    },
  )

  await app.register(httpIntegrationPlugin, { manager })
}
