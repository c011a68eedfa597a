/** Proxy profile schemas (DESIGN.md, "Proxies"); TypeScript types derive from them. */
import { type Static, Type } from 'typebox'

export const ProxyId = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'immutable profile id' })

export const ProxyProtocol = Type.Union([
  Type.Literal('tcp'),
  Type.Literal('udp'),
  Type.Literal('tcp-iotmp'),
  Type.Literal('udp-iotmp'),
  Type.Literal('http-iotmp'),
])
export type ProxyProtocol = Static<typeof ProxyProtocol>

export const ProxySource = Type.Object(
  {
    port: Type.Integer({ minimum: 0, maximum: 65535, description: '0 lets the OS pick (see status.port)' }),
    address: Type.Optional(Type.String({ default: '0.0.0.0', description: 'bind address' })),
    allow: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        description: 'client CIDRs allowed to connect; absent = any',
      }),
    ),
    maxConnections: Type.Optional(
      Type.Integer({
        minimum: 1,
        description: 'concurrent connections (UDP: client mappings); absent = no limit',
      }),
    ),
    idleTimeoutSec: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 86400,
        description: 'UDP: idle client mappings expire after this many seconds (default 60)',
      }),
    ),
  },
  { additionalProperties: false },
)
export type ProxySource = Static<typeof ProxySource>

const tlsFields = {
  tls: Type.Optional(
    Type.Boolean({ default: false, description: 'TLS to the target (SNI from the address)' }),
  ),
  verify: Type.Optional(Type.Boolean({ default: true, description: 'verify the target certificate' })),
  servername: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 253,
      description:
        'TLS: name the certificate must match, sent as SNI (default: the address unless it is an IP)',
    }),
  ),
}

export const HostTarget = Type.Object(
  {
    type: Type.Literal('host'),
    address: Type.String({ minLength: 1, maxLength: 255, description: 'host reachable from the relay' }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    ...tlsFields,
  },
  { additionalProperties: false },
)

export const PluginTarget = Type.Object(
  {
    type: Type.Literal('plugin'),
    plugin: Type.String({ minLength: 1, description: 'name of a plugin in the relay configuration' }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    ...tlsFields,
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
    ...tlsFields,
  },
  { additionalProperties: false },
)

const TargetUnion = Type.Union([HostTarget, PluginTarget, DeviceTarget])
export type ProxyTarget = Static<typeof TargetUnion>
/** oneOf with a discriminator, so validation errors name the missing field of the chosen target type. */
export const ProxyTarget = Type.Unsafe<ProxyTarget>({
  type: 'object',
  required: ['type'],
  discriminator: { propertyName: 'type' },
  oneOf: [HostTarget, PluginTarget, DeviceTarget],
})

/** http-iotmp only: how the portal presents requests to the device. */
export const PortalOptions = Type.Object(
  {
    preserveHost: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          "send the browser's Host, Origin and Referer unchanged (default: rewritten to the device address)",
      }),
    ),
  },
  { additionalProperties: false },
)
export type PortalOptions = Static<typeof PortalOptions>

export const ProxyProfile = Type.Object(
  {
    id: ProxyId,
    name: Type.Optional(Type.String({ maxLength: 128 })),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    protocol: ProxyProtocol,
    enabled: Type.Boolean({ default: true }),
    source: ProxySource,
    target: ProxyTarget,
    portal: Type.Optional(PortalOptions),
  },
  { additionalProperties: false },
)
export type ProxyProfile = Static<typeof ProxyProfile>

export const ProxyStatus = Type.Object({
  listening: Type.Boolean(),
  port: Type.Optional(Type.Integer({ description: 'bound port' })),
  portal: Type.Optional(
    Type.Object({
      label: Type.String({ description: 'DNS label of the portal origin' }),
      origin: Type.Optional(Type.String({ description: 'portal origin, when publicUrl is configured' })),
    }),
  ),
  error: Type.Optional(Type.String({ description: 'why an enabled profile is not listening' })),
  active_connections: Type.Integer({ description: 'open connections (UDP: live client mappings)' }),
  total_connections: Type.Integer(),
  rejected_connections: Type.Integer({
    description: 'refused by source.allow, maxConnections or the target',
  }),
  rx_bytes: Type.Integer({ description: 'bytes from clients' }),
  tx_bytes: Type.Integer({ description: 'bytes to clients' }),
  dropped_datagrams: Type.Integer({ description: 'UDP: datagrams dropped because the path was congested' }),
  last_error: Type.Optional(Type.Object({ message: Type.String(), ts: Type.Integer() })),
})
export type ProxyStatus = Static<typeof ProxyStatus>

export const ProxyView = Type.Intersect([ProxyProfile, Type.Object({ status: ProxyStatus })])

export const ProxyParams = Type.Object({ id: Type.String() })

export const ProxyDeleteMany = Type.Object(
  { ids: Type.Array(Type.String(), { minItems: 1, maxItems: 1000 }) },
  { additionalProperties: false },
)
export type ProxyDeleteMany = Static<typeof ProxyDeleteMany>
