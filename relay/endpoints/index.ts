/** Endpoints capability: per-user `http` and `mqtt` endpoints, their calls and recent call log. */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { ErrorResponse } from '../auth/schemas.ts'
import { RelayErrors } from '../errors.ts'
import type { EndpointService } from './endpoint-service.ts'
import type { EndpointsStore } from './endpoints-store.ts'
import {
  CallLogEntry,
  CallResult,
  DEFAULT_TIMEOUT_MS,
  EndpointCreate,
  type EndpointInput,
  EndpointParams,
  EndpointPut,
  type EndpointRecord,
  EndpointView,
  UserParams,
} from './schemas.ts'

export interface EndpointsOptions {
  endpoints: EndpointsStore
  service: EndpointService
}

/** The API view: the MQTT password never leaves the relay, only whether one is set. */
export function endpointView(record: EndpointRecord): EndpointView {
  const base = {
    endpoint: record.endpoint,
    name: record.name,
    description: record.description,
    enabled: record.enabled,
    created_ts: record.created_ts,
    updated_ts: record.updated_ts,
  }
  if (record.type === 'http') return { ...base, type: 'http', config: record.config }
  const { password, ...config } = record.config
  return { ...base, type: 'mqtt', config: { ...config, password_set: password !== undefined } }
}

/** Rules the schema cannot say: URLs that parse, and no body template on GET (fetch cannot send one). */
function checkEndpoint(input: EndpointInput): void {
  try {
    new URL(input.config.url)
  } catch {
    throw new RelayErrors.TETHER_ERR_BAD_REQUEST(`body/config/url is not a valid URL: ${input.config.url}`)
  }
  if (input.type === 'http' && input.config.method === 'GET' && input.config.body !== undefined) {
    throw new RelayErrors.TETHER_ERR_BAD_REQUEST('body/config/body cannot be used with method GET')
  }
}

/**
 * The stored form of a definition, defaults filled in. An omitted MQTT password keeps the stored one while the
 * broker URL and username stay the same (clients cannot read it back to resend it); an empty one removes it.
 */
function toRecord(
  user: string,
  endpoint: string,
  input: EndpointInput,
  previous?: EndpointRecord,
): EndpointRecord {
  const now = Date.now()
  const base = {
    user,
    endpoint,
    name: input.name ?? endpoint,
    description: input.description ?? '',
    enabled: input.enabled ?? true,
    created_ts: previous?.created_ts ?? now,
    updated_ts: now,
  }
  const timeout_ms = input.config.timeout_ms ?? DEFAULT_TIMEOUT_MS
  if (input.type === 'http') return { ...base, type: 'http', config: { ...input.config, timeout_ms } }
  const { password: given, ...config } = input.config
  const sameBroker =
    previous?.type === 'mqtt' &&
    previous.config.url === config.url &&
    previous.config.username === config.username
  const kept = sameBroker ? previous.config.password : undefined
  const password = given === undefined ? kept : given || undefined
  return {
    ...base,
    type: 'mqtt',
    config: {
      ...config,
      retain: config.retain ?? false,
      timeout_ms,
      ...(password !== undefined ? { password } : {}),
    },
  }
}

/** Registers `/v1/users/:user/endpoints…`: CRUD, `…/call` and `…/logs`. */
export default async function endpointsPlugin(
  app: FastifyInstance,
  { endpoints, service }: EndpointsOptions,
) {
  const owner = { onRequest: app.requireOwner }
  const errors = { '4xx': ErrorResponse }

  const load = async (user: string, endpoint: string) => {
    const record = await endpoints.get(user, endpoint)
    if (!record) throw new RelayErrors.TETHER_ERR_NOT_FOUND(`endpoint ${user}/${endpoint}`)
    return record
  }

  app.addHook('onClose', () => service.close())

  app.get(
    '/v1/users/:user/endpoints',
    { ...owner, schema: { params: UserParams, response: { 200: Type.Array(EndpointView), ...errors } } },
    async (req) => {
      const { user } = req.params as UserParams
      return (await endpoints.list(user)).map(endpointView)
    },
  )

  app.post(
    '/v1/users/:user/endpoints',
    {
      ...owner,
      schema: { params: UserParams, body: EndpointCreate, response: { 201: EndpointView, ...errors } },
    },
    async (req, reply) => {
      const { user } = req.params as UserParams
      const body = req.body as EndpointInput
      checkEndpoint(body)
      if (await endpoints.get(user, body.endpoint)) {
        throw new RelayErrors.TETHER_ERR_CONFLICT(`endpoint ${body.endpoint} already exists`)
      }
      const record = toRecord(user, body.endpoint, body)
      await endpoints.put(record)
      reply.code(201)
      return endpointView(record)
    },
  )

  app.get(
    '/v1/users/:user/endpoints/:endpoint',
    { ...owner, schema: { params: EndpointParams, response: { 200: EndpointView, ...errors } } },
    async (req) => {
      const { user, endpoint } = req.params as EndpointParams
      return endpointView(await load(user, endpoint))
    },
  )

  app.put(
    '/v1/users/:user/endpoints/:endpoint',
    {
      ...owner,
      schema: { params: EndpointParams, body: EndpointPut, response: { 200: EndpointView, ...errors } },
    },
    async (req) => {
      const { user, endpoint } = req.params as EndpointParams
      const body = req.body as EndpointPut
      if (body.endpoint !== undefined && body.endpoint !== endpoint) {
        throw new RelayErrors.TETHER_ERR_BAD_REQUEST(
          `body/endpoint cannot change (${endpoint} → ${body.endpoint})`,
        )
      }
      const input = { ...body, endpoint } as EndpointInput
      checkEndpoint(input)
      const record = toRecord(user, endpoint, input, await load(user, endpoint))
      await endpoints.put(record)
      await service.changed(user, endpoint)
      return endpointView(record)
    },
  )

  app.delete(
    '/v1/users/:user/endpoints/:endpoint',
    { ...owner, schema: { params: EndpointParams, response: errors } },
    async (req, reply) => {
      const { user, endpoint } = req.params as EndpointParams
      await load(user, endpoint)
      await endpoints.del(user, endpoint)
      await service.removed(user, endpoint)
      reply.code(204)
    },
  )

  app.post(
    '/v1/users/:user/endpoints/:endpoint/call',
    {
      ...owner,
      schema: {
        params: EndpointParams,
        body: Type.Unknown({ description: 'the payload: any JSON' }),
        response: { 200: CallResult, ...errors },
      },
    },
    async (req) => {
      const { user, endpoint } = req.params as EndpointParams
      // A failed call is still an answered request: 200 with `ok: false`; 404 and 409 mean no call was made.
      return service.call(user, endpoint, req.body ?? null)
    },
  )

  app.get(
    '/v1/users/:user/endpoints/:endpoint/logs',
    { ...owner, schema: { params: EndpointParams, response: { 200: Type.Array(CallLogEntry), ...errors } } },
    async (req) => {
      const { user, endpoint } = req.params as EndpointParams
      await load(user, endpoint)
      return service.logs(user, endpoint)
    },
  )
}
