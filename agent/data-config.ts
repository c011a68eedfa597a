/**
 * Configuration of the agent's data plane (issue 7): the embedded MQTT broker, topic mappings, the site-broker
 * bridge, local HTTP ingest, the local metrics port and property → topic downlinks. Each part is off unless
 * configured, so an agent that only tunnels opens no extra port.
 */
import { type Static, Type } from 'typebox'

const listen = (port: number, what: string) => ({
  host: Type.String({
    default: '127.0.0.1',
    description: `bind address of ${what} (LAN: 0.0.0.0 or an interface)`,
  }),
  port: Type.Integer({
    minimum: 0,
    maximum: 65535,
    default: port,
    description: `port of ${what} (0: any free port)`,
  }),
})

/** The embedded MQTT broker (aedes) for LAN devices. */
export const BrokerConfig = Type.Object(
  {
    ...listen(1883, 'the MQTT broker'),
    tls: Type.Optional(
      Type.Object(
        {
          cert: Type.String({ description: 'PEM certificate file' }),
          key: Type.String({ description: 'PEM key file' }),
          port: Type.Integer({
            minimum: 0,
            maximum: 65535,
            default: 8883,
            description: 'MQTT over TLS port',
          }),
        },
        { additionalProperties: false },
      ),
    ),
    users: Type.Optional(
      Type.Array(
        Type.Object(
          { username: Type.String({ minLength: 1 }), password: Type.String({ minLength: 1 }) },
          { additionalProperties: false },
        ),
        { description: 'when set, clients must log in with one of these' },
      ),
    ),
    maxPayloadBytes: Type.Integer({
      minimum: 1,
      maximum: 16 * 1024 * 1024,
      default: 256 * 1024,
      description: 'larger PUBLISH packets close the client',
    }),
  },
  { additionalProperties: false },
)
export type BrokerConfig = Static<typeof BrokerConfig>

/**
 * Which topics are uplinked and to which device: `{1}`, `{2}`… in `device` are the topic's wildcard segments
 * (`+`, or what `#` matched), in order. Topics no rule matches stay on the LAN.
 */
export const TopicMapping = Type.Object(
  {
    filter: Type.String({
      minLength: 1,
      maxLength: 1024,
      description: 'MQTT topic filter, e.g. devices/+/data',
    }),
    device: Type.String({
      minLength: 1,
      maxLength: 128,
      description: 'device id, with {1}, {2}… for wildcard segments, e.g. {1}',
    }),
    bucket: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 128,
        description: "bucket id (same placeholders); default the device's",
      }),
    ),
  },
  { additionalProperties: false },
)
export type TopicMapping = Static<typeof TopicMapping>

/** A subscription to an existing site broker (Mosquitto, EMQX…); what it receives goes through `topics`. */
export const BridgeConfig = Type.Object(
  {
    url: Type.String({ pattern: '^(mqtts?|wss?)://', description: 'site broker URL' }),
    username: Type.Optional(Type.String()),
    password: Type.Optional(Type.String()),
    clientId: Type.Optional(
      Type.String({ minLength: 1, description: 'fixed id: the broker keeps our session' }),
    ),
    ca: Type.Optional(Type.String({ description: 'PEM CA file of an mqtts:// broker' })),
    rejectUnauthorized: Type.Boolean({ default: true }),
    subscriptions: Type.Array(
      Type.Object(
        {
          filter: Type.String({ minLength: 1 }),
          qos: Type.Union([Type.Literal(0), Type.Literal(1), Type.Literal(2)], { default: 1 }),
        },
        { additionalProperties: false },
      ),
      { minItems: 1 },
    ),
  },
  { additionalProperties: false },
)
export type BridgeConfig = Static<typeof BridgeConfig>

/** `POST /data/{device}` on the LAN for devices that only speak HTTP. */
export const HttpIngestConfig = Type.Object(
  {
    ...listen(8081, 'HTTP ingest'),
    token: Type.Optional(
      Type.String({ minLength: 8, description: 'required as Authorization: Bearer <token>' }),
    ),
    maxBodyBytes: Type.Integer({ minimum: 1, maximum: 16 * 1024 * 1024, default: 256 * 1024 }),
  },
  { additionalProperties: false },
)
export type HttpIngestConfig = Static<typeof HttpIngestConfig>

/** Prometheus `/metrics` of the agent on a local port. */
export const MetricsConfig = Type.Object(
  { ...listen(9464, 'agent metrics') },
  { additionalProperties: false },
)
export type MetricsConfig = Static<typeof MetricsConfig>

/** A property of a LAN device the relay publishes to a topic when it changes (`{device}` is the device id). */
export const PropertyDownlink = Type.Object(
  {
    property: Type.String({ minLength: 1, description: 'property id, or * for every property' }),
    topic: Type.String({ minLength: 1, description: 'e.g. devices/{device}/set/{property}' }),
    qos: Type.Union([Type.Literal(0), Type.Literal(1), Type.Literal(2)], { default: 1 }),
    retain: Type.Boolean({ default: false }),
  },
  { additionalProperties: false },
)
export type PropertyDownlink = Static<typeof PropertyDownlink>

/** The data-plane keys of the agent configuration. */
export const dataConfigFields = {
  broker: Type.Optional(BrokerConfig),
  topics: Type.Array(TopicMapping, { default: [], description: 'uplinked topics (broker and bridge)' }),
  bridge: Type.Optional(BridgeConfig),
  httpIngest: Type.Optional(HttpIngestConfig),
  metrics: Type.Optional(MetricsConfig),
  downlinks: Type.Array(PropertyDownlink, {
    default: [],
    description: 'property changes on the relay published to LAN topics',
  }),
}
