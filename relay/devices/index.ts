/** Devices capability: CRUD for agent devices, connection status and link statistics. */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { WireErrorCode } from '../../protocol/messages.ts'
import { hashSecret, randomSecret } from '../auth/passwords.ts'
import { ErrorResponse } from '../auth/schemas.ts'
import { RelayErrors } from '../errors.ts'
import type { AgentHub, AgentLink } from '../hub/agent-hub.ts'
import type { DeviceTraffic } from './device-traffic.ts'
import type { DevicesStore } from './devices-store.ts'
import {
  DeviceCreate,
  DeviceCreated,
  DeviceParams,
  DevicePatch,
  type DeviceRecord,
  DeviceStats,
  DeviceView,
  UserParams,
} from './schemas.ts'

/** How long a device GET waits for its agent's DESCRIBE answer before using the last known one. */
const DESCRIBE_WAIT_MS = 250

export interface DevicesOptions {
  devices: DevicesStore
  hub: AgentHub
  traffic: DeviceTraffic
  /** Called after a device is deleted, to drop what other capabilities keep for it. */
  onDeleted?: (user: string, device: string) => Promise<unknown>
}

/** Minutes without a callback before an HTTP device shows disconnected, when its settings say nothing. */
export const DEFAULT_CALLBACK_TIMEOUT_MIN = 10

/** Whether a device without a live link counts as connected: it was seen within its callback timeout. */
export function seenRecently(record: DeviceRecord, lastSeen: number | undefined, now = Date.now()): boolean {
  if (record.type === 'agent' || lastSeen === undefined) return false
  const minutes = record.callback?.properties.timeout ?? DEFAULT_CALLBACK_TIMEOUT_MIN
  return now - lastSeen < minutes * 60_000
}

