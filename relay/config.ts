/** Relay configuration: one typebox schema with defaults, validated once at start and frozen. */
import { type Static, Type } from 'typebox'
import { Value } from 'typebox/value'
import { windowConfigFields } from '../protocol/window-config.ts'
import { portalConfigFields } from './portals/portal-config.ts'

export const RelayConfig = Type.Object(
  {
    host: Type.String({ default: '0.0.0.0', description: 'address the HTTP/WebSocket server binds' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080, description: '0 lets the OS pick' }),
    dataDir: Type.String({ default: './data', description: 'LevelDB and the JWT secret live here' }),
    logLevel: Type.Union(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
      { default: 'info' },
    ),
    tlsCert: Type.Optional(Type.String({ description: 'PEM certificate file: serve https/wss directly' })),
    tlsKey: Type.Optional(Type.String({ description: 'PEM private key file' })),
    adminPassword: Type.Optional(Type.String({ minLength: 8, description: 'first-start admin password' })),
    accessTokenTtlSec: Type.Integer({ minimum: 1, default: 3600 }),
    refreshTokenTtlSec: Type.Integer({ minimum: 60, default: 30 * 24 * 3600 }),
    maxKeepAliveSec: Type.Integer({ minimum: 1, maximum: 1800, default: 1800 }),
    ...windowConfigFields('agents'),
    maxFrameBytes: Type.Integer({ minimum: 64 * 1024, maximum: 16 * 1024 * 1024, default: 1024 * 1024 }),
    trustProxy: Type.Boolean({ default: false, description: 'take the client address from X-Forwarded-For' }),
    plugins: Type.Record(
      Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
      Type.Object({ address: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
      { default: {}, description: 'named services on the relay host that proxies can target' },
    ),
    dialTimeoutMs: Type.Integer({ minimum: 100, maximum: 120_000, default: 10_000 }),
    targetCa: Type.Array(Type.String({ minLength: 1 }), {
      default: [],
      description: 'PEM files of CAs trusted, besides the bundled roots, for TLS to host and plugin targets',
    }),
    publicUrl: Type.Optional(
      Type.String({
        pattern: '^https?://[^/]+$',
        description:
          'origin browsers use to reach the relay (https://tether.example.com); default: the Host of each request',
      }),
    ),
    ...portalConfigFields,
    converterMemoryMb: Type.Integer({
      minimum: 8,
      maximum: 1024,
      default: 32,
      description: 'memory limit of each converter isolate (MiB)',
    }),
    converterTimeoutMs: Type.Integer({
      minimum: 1,
      maximum: 60_000,
      default: 200,
      description: 'CPU time a converter call may take before it fails',
    }),
    converterIsolates: Type.Integer({
      minimum: 1,
      maximum: 64,
      default: 4,
      description: 'isolates in the converter pool (calls run in parallel across them)',
    }),
    statsFlushMs: Type.Integer({
      minimum: 100,
      maximum: 600_000,
      default: 5000,
      description: 'how often device traffic counters are sampled and written',
    }),
  },
  { additionalProperties: false },
)
export type RelayConfig = Static<typeof RelayConfig>

/** Fills defaults, validates and freezes; throws an Error listing every bad key. */
export function loadRelayConfig(input: Partial<RelayConfig>): Readonly<RelayConfig> {
  const withDefaults = Value.Default(RelayConfig, structuredClone(input)) as RelayConfig
  const errors = [...Value.Errors(RelayConfig, withDefaults)]
  if (errors.length > 0) {
    const lines = errors.map((e) => `${e.instancePath || '/'} ${e.message}`)
    throw new Error(`invalid relay configuration:\n  ${lines.join('\n  ')}`)
  }
  if (Boolean(withDefaults.tlsCert) !== Boolean(withDefaults.tlsKey)) {
    throw new Error('invalid relay configuration: tlsCert and tlsKey go together')
  }
  return Object.freeze(withDefaults)
}
