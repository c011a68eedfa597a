/** Integration API schemas: the config (shared with agents, `integrations/schemas.ts`) plus stored and live state. */
import { type Static, Type } from 'typebox'
import { IntegrationConfig } from '../../integrations/schemas.ts'
import { DebugEvent } from '../converters/debug-events.ts'

export { IntegrationConfig }

/** A stored integration: the config with its owner, times, and (http) the routing key filled in. */
export type IntegrationRecord = IntegrationConfig & { user: string; created_ts: number; updated_ts: number }

export const IntegrationStatus = Type.Object({
  state: Type.Union([
    Type.Literal('disabled'),
    Type.Literal('starting'),
    Type.Literal('running'),
    Type.Literal('stopped'),
    Type.Literal('error'),
    Type.Literal('remote'),
  ]),
  error: Type.Optional(Type.String()),
  port: Type.Optional(Type.Integer({ description: 'tcp/udp: the bound port' })),
  url: Type.Optional(Type.String({ description: 'http: the uplink URL; mqtt: the broker' })),
  connections: Type.Optional(Type.Integer()),
  uplinks: Type.Integer({ description: 'messages converted and stored' }),
  errors: Type.Integer({ description: 'messages that failed (converter, output or storage)' }),
  downlinks: Type.Integer({ description: 'downlinks delivered or answered' }),
  downlinks_pending: Type.Integer({ description: 'http: downlinks waiting for their device' }),
  downlinks_dropped: Type.Integer({ description: 'http: downlinks dropped from a full queue' }),
  last_error: Type.Optional(Type.Object({ ts: Type.Integer(), message: Type.String() })),
  last_uplink_ts: Type.Optional(Type.Integer()),
  agent_online: Type.Optional(
    Type.Boolean({ description: 'remote integrations: whether their agent is connected' }),
  ),
})
export type IntegrationStatus = Static<typeof IntegrationStatus>

/** The API view: the config (the MQTT password replaced by `password_set`) with times and live status. */
export const IntegrationView = Type.Intersect([
  Type.Object(
    {},
    { additionalProperties: true, description: 'the integration config (see IntegrationConfig)' },
  ),
  Type.Object({
    id: Type.String(),
    type: Type.String(),
    created_ts: Type.Integer(),
    updated_ts: Type.Integer(),
    status: IntegrationStatus,
  }),
])
export type IntegrationView = Static<typeof IntegrationView>

export const IntegrationParams = Type.Object({ user: Type.String(), integration: Type.String() })
export type IntegrationParams = Static<typeof IntegrationParams>
export const UserParams = Type.Object({ user: Type.String() })
export type UserParams = Static<typeof UserParams>
export const DebugEventList = Type.Array(DebugEvent)

export const DownlinkResult = Type.Object({
  status: Type.Union([Type.Literal('delivered'), Type.Literal('queued')], {
    description: 'delivered: sent over mqtt/tcp/udp; queued: waits for the http device’s next uplink',
  }),
  integration: Type.String(),
  output: Type.Optional(Type.Unknown({ description: 'the encoded downlink (delivered ones)' })),
})
export type DownlinkResult = Static<typeof DownlinkResult>
