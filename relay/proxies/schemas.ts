/** Proxy profile schemas (DESIGN.md, "Proxies"); TypeScript types derive from them. */
import { type Static, Type } from 'typebox'

export const ProxyId = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'immutable profile id' })

export const ProxyProtocol = Type.Union(
  ['tcp', 'udp', 'tcp-iotmp', 'udp-iotmp', 'http-iotmp'].map((p) => Type.Literal(p)),
)

export const ProxySource = Type.Object(
  {
    port: Type.Integer({ minimum: 0, maximum: 65535, description: '0 lets the OS pick (see status.port)' }),
    address: Type.Optional(Type.String({ default: '0.0.0.0', description: 'bind address' })),
  },
  { additionalProperties: false },
)

export const DeviceTarget = Type.Object(
  {
    type: Type.Literal('device'),
    user: Type.String({ minLength: 1 }),
    device: Type.String({ minLength: 1 }),
    address: Type.String({ minLength: 1, maxLength: 255, description: 'host on the agent LAN' }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    tls: Type.Optional(
      Type.Boolean({ default: false, description: 'agent wraps the connection in TLS (SNI)' }),
    ),
    verify: Type.Optional(Type.Boolean({ default: true, description: 'verify the target certificate' })),
  },
  { additionalProperties: false },
)

export const ProxyProfile = Type.Object(
  {
    id: ProxyId,
    name: Type.Optional(Type.String({ maxLength: 128 })),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    protocol: ProxyProtocol,
    enabled: Type.Boolean({ default: true }),
    source: ProxySource,
    target: DeviceTarget,
  },
  { additionalProperties: false },
)
export type ProxyProfile = Static<typeof ProxyProfile>

export const ProxyStatus = Type.Object({
  listening: Type.Boolean(),
  port: Type.Optional(Type.Integer({ description: 'bound port' })),
  error: Type.Optional(Type.String()),
  active_connections: Type.Integer(),
  total_connections: Type.Integer(),
  rx_bytes: Type.Integer({ description: 'bytes from clients' }),
  tx_bytes: Type.Integer({ description: 'bytes to clients' }),
  last_error: Type.Optional(Type.Object({ message: Type.String(), ts: Type.Integer() })),
})
export type ProxyStatus = Static<typeof ProxyStatus>

export const ProxyView = Type.Intersect([ProxyProfile, Type.Object({ status: ProxyStatus })])

export const ProxyParams = Type.Object({ id: Type.String() })
