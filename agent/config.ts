/** Agent configuration: one typebox schema with defaults, validated once at start and frozen. */
import { type Static, Type } from 'typebox'
import { Value } from 'typebox/value'
import { windowConfigFields } from '../protocol/window-config.ts'
import { dataConfigFields } from './data-config.ts'

/** The store-and-forward buffer (agent/buffer/data-buffer.ts, BufferLimits, explains each key). */
export const BufferConfig = Type.Object(
  {
    maxBytes: Type.Integer({
      minimum: 1024,
      default: 256 * 1024 * 1024,
      description: 'stored bytes at most',
    }),
    maxRecords: Type.Integer({ minimum: 1, default: 1_000_000, description: 'stored records at most' }),
    maxAgeDays: Type.Optional(
      Type.Number({
        exclusiveMinimum: 0,
        maximum: 36500,
        description: 'records older than this are dropped',
      }),
    ),
    policy: Type.Union([Type.Literal('drop-oldest'), Type.Literal('reject-new')], {
      default: 'drop-oldest',
      description: 'when full: delete the oldest records, or refuse new ones (the device keeps its message)',
    }),
    sync: Type.Boolean({
      default: true,
      description: 'fsync each append batch (survives power loss); false: faster, survives only a crash',
    }),
  },
  { additionalProperties: false, default: {} },
)

export const AgentConfig = Type.Object(
  {
    relay: Type.String({
      pattern: '^wss?://',
      description: 'relay URL, ws:// or wss:// (path /iotmp added)',
    }),
    user: Type.String({ minLength: 1, description: 'owner of the device on the relay' }),
    device: Type.String({ minLength: 1, description: 'device id of this agent' }),
    credential: Type.String({ minLength: 1, description: 'device credential shown once at creation' }),
    keepAliveSec: Type.Integer({ minimum: 1, maximum: 1800, default: 60 }),
    allow: Type.Array(Type.String(), {
      default: [],
      description: 'local targets the relay may open; empty denies all',
    }),
    ca: Type.Optional(Type.String({ description: 'PEM file of the CA that signed the relay certificate' })),
    targetCa: Type.Array(Type.String({ minLength: 1 }), {
      default: [],
      description:
        'PEM files of CAs trusted, besides the bundled roots, for TLS to local targets (a site CA)',
    }),
    insecure: Type.Boolean({
      default: false,
      description: 'skip relay certificate verification (testing only)',
    }),
    stateDir: Type.String({ default: './agent-state', description: 'LevelDB buffer and state' }),
    logLevel: Type.Union(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
      { default: 'info' },
    ),
    dialTimeoutMs: Type.Integer({ minimum: 100, maximum: 120_000, default: 10_000 }),
    ...windowConfigFields('the relay'),
    maskFrames: Type.Union([Type.Literal('auto'), Type.Boolean()], {
      default: 'auto',
      description: 'RFC 6455 masking; auto masks only plain ws to a non-loopback relay',
    }),
    buffer: BufferConfig,
    ...dataConfigFields,
  },
  { additionalProperties: false },
)
export type AgentConfig = Static<typeof AgentConfig>

/** Fills defaults, validates and freezes; throws an Error listing every bad key. */
export function loadAgentConfig(input: Record<string, unknown>): Readonly<AgentConfig> {
  const withDefaults = Value.Default(AgentConfig, structuredClone(input)) as AgentConfig
  const errors = [...Value.Errors(AgentConfig, withDefaults)]
  if (errors.length > 0) {
    const lines = errors.map((e) => `${e.instancePath || '/'} ${e.message}`)
    throw new Error(`invalid agent configuration:\n  ${lines.join('\n  ')}`)
  }
  return Object.freeze(withDefaults)
}
