/** Device API schemas (Thinger-compatible paths and field names); TypeScript types derive from them. */
import { type Static, Type } from 'typebox'

export const DeviceId = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'device id' })
export const DeviceType = Type.Union([Type.Literal('agent')], {
  description: 'agent (more types arrive with HTTP devices and integrations)',
})

export const DeviceParams = Type.Object({ user: Type.String(), device: Type.String() })
export const UserParams = Type.Object({ user: Type.String() })

export const DeviceCreate = Type.Object(
  {
    device: DeviceId,
    type: DeviceType,
    name: Type.Optional(Type.String({ maxLength: 128 })),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    enabled: Type.Optional(Type.Boolean()),
    credential: Type.Optional(
      Type.String({ minLength: 8, maxLength: 256, description: 'generated when absent' }),
    ),
  },
  { additionalProperties: false },
)
export type DeviceCreate = Static<typeof DeviceCreate>

export const DevicePatch = Type.Object(
  {
    name: Type.Optional(Type.String({ maxLength: 128 })),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    enabled: Type.Optional(Type.Boolean()),
    credential: Type.Optional(
      Type.String({ minLength: 8, maxLength: 256, description: 'sets a new credential' }),
    ),
  },
  { additionalProperties: false },
)
export type DevicePatch = Static<typeof DevicePatch>

export const Connection = Type.Object({
  active: Type.Boolean(),
  ts: Type.Optional(Type.Integer({ description: 'ms since epoch of the last connect or disconnect' })),
})

export const AgentInfo = Type.Object({
  version: Type.String(),
  allow: Type.Array(Type.String(), { description: "the agent's own allowlist of local targets" }),
  refusals: Type.Integer({ description: 'dials the agent refused since it started' }),
})

export const DeviceView = Type.Object({
  device: Type.String(),
  user: Type.String(),
  type: DeviceType,
  name: Type.String(),
  description: Type.String(),
  enabled: Type.Boolean(),
  created_ts: Type.Integer(),
  connection: Connection,
  agent: Type.Optional(AgentInfo),
})
export type DeviceView = Static<typeof DeviceView>

/** Creation answer: the only time the credential is shown. */
export const DeviceCreated = Type.Intersect([DeviceView, Type.Object({ credential: Type.String() })])

export const DeviceStats = Type.Object({
  connected: Type.Boolean(),
  connected_ts: Type.Optional(Type.Integer()),
  disconnected_ts: Type.Optional(Type.Integer()),
  ip_address: Type.Optional(Type.String()),
  rx_bytes: Type.Integer({ description: 'bytes received from the device in the current or last session' }),
  tx_bytes: Type.Integer({ description: 'bytes sent to the device in the current or last session' }),
})
export type DeviceStats = Static<typeof DeviceStats>

/** A stored device. */
export interface DeviceRecord {
  user: string
  device: string
  type: 'agent'
  name: string
  description: string
  enabled: boolean
  created_ts: number
  credentialHash: string
  /** Last DESCRIBE answer of the agent. */
  agent?: Static<typeof AgentInfo>
  /** Figures of the last finished session (the live one comes from the hub). */
  last?: {
    connected_ts: number
    disconnected_ts: number
    ip_address: string
    rx_bytes: number
    tx_bytes: number
  }
}
