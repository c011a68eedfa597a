/**
 * Integration configuration, shared by the relay (API, store, manager) and the agent (remote integrations):
 * the typebox schemas validate the API and the agent's copy; TypeScript types derive from them.
 */
import { type Static, Type } from 'typebox'

export const IntegrationId = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'integration id' })
export const ConverterRef = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'converter id' })

const common = {
  id: IntegrationId,
  name: Type.Optional(Type.String({ maxLength: 128 })),
  enabled: Type.Optional(Type.Boolean({ description: 'default true' })),
  debug: Type.Optional(
    Type.Boolean({ description: 'keep the last events (in, out, error, duration); costs memory and time' }),
  ),
  uplinkConverter: ConverterRef,
  downlinkConverter: Type.Optional(ConverterRef),
  metadata: Type.Optional(
    Type.Record(Type.String({ minLength: 1, maxLength: 128 }), Type.String({ maxLength: 4096 }), {
      description:
        "integration metadata: merged into every uplink's metadata, and the Encoder's integrationMetadata",
    }),
  ),
  runOn: Type.Optional(
    Type.Object(
      {
        device: Type.String({
          pattern: '^[A-Za-z0-9_-]{1,64}$',
          description: "agent device of the integration's owner",
        }),
      },
      {
        additionalProperties: false,
        description: 'remote integration: runs on this agent instead of the relay',
      },
    ),
  ),
}

export const HttpSettings = Type.Object(
  {
    routingKey: Type.Optional(
      Type.String({
        pattern: '^[A-Za-z0-9_-]{8,128}$',
        description: 'the URL key /api/v1/integrations/http/{routingKey}; generated when absent',
      }),
    ),
    security: Type.Optional(
      Type.Object(
        {
          enabled: Type.Boolean(),
          headers: Type.Record(
            Type.String({ minLength: 1, maxLength: 256 }),
            Type.String({ maxLength: 4096 }),
            {
              description: 'every header must be present with exactly this value, else 403',
            },
          ),
        },
        { additionalProperties: false },
      ),
    ),
    replaceNoContentToOk: Type.Optional(Type.Boolean({ description: 'answer 200 instead of 204' })),
    downlinkQueueSize: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 10_000,
        description: 'pending downlinks kept per device (default 100)',
      }),
    ),
  },
  { additionalProperties: false },
)

export const MqttSettings = Type.Object(
  {
    url: Type.String({ pattern: '^(mqtts?|wss?)://[^/?#]+', maxLength: 2048, description: 'broker URL' }),
    username: Type.Optional(Type.String({ maxLength: 1024 })),
    password: Type.Optional(Type.String({ maxLength: 1024, description: 'never returned by the API' })),
    clientId: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    ca: Type.Optional(Type.String({ maxLength: 65_536, description: 'PEM of the CA of an mqtts:// broker' })),
    rejectUnauthorized: Type.Optional(
      Type.Boolean({ description: 'verify the broker certificate (default true)' }),
    ),
    topicFilters: Type.Array(
      Type.Object(
        {
          filter: Type.String({ minLength: 1, maxLength: 1024 }),
          qos: Type.Optional(Type.Union([Type.Literal(0), Type.Literal(1), Type.Literal(2)])),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 100 },
    ),
    downlinkTopic: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 1024,
        description:
          'topic for downlinks whose converter metadata has no topic; {{device}} is the device name',
      }),
    ),
  },
  { additionalProperties: false },
)

const listen = {
  port: Type.Integer({
    minimum: 0,
    maximum: 65535,
    description: '0 picks a free port (read it from status)',
  }),
  address: Type.Optional(Type.String({ description: 'bind address (default 0.0.0.0)' })),
}

export const TcpFraming = Type.Union([
  Type.Object(
    {
      type: Type.Literal('delimiter'),
      delimiter: Type.String({ pattern: '^([0-9a-fA-F]{2})+$', description: 'hex bytes, e.g. 0a for \\n' }),
      maxFrameBytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 16_777_216 })),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('length'),
      bytes: Type.Union([Type.Literal(1), Type.Literal(2), Type.Literal(4)]),
      endian: Type.Optional(Type.Union([Type.Literal('BE'), Type.Literal('LE')])),
      maxFrameBytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 16_777_216 })),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('connection'),
      maxFrameBytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 16_777_216 })),
    },
    { additionalProperties: false, description: 'one message per connection, sent when the peer ends it' },
  ),
])

export const TcpSettings = Type.Object({ ...listen, framing: TcpFraming }, { additionalProperties: false })
export const UdpSettings = Type.Object({ ...listen }, { additionalProperties: false })

export const IntegrationConfig = Type.Union([
  Type.Object(
    { ...common, type: Type.Literal('http'), http: Type.Optional(HttpSettings) },
    { additionalProperties: false },
  ),
  Type.Object({ ...common, type: Type.Literal('mqtt'), mqtt: MqttSettings }, { additionalProperties: false }),
  Type.Object({ ...common, type: Type.Literal('tcp'), tcp: TcpSettings }, { additionalProperties: false }),
  Type.Object({ ...common, type: Type.Literal('udp'), udp: UdpSettings }, { additionalProperties: false }),
])
export type IntegrationConfig = Static<typeof IntegrationConfig>
export type IntegrationType = IntegrationConfig['type']
export type MqttSettings = Static<typeof MqttSettings>
export type TcpSettings = Static<typeof TcpSettings>
export type UdpSettings = Static<typeof UdpSettings>
export type HttpSettings = Static<typeof HttpSettings>
export type TcpFraming = Static<typeof TcpFraming>
