/**
 * The agent's embedded MQTT broker (issue 7, "Ingestion on the agent"): aedes behind a TCP listener on
 * `broker.host:broker.port` and, when `broker.tls` is set, a TLS listener on `broker.tls.port`. LAN clients get a
 * standard MQTT 3.1.1 broker (aedes: retained messages, wills, QoS 0/1/2, persistent sessions in memory); messages
 * on topics a `topics` mapping matches are also appended to the store-and-forward buffer, durably before their
 * PUBACK (uplink-gate.ts). The relay publishes to LAN topics through RUN `$mqtt/publish` (mqtt-publish.ts).
 *
 * aedes 1.x speaks MQTT 3.1 and 3.1.1; an MQTT 5 CONNECT is answered "unacceptable protocol version".
 */
import type { Socket } from 'node:net'
import { Aedes, type AuthenticateError, type Client, type PublishPacket } from 'aedes'
import type { Logger } from 'pino'
import type { DataBuffer } from '../buffer/data-buffer.ts'
import type { BrokerConfig, TopicMapping } from '../data-config.ts'
import { brokerError } from './broker-errors.ts'
import { type BrokerStats, emptyStats } from './broker-stats.ts'
import { credentialCheck } from './broker-users.ts'
import { type BrokerListener, listen } from './listeners.ts'
import { MQTT_PUBLISH_RESOURCE, type PublishRequest, parsePublishRequest } from './mqtt-publish.ts'
import { guardPacketSize } from './packet-size-guard.ts'
import { TopicMapper } from './topic-mapping.ts'
import { UplinkGate } from './uplink-gate.ts'

export interface MqttBrokerOptions {
  config: BrokerConfig
  /** Uplinked topics (config `topics`); checked here, a bad filter or placeholder fails the start. */
  topics: readonly TopicMapping[]
  buffer: Pick<DataBuffer, 'append'>
  log: Logger
}

/** CONNACK return code 4, "bad user name or password" (MQTT 3.1.1, table 3.1). */
const BAD_USERNAME_OR_PASSWORD = 4 as AuthenticateError['returnCode']

interface IncomingStore {
  incomingGetPacket(client: Client, packet: PublishPacket): Promise<unknown>
}

/** A running broker; `MqttBroker.start`. */
export class MqttBroker {
  readonly #aedes: Aedes
  readonly #listeners: BrokerListener[]
  readonly #stats: BrokerStats
  readonly #maxPayloadBytes: number
  readonly #log: Logger
  #closed?: Promise<void>

  private constructor(
    aedes: Aedes,
    listeners: BrokerListener[],
    stats: BrokerStats,
    opts: MqttBrokerOptions,
  ) {
    this.#aedes = aedes
    this.#listeners = listeners
    this.#stats = stats
    this.#maxPayloadBytes = opts.config.maxPayloadBytes
    this.#log = opts.log
  }

