/**
 * HTTP devices' callbacks (Thinger-compatible): the overview and settings for the owner, and
 * `…/callback/data`, where a device (or a cloud backend) posts JSON with its callback token and gets data back.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { scopesAllow } from '../auth/api-tokens.ts'
import { bearerToken } from '../auth/index.ts'
import { randomSecret } from '../auth/passwords.ts'
import { ErrorResponse } from '../auth/schemas.ts'
import type { DeviceTraffic } from '../devices/device-traffic.ts'
import type { DevicesStore } from '../devices/devices-store.ts'
import { DEFAULT_CALLBACK_TIMEOUT_MIN } from '../devices/index.ts'
import type { CallbackSettings } from '../devices/schemas.ts'
import { DeviceParams, type DeviceRecord, CallbackSettings as SettingsSchema } from '../devices/schemas.ts'
import { RelayErrors } from '../errors.ts'
import type { PropertyService } from '../properties/property-service.ts'
import { CallbackTokens } from './callback-token.ts'
import { CallbackOverview, type CallbackSettingsView } from './schemas.ts'

/** Where `write_bucket` stores a callback body (the buckets capability). */
export interface BucketWriter {
  /** Writes an object or an array of objects as points; rejects with a RelayError naming the problem. */
  write(user: string, bucket: string, body: unknown, opts?: { source?: string }): Promise<unknown>
}

/** Where `call_endpoint` hands a callback body (the endpoints capability): queued, never awaited. */
export interface EndpointQueue {
  enqueue(user: string, endpoint: string, payload: unknown, opts?: { device?: string }): void
}

export interface CallbacksOptions {
  /** Whether a user's bucket or endpoint exists, to refuse settings that name a missing one. */
  exists?: (kind: 'bucket' | 'endpoint', user: string, id: string) => Promise<boolean>
  devices: DevicesStore
  traffic: DeviceTraffic
  properties: PropertyService
  buckets?: BucketWriter
  endpoints?: EndpointQueue
  /** Configured browser-facing origin of the relay, if any. */
  publicUrl?: string
}

type Params = { user: string; device: string }

const EXAMPLE_BODY = { temperature: 21.5, humidity: 48 }