/** Registers `/v1/users/:user/devices…` and `/v3/users/:user/devices/:device/stats`. */
export default async function devicesPlugin(
  app: FastifyInstance,
  { devices, hub, traffic, onDeleted }: DevicesOptions,
) {
  /** Connection state: the live link of an agent, or recent callbacks of other devices. */
  const connection = (record: DeviceRecord, link: AgentLink | undefined) => {
    if (link) return { active: true, ts: link.connectedAt }
    if (record.type !== 'agent') {
      const lastSeen = traffic.get(record.user, record.device).last_seen_ts
      return { active: seenRecently(record, lastSeen), ...(lastSeen ? { ts: lastSeen } : {}) }
    }
    return { active: false, ...(record.last ? { ts: record.last.disconnected_ts } : {}) }
  }

  const view = (record: DeviceRecord): DeviceView => {
    const link = hub.get(record.user, record.device)
    const agent = link?.description ?? record.agent
    return {
      ...(agent ? { agent } : {}),
      device: record.device,
      user: record.user,
      type: record.type,
      name: record.name,
      description: record.description,
      enabled: record.enabled,
      created_ts: record.created_ts,
      connection: connection(record, link),
      ...(record.integration ? { integration: record.integration } : {}),
      ...(record.via ? { via: record.via } : {}),
    }
  }

  const load = async (user: string, device: string) => {
    const record = await devices.get(user, device)
    if (!record) throw new RelayErrors.TETHER_ERR_NOT_FOUND(`device ${user}/${device}`)
    return record
  }

  const owner = { onRequest: app.requireOwner }
  const errors = { '4xx': ErrorResponse }

  app.get(
    '/v1/users/:user/devices',
    { ...owner, schema: { params: UserParams, response: { 200: Type.Array(DeviceView), ...errors } } },
    async (req) => {
      const { user } = req.params as { user: string }
      return (await devices.list(user)).map(view)
    },
  )

  app.post(
    '/v1/users/:user/devices',
    {
      ...owner,
      schema: { params: UserParams, body: DeviceCreate, response: { 201: DeviceCreated, ...errors } },
    },
    async (req, reply) => {
      const { user } = req.params as { user: string }
      const body = req.body as DeviceCreate
      if (await devices.get(user, body.device)) {
        throw new RelayErrors.TETHER_ERR_CONFLICT(`device ${body.device} already exists`)
      }
      const agent = body.type === 'agent'
      if (!agent && body.credential !== undefined) {
        throw new RelayErrors.TETHER_ERR_BAD_REQUEST(`body/credential is only for agent devices`)
      }
      const credential = agent ? (body.credential ?? randomSecret()) : undefined
      const record: DeviceRecord = {
        user,
        device: body.device,
        type: body.type,
        name: body.name ?? body.device,
        description: body.description ?? '',
        enabled: body.enabled ?? true,
        created_ts: Date.now(),
        ...(credential ? { credentialHash: await hashSecret(credential) } : {}),
        ...(body.type === 'http'
          ? { callback: { token_id: randomSecret(12), actions: {}, properties: {} } }
          : {}),
      }
      await devices.put(record)
      reply.code(201)
      return { ...view(record), ...(credential ? { credential } : {}) }
    },
  )

  app.get(
    '/v1/users/:user/devices/:device',
    { ...owner, schema: { params: DeviceParams, response: { 200: DeviceView, ...errors } } },
    async (req) => {
      const { user, device } = req.params as { user: string; device: string }
      const record = await load(user, device)
      const link = hub.get(user, device)
      // A fresh allowlist and refusal count when the agent answers quickly; the last known one otherwise.
      const description = link && (await hub.describeWithin(link, DESCRIBE_WAIT_MS))
      if (description) record.agent = description
      return view(record)
    },
  )

  app.patch(
    '/v1/users/:user/devices/:device',
    {
      ...owner,
      schema: { params: DeviceParams, body: DevicePatch, response: { 200: DeviceView, ...errors } },
    },
    async (req) => {
      const { user, device } = req.params as { user: string; device: string }
      const body = req.body as DevicePatch
      const record = await load(user, device)
      if (body.credential !== undefined && record.type !== 'agent') {
        throw new RelayErrors.TETHER_ERR_BAD_REQUEST(`body/credential is only for agent devices`)
      }
      if (body.name !== undefined) record.name = body.name
      if (body.description !== undefined) record.description = body.description
      if (body.enabled !== undefined) record.enabled = body.enabled
      if (body.credential !== undefined) record.credentialHash = await hashSecret(body.credential)
      await devices.put(record)
      if (!record.enabled) hub.kick(user, device, WireErrorCode.DEVICE_DISABLED, 'device disabled')
      else if (body.credential !== undefined)
        hub.kick(user, device, WireErrorCode.BAD_CREDENTIALS, 'credential changed')
      return view(record)
    },
  )

  app.delete(
    '/v1/users/:user/devices/:device',
    { ...owner, schema: { params: DeviceParams, response: errors } },
    async (req, reply) => {
      const { user, device } = req.params as { user: string; device: string }
      await load(user, device)
      await devices.del(user, device)
      hub.kick(user, device, WireErrorCode.BAD_CREDENTIALS, 'device deleted')
      await traffic.forget(user, device)
      await onDeleted?.(user, device)
      reply.code(204)
    },
  )

  app.get(
    '/v3/users/:user/devices/:device/stats',
    { ...owner, schema: { params: DeviceParams, response: { 200: DeviceStats, ...errors } } },
    async (req): Promise<DeviceStats> => {
      const { user, device } = req.params as { user: string; device: string }
      const record = await load(user, device)
      const link = hub.get(user, device)
      const t = traffic.get(user, device)
      const totals = {
        ...(t.last_seen_ts ? { last_seen_ts: t.last_seen_ts } : {}),
        total: { messages: t.messages, rx_bytes: t.rx_bytes, tx_bytes: t.tx_bytes, ignored: t.ignored },
        daily: traffic.daily(user, device),
      }
      if (link) {
        return {
          connected: true,
          connected_ts: link.connectedAt,
          ip_address: link.ipAddress,
          rx_bytes: link.session.rxBytes,
          tx_bytes: link.session.txBytes,
          ...totals,
        }
      }
      if (record.type !== 'agent') {
        const state = connection(record, undefined)
        return { connected: state.active, rx_bytes: t.rx_bytes, tx_bytes: t.tx_bytes, ...totals }
      }
      return { connected: false, rx_bytes: 0, tx_bytes: 0, ...record.last, ...totals }
    },
  )
}
