/** Device API schemas (Thinger-compatible paths and field names); TypeScript types derive from them. */
import { type Static, Type } from 'typebox'

export const DeviceId = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'device id' })
export const DeviceType = Type.Union(
  [Type.Literal('agent'), Type.Literal('http'), Type.Literal('integration')],
  {
    description:
      'agent: runs the Tether agent; http: sends data to its callback URL; integration: provisioned by an integration',
  },
)
export type DeviceType = Static<typeof DeviceType>

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
      Type.String({ minLength: 8, maxLength: 256, description: 'agents only; generated when absent' }),
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

/** A property → MQTT topic rule of an agent (its config `downlinks`), as its DESCRIBE reports it. */
export const PropertyDownlinkRule = Type.Object({
  property: Type.String({ description: 'property id, or * for every property' }),
  topic: Type.String({ description: 'LAN topic, with {device} and {property}' }),
  qos: Type.Union([Type.Literal(0), Type.Literal(1), Type.Literal(2)]),
  retain: Type.Boolean(),
})
export type PropertyDownlinkRule = Static<typeof PropertyDownlinkRule>

/** An agent's store-and-forward buffer, from its DESCRIBE answer (agent/buffer/data-buffer.ts BufferStats). */
export const AgentBufferInfo = Type.Object(
  {
    depth: Type.Integer({ description: 'records waiting to be forwarded' }),
    bytes: Type.Integer({ description: 'bytes of the waiting records' }),
    oldest_age_ms: Type.Optional(
      Type.Integer({ description: 'age of the oldest waiting record; absent when empty' }),
    ),
    forwarded: Type.Integer({ description: 'records the relay stored, since the buffer was created' }),
    dropped: Type.Integer({ description: 'deleted to make room (policy drop-oldest)' }),
    rejected: Type.Integer({ description: 'refused at intake, buffer full (policy reject-new)' }),
    expired: Type.Integer({ description: 'deleted for being older than maxAgeDays' }),
    poisoned: Type.Integer({ description: 'refused for good by the relay, deleted' }),
    corrupted: Type.Integer({ description: 'unreadable on disk, skipped and deleted' }),
    rate: Type.Number({ description: 'records forwarded per second over the last 10 s' }),
    policy: Type.Optional(Type.String({ description: 'drop-oldest or reject-new' })),
  },
  { description: 'store-and-forward buffer figures (live only: not kept once the agent is gone)' },
)
export type AgentBufferInfo = Static<typeof AgentBufferInfo>

export const AgentInfo = Type.Object({
  version: Type.String(),
  allow: Type.Array(Type.String(), { description: "the agent's own allowlist of local targets" }),
  refusals: Type.Integer({ description: 'dials the agent refused since it started' }),
  downlinks: Type.Optional(
    Type.Array(PropertyDownlinkRule, {
      description: 'property changes of devices it provisioned that the relay publishes on its broker',
    }),
  ),
  buffer: Type.Optional(AgentBufferInfo),
  broker: Type.Optional(
    Type.Record(Type.String(), Type.Unknown(), { description: 'embedded MQTT broker counters (live only)' }),
  ),
})

/** The agent whose data provisioned a device (devices it uplinks from its LAN). */
export const ViaRef = Type.Object({
  agent: Type.String({ description: "the agent's device id; property downlinks go through it" }),
})

/** The integration that provisioned a device, and the device type its converter gave. */
export const IntegrationRef = Type.Object({
  id: Type.String({ description: 'integration id' }),
  deviceType: Type.String({ description: "the converter's deviceType" }),
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
  integration: Type.Optional(IntegrationRef),
  via: Type.Optional(ViaRef),
})
export type DeviceView = Static<typeof DeviceView>

/** Creation answer: the only time an agent's credential is shown. */
export const DeviceCreated = Type.Intersect([
  DeviceView,
  Type.Object({ credential: Type.Optional(Type.String({ description: 'agents only' })) }),
])

export const DeviceStats = Type.Object({
  connected: Type.Boolean(),
  connected_ts: Type.Optional(Type.Integer()),
  disconnected_ts: Type.Optional(Type.Integer()),
  ip_address: Type.Optional(Type.String()),
  rx_bytes: Type.Integer({ description: 'bytes received from the device in the current or last session' }),
  tx_bytes: Type.Integer({ description: 'bytes sent to the device in the current or last session' }),
  last_seen_ts: Type.Optional(Type.Integer({ description: 'last traffic from or to the device' })),
  total: Type.Object({
    messages: Type.Integer({ description: 'callbacks (http devices) or IoTMP frames (agents)' }),
    rx_bytes: Type.Integer(),
    tx_bytes: Type.Integer(),
    ignored: Type.Integer({ description: 'callbacks answered but not processed (body not JSON)' }),
  }),
  daily: Type.Array(
    Type.Object({
      day: Type.String({ description: 'UTC date YYYY-MM-DD' }),
      messages: Type.Integer(),
      rx_bytes: Type.Integer(),
      tx_bytes: Type.Integer(),
    }),
    { description: 'the last 30 days, oldest first' },
  ),
})
export type DeviceStats = Static<typeof DeviceStats>

/** What a callback does (Thinger's `actions`); each names a bucket, endpoint or property, or is off. */
export const CallbackActions = Type.Object(
  {
    write_bucket: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Null()])),
    call_endpoint: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Null()])),
    set_property: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Null()])),
    send_property: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Null()])),
  },
  { additionalProperties: false },
)
export type CallbackActions = Static<typeof CallbackActions>

export const CallbackSettings = Type.Object(
  {
    actions: Type.Optional(CallbackActions),
    properties: Type.Optional(
      Type.Object(
        {
          timeout: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 525600,
              description:
                'minutes without a callback after which the device shows disconnected (default 10)',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
)
export type CallbackSettings = Static<typeof CallbackSettings>

/** Stored callback state of an HTTP device. */
export interface CallbackRecord {
  token_id: string
  actions: CallbackActions
  properties: { timeout?: number }
}

/** A stored device. */
export interface DeviceRecord {
  user: string
  device: string
  type: DeviceType
  name: string
  description: string
  enabled: boolean
  created_ts: number
  /** Agents: scrypt hash of the credential. */
  credentialHash?: string
  /** HTTP devices: the callback's token id (rotation revokes older tokens) and settings. */
  callback?: CallbackRecord
  /** Integration devices: who provisioned it (downlinks go back through that integration). */
  integration?: Static<typeof IntegrationRef>
  /** LAN devices an agent uplinks: the agent that provisioned it (property downlinks go back through it). */
  via?: Static<typeof ViaRef>
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
