/** Devices capability: CRUD for agent devices, connection status and link statistics. */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { WireErrorCode } from '../../protocol/messages.ts'
import { hashSecret, randomSecret } from '../auth/passwords.ts'
import { ErrorResponse } from '../auth/schemas.ts'
import { RelayErrors } from '../errors.ts'
import type { AgentHub } from '../hub/agent-hub.ts'
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
}

/** Registers `/v1/users/:user/devices…` and `/v3/users/:user/devices/:device/stats`. */
export default async function devicesPlugin(app: FastifyInstance, { devices, hub }: DevicesOptions) {
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
      connection: link
        ? { active: true, ts: link.connectedAt }
        : { active: false, ...(record.last ? { ts: record.last.disconnected_ts } : {}) },
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
      const credential = body.credential ?? randomSecret()
      const record: DeviceRecord = {
        user,
        device: body.device,
        type: body.type,
        name: body.name ?? body.device,
        description: body.description ?? '',
        enabled: body.enabled ?? true,
        created_ts: Date.now(),
        credentialHash: await hashSecret(credential),
      }
      await devices.put(record)
      reply.code(201)
      return { ...view(record), credential }
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
      if (link) {
        return {
          connected: true,
          connected_ts: link.connectedAt,
          ip_address: link.ipAddress,
          rx_bytes: link.session.rxBytes,
          tx_bytes: link.session.txBytes,
        }
      }
      return { connected: false, rx_bytes: 0, tx_bytes: 0, ...record.last }
    },
  )
}