export default async function callbacksPlugin(app: FastifyInstance, opts: CallbacksOptions) {
  const { devices, traffic, properties } = opts
  const tokens = new CallbackTokens(app)
  const owner = { onRequest: app.requireOwner }
  const errors = { '4xx': ErrorResponse }

  const httpDevice = async ({ user, device }: Params): Promise<DeviceRecord & { callback: object }> => {
    const record = await devices.get(user, device)
    if (!record) throw new RelayErrors.TETHER_ERR_NOT_FOUND(`device ${user}/${device}`)
    if (record.type !== 'http' || !record.callback) {
      throw new RelayErrors.TETHER_ERR_BAD_REQUEST(`device ${device} is of type ${record.type}, not http`)
    }
    return record as DeviceRecord & { callback: object }
  }

  const settingsView = (record: DeviceRecord): CallbackSettingsView => ({
    actions: record.callback?.actions ?? {},
    properties: { timeout: record.callback?.properties.timeout ?? DEFAULT_CALLBACK_TIMEOUT_MIN },
  })

  const overview = (req: FastifyRequest, record: DeviceRecord): CallbackOverview => {
    const origin = opts.publicUrl ?? `${req.protocol}://${req.headers.host ?? req.hostname}`
    const url = `${origin}/v3/users/${record.user}/devices/${record.device}/callback/data`
    const token = tokens.sign(record)
    const body = JSON.stringify(EXAMPLE_BODY)
    return {
      url,
      token,
      authorization: `Bearer ${token}`,
      url_with_token: `${url}?authorization=${token}`,
      curl: `curl -X POST '${url}' -H 'Authorization: Bearer ${token}' -H 'Content-Type: application/json' -d '${body}'`,
      example_body: EXAMPLE_BODY,
      settings: settingsView(record),
    }
  }

  const base = '/v3/users/:user/devices/:device/callback'

  app.get(
    base,
    { ...owner, schema: { params: DeviceParams, response: { 200: CallbackOverview, ...errors } } },
    async (req) => {
      const params = req.params as Params
      // The overview hands out the callback token, which writes: a read-only scoped token may not see it.
      const scopes = req.principal?.scopes
      if (scopes && !scopesAllow(scopes, 'device', params.device, 'write')) {
        throw new RelayErrors.TETHER_ERR_FORBIDDEN(
          `the callback overview holds a write token: this token's scopes do not allow writing device ${params.device}`,
        )
      }
      return overview(req, await httpDevice(params))
    },
  )

  app.put(
    base,
    { ...owner, schema: { params: DeviceParams, body: SettingsSchema, response: errors } },
    async (req) => {
      const record = await httpDevice(req.params as Params)
      const body = req.body as CallbackSettings
      // A setting naming a missing bucket or endpoint would fail every later callback: refuse it now.
      const named = [
        ['write_bucket', 'bucket', body.actions?.write_bucket],
        ['call_endpoint', 'endpoint', body.actions?.call_endpoint],
      ] as const
      for (const [field, kind, id] of named) {
        if (id && opts.exists && !(await opts.exists(kind, record.user, id))) {
          throw new RelayErrors.TETHER_ERR_BAD_REQUEST(`body/actions/${field}: ${kind} ${id} does not exist`)
        }
      }
      record.callback = {
        token_id: record.callback?.token_id ?? randomSecret(12),
        actions: { ...record.callback?.actions, ...body.actions },
        properties: { ...record.callback?.properties, ...body.properties },
      }
      await devices.put(record)
      return settingsView(record)
    },
  )

  app.post(
    `${base}/token`,
    { ...owner, schema: { params: DeviceParams, response: { 200: CallbackOverview, ...errors } } },
    async (req) => {
      const record = await httpDevice(req.params as Params)
      // A new token id: every token signed before no longer matches.
      record.callback = {
        ...(record.callback ?? { actions: {}, properties: {} }),
        token_id: randomSecret(12),
      }
      await devices.put(record)
      return overview(req, record)
    },
  )

  // The data route takes any body as raw bytes: a body that is not JSON is answered 200 and counted as ignored.
  await app.register(async (raw) => {
    raw.removeAllContentTypeParsers()
    raw.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))

    /** The device of a data request, authenticated by its callback token (401 for anything else). */
    const authenticated = async (req: FastifyRequest): Promise<DeviceRecord> => {
      const { user, device } = req.params as Params
      const record = await devices.get(user, device)
      if (!record || !tokens.matches(bearerToken(req), record)) {
        throw new RelayErrors.TETHER_ERR_UNAUTHORIZED('invalid callback token for this device')
      }
      if (!record.enabled) throw new RelayErrors.TETHER_ERR_FORBIDDEN(`device ${device} is disabled`)
      return record
    }

    /** Answers with the `send_property` value (empty 200 when none); counts the exchange. */
    const respond = async (record: DeviceRecord, reply: FastifyReply, rx: number, ignored = false) => {
      const property = record.callback?.actions.send_property
      const value = property ? (await properties.get(record.user, record.device, property))?.value : undefined
      const text = value === undefined ? '' : JSON.stringify(value)
      traffic.record(record.user, record.device, { rx, tx: Buffer.byteLength(text), ignored })
      if (!text) return reply.code(200).send()
      return reply.code(200).type('application/json').send(text)
    }

    raw.post(`${base}/data`, { schema: { params: DeviceParams, response: errors } }, async (req, reply) => {
      const record = await authenticated(req)
      const bytes = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0)
      let body: unknown
      try {
        body = JSON.parse(bytes.toString('utf8'))
      } catch {
        body = undefined
      }
      if (body === null || typeof body !== 'object') return respond(record, reply, bytes.length, true)
      const { user, device } = record
      const actions = record.callback?.actions ?? {}
      if (actions.set_property) await properties.set(user, device, actions.set_property, body)
      if (actions.write_bucket) {
        if (!opts.buckets)
          throw new RelayErrors.TETHER_ERR_CONFLICT('buckets are not available on this relay')
        await opts.buckets.write(user, actions.write_bucket, body, { source: 'callback' })
      }
      if (actions.call_endpoint) {
        if (!opts.endpoints)
          throw new RelayErrors.TETHER_ERR_CONFLICT('endpoints are not available on this relay')
        opts.endpoints.enqueue(user, actions.call_endpoint, body, { device })
      }
      return respond(record, reply, bytes.length)
    })

    raw.get(`${base}/data`, { schema: { params: DeviceParams, response: errors } }, async (req, reply) =>
      respond(await authenticated(req), reply, 0),
    )
  })
}