  /** Compiles the mappings, starts aedes and binds the listeners; rejects (nothing left open) on failure. */
  static async start(opts: MqttBrokerOptions): Promise<MqttBroker> {
    const { config, buffer, log } = opts
    const mapper = TopicMapper.compile(opts.topics)
    const stats = emptyStats()
    const allowed = credentialCheck(config.users)
    let persistence: IncomingStore | undefined
    const gate = new UplinkGate({
      mapper,
      buffer,
      maxPayloadBytes: config.maxPayloadBytes,
      stats,
      log,
      holdsQos2: async (client, packet) => {
        if (!persistence) return false
        return persistence.incomingGetPacket(client, packet).then(
          () => true,
          () => false,
        )
      },
    })
    const aedes = await Aedes.createBroker({
      authenticate: (client, username, password, done) => {
        if (allowed(username, password)) return done(null, true)
        stats.authFailures++
        log.info({ clientId: client.id, username }, 'MQTT CONNECT refused: bad username or password')
        done(
          Object.assign(new Error('bad username or password'), { returnCode: BAD_USERNAME_OR_PASSWORD }),
          false,
        )
      },
      authorizePublish: gate.authorize,
    })
    persistence = (aedes as unknown as { persistence: IncomingStore }).persistence
    aedes.on('clientError', (client, err) => {
      // Ours (oversize) are counted and logged where they are raised.
      if ((err as { code?: string }).code?.startsWith('TETHER_ERR_MQTT_')) return
      stats.clientErrors++
      log.info({ clientId: client.id, err: err.message }, 'MQTT client disconnected on error')
    })
    const onConnection = (socket: Socket) => {
      stats.connections++
      const client = aedes.handle(socket)
      guardPacketSize(client, config.maxPayloadBytes, (bytes, cmd) => {
        stats.oversize++
        const err = brokerError('TETHER_ERR_MQTT_PAYLOAD_TOO_LARGE', bytes, config.maxPayloadBytes)
        log.warn({ clientId: client.id, cmd, bytes }, `${err.message}: client disconnected`)
        return err
      })
    }
    const listeners: BrokerListener[] = []
    try {
      listeners.push(await listen({ host: config.host, port: config.port, onConnection, log }))
      if (config.tls) {
        const { cert, key, port } = config.tls
        listeners.push(await listen({ host: config.host, port, tls: { cert, key }, onConnection, log }))
      }
    } catch (err) {
      await Promise.all(listeners.map((l) => l.close()))
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      throw new Error(`MQTT broker cannot listen on ${config.host}: ${(err as Error).message}`, {
        cause: err,
      })
    }
    const broker = new MqttBroker(aedes, listeners, stats, opts)
    log.info(
      { host: config.host, port: broker.port, tlsPort: broker.tlsPort, mappings: mapper.size },
      'MQTT broker listening',
    )
    return broker
  }

  /** The bound plain-MQTT port. */
  get port(): number {
    return (this.#listeners[0] as BrokerListener).port
  }

  /** The bound MQTT-over-TLS port, when `broker.tls` is set. */
  get tlsPort(): number | undefined {
    return this.#listeners[1]?.port
  }

  /** Counters since start (broker-stats.ts); cheap, for DESCRIBE and /metrics. */
  stats(): BrokerStats {
    return { ...this.#stats, clients: this.#aedes.connectedClients ?? 0 }
  }

  /** Whether `resource` is a RUN this broker serves. */
  handles(resource: string): boolean {
    return resource === MQTT_PUBLISH_RESOURCE
  }

  /** Serves RUN `$mqtt/publish`: publishes, then answers `{topic, qos, retain, bytes}`. */
  async run(resource: string, payload: unknown, params: Record<string, unknown> | undefined) {
    if (resource !== MQTT_PUBLISH_RESOURCE) throw brokerError('TETHER_ERR_MQTT_PUBLISH_INVALID', resource)
    const request = parsePublishRequest(payload, params, this.#maxPayloadBytes)
    await this.publish(request)
    const { topic, qos, retain } = request
    return { topic, qos, retain, bytes: request.payload.length }
  }

  /** Publishes on the broker (subscribers get it; retained if asked); resolves once aedes has published. */
  publish(request: PublishRequest): Promise<void> {
    if (this.#closed) return Promise.reject(brokerError('TETHER_ERR_MQTT_PUBLISH_FAILED', 'broker closed'))
    const packet: PublishPacket = { cmd: 'publish', dup: false, ...request }
    return new Promise((resolve, reject) => {
      this.#aedes.publish(packet, (err) => {
        if (err) return reject(brokerError('TETHER_ERR_MQTT_PUBLISH_FAILED', err.message))
        this.#stats.downlinks++
        this.#log.debug({ topic: request.topic, bytes: request.payload.length }, 'published for the relay')
        resolve()
      })
    })
  }

  /** Disconnects every client (wills are published and uplinked), stops listening; idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await new Promise<void>((resolve) => this.#aedes.close(() => resolve()))
      await Promise.all(this.#listeners.map((l) => l.close()))
    })()
    return this.#closed
  }
}
