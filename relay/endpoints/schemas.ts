/** Endpoint API schemas (DESIGN.md, "Relay REST API"); TypeScript types derive from them. */
import { type Static, Type } from 'typebox'

export const EndpointId = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'endpoint id' })

/** Default per-attempt timeout of a call, for both types. */
export const DEFAULT_TIMEOUT_MS = 10_000

const timeoutMs = Type.Optional(
  Type.Integer({
    minimum: 1,
    maximum: 120_000,
    description: `per attempt: the request (http) or broker acknowledgement (mqtt); default ${DEFAULT_TIMEOUT_MS}`,
  }),
)

export const HttpMethod = Type.Enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE'])
export type HttpMethod = Static<typeof HttpMethod>

export const HttpConfig = Type.Object(
  {
    method: HttpMethod,
    url: Type.String({
      pattern: '^https?://[^/?#]+',
      maxLength: 2048,
      description: 'http:// or https:// URL',
    }),
    headers: Type.Optional(
      Type.Record(
        Type.String({ pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$" }),
        Type.String({ pattern: '^[^\\r\\n\\u0000]*$', maxLength: 8192 }),
        { additionalProperties: false, description: 'request headers: {name: value}' },
      ),
    ),
    body: Type.Optional(
      Type.String({
        maxLength: 65_536,
        description:
          'body template: {{payload}} is the payload as JSON text, {{device}} the calling device (else empty); ' +
          'default: the payload as JSON (application/json)',
      }),
    ),
    timeout_ms: timeoutMs,
  },
  { additionalProperties: false },
)
export type HttpConfig = Static<typeof HttpConfig>

const mqttFields = {
  url: Type.String({
    pattern: '^mqtts?://[^/?#]+',
    maxLength: 2048,
    description: 'mqtt:// or mqtts:// broker URL',
  }),
  topic: Type.String({
    minLength: 1,
    maxLength: 1024,
    pattern: '^[^#+\\u0000]+$',
    description: 'publish topic (no wildcards); {{device}} is the calling device (else empty)',
  }),
  qos: Type.Enum([0, 1, 2]),
  retain: Type.Optional(Type.Boolean()),
  username: Type.Optional(Type.String({ maxLength: 256 })),
  client_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'default: generated' })),
  timeout_ms: timeoutMs,
}

export const MqttConfig = Type.Object(
  {
    ...mqttFields,
    password: Type.Optional(
      Type.String({ maxLength: 256, description: 'write-only; omitted on PUT keeps the stored one' }),
    ),
  },
  { additionalProperties: false },
)
export type MqttConfig = Static<typeof MqttConfig>

/** Checked ahead of the oneOf, so an unknown type gets a message naming the allowed ones. */
const EndpointType = Type.Enum(['http', 'mqtt'], { description: 'http | mqtt' })

const commonFields = {
  endpoint: EndpointId,
  name: Type.Optional(Type.String({ maxLength: 128, description: 'default: the id' })),
  description: Type.Optional(Type.String({ maxLength: 1024 })),
  enabled: Type.Optional(Type.Boolean({ description: 'default true; a disabled endpoint refuses calls' })),
}

const HttpEndpoint = Type.Object(
  { ...commonFields, type: Type.Literal('http'), config: HttpConfig },
  { additionalProperties: false },
)
const MqttEndpoint = Type.Object(
  { ...commonFields, type: Type.Literal('mqtt'), config: MqttConfig },
  { additionalProperties: false },
)
const EndpointUnion = Type.Union([HttpEndpoint, MqttEndpoint])
export type EndpointInput = Static<typeof EndpointUnion>

/** oneOf with a discriminator, so validation errors name the bad field of the chosen type only. */
export const EndpointCreate = Type.Unsafe<EndpointInput>({
  type: 'object',
  required: ['type'],
  properties: { type: EndpointType },
  discriminator: { propertyName: 'type' },
  oneOf: [HttpEndpoint, MqttEndpoint],
})

/** PUT replaces the whole definition; `endpoint` may be repeated but never changes. */
const HttpEndpointPut = Type.Object(
  { ...commonFields, endpoint: Type.Optional(EndpointId), type: Type.Literal('http'), config: HttpConfig },
  { additionalProperties: false },
)
const MqttEndpointPut = Type.Object(
  { ...commonFields, endpoint: Type.Optional(EndpointId), type: Type.Literal('mqtt'), config: MqttConfig },
  { additionalProperties: false },
)
export type EndpointPut = Static<typeof HttpEndpointPut> | Static<typeof MqttEndpointPut>
export const EndpointPut = Type.Unsafe<EndpointPut>({
  type: 'object',
  required: ['type'],
  properties: { type: EndpointType },
  discriminator: { propertyName: 'type' },
  oneOf: [HttpEndpointPut, MqttEndpointPut],
})

/** A stored endpoint: defaults filled in, the MQTT password kept for the broker. */
export type EndpointRecord = {
  user: string
  endpoint: string
  name: string
  description: string
  enabled: boolean
  created_ts: number
  updated_ts: number
} & ({ type: 'http'; config: HttpConfig } | { type: 'mqtt'; config: MqttConfig })

const viewFields = {
  endpoint: Type.String(),
  name: Type.String(),
  description: Type.String(),
  enabled: Type.Boolean(),
  created_ts: Type.Integer(),
  updated_ts: Type.Integer(),
}

/** An endpoint as the API shows it: the MQTT password never, only whether one is set. */
export const EndpointView = Type.Union([
  Type.Object({ ...viewFields, type: Type.Literal('http'), config: HttpConfig }),
  Type.Object({
    ...viewFields,
    type: Type.Literal('mqtt'),
    config: Type.Object({ ...mqttFields, password_set: Type.Boolean() }),
  }),
])
export type EndpointView = Static<typeof EndpointView>

export const UserParams = Type.Object({ user: Type.String() })
export type UserParams = Static<typeof UserParams>
export const EndpointParams = Type.Object({ user: Type.String(), endpoint: Type.String() })
export type EndpointParams = Static<typeof EndpointParams>

/** The outcome of one call, after its retries. */
export const CallResult = Type.Object({
  ok: Type.Boolean(),
  status: Type.Optional(Type.Integer({ description: 'http: the last answer status' })),
  error: Type.Optional(Type.String({ description: 'why the last attempt failed' })),
  duration_ms: Type.Integer({ description: 'from the first attempt to the result, backoff included' }),
  attempts: Type.Integer(),
})
export type CallResult = Static<typeof CallResult>

export const CallLogEntry = Type.Object({
  ts: Type.Integer({ description: 'ms since epoch when the result was known' }),
  ...CallResult.properties,
  device: Type.Optional(Type.String({ description: 'the device the call was made for' })),
})
export type CallLogEntry = Static<typeof CallLogEntry>
