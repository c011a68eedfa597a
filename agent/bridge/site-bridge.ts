/**
 * The site-broker bridge (issue 7, "Bridge"): an MQTT.js client of an existing broker (Mosquitto, EMQX…) that
 * subscribes to the configured filters and appends every message whose topic the `topics` mapping maps to the
 * store-and-forward buffer (`source: 'bridge'`). Topics no rule maps are ignored (counted in `unmapped`).
 *
 * Durable from the moment it is received: the acknowledgement to the site broker waits for the durable append.
 * QoS 1: PUBACK is sent from MQTT.js's `handleMessage` callback, called once the append resolved. QoS 2: PUBREC
 * waits (appending-store.ts). A message not acknowledged stays with the broker, which sends it again on our next
 * connection when it keeps our session: a configured `clientId` connects with `clean: false`. Without one the id
 * is random and the session clean, so messages published while the bridge is away are not kept by the broker.
 *
 * MQTT.js hands over one packet at a time and waits for `handleMessage` to finish, so QoS ≥ 1 messages are
 * appended one after the other, in order (each waits for its fsync when the buffer syncs). QoS 0 messages are not
 * acknowledged, so up to MAX_PENDING_QOS0 appends run at once; the buffer's write queue keeps their order.
 *
 * Buffer full under `reject-new`: a QoS ≥ 1 message stays unacknowledged and is appended as soon as the forwarder
 * frees room (the next `forwarded` event), so the site broker keeps the data meanwhile, as a device keeps its
 * message when it gets no PUBACK (a QoS 0 one is refused, counted in the buffer's `rejected`). Reading from the broker waits too; if the wait outlasts MQTT.js's keep-alive the client
 * reconnects and the broker resends what was not acknowledged. A record the buffer refuses as invalid (larger
 * than its maxRecordBytes) would be refused again forever: it is acknowledged, dropped and counted in `invalid`.
 *
 * The one duplicate window: a connection lost after the durable append and before the acknowledgement reached
 * the broker makes the broker send that message again (at least once between site broker and agent).
 */
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { readFileSync } from 'node:fs'
import { connect, type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt'
import type { Logger } from 'pino'
import type { TopicTarget } from '../broker/topic-mapping.ts'
import type { BufferError } from '../buffer/buffer-errors.ts'
import type { DataBuffer } from '../buffer/data-buffer.ts'
import type { RecordInput } from '../buffer/records.ts'
import type { BridgeConfig } from '../data-config.ts'
import { AppendingIncomingStore } from './appending-store.ts'

/** The `topics` mapping (the broker's TopicMapper.match): the target of a topic, or undefined when no rule matches. */
export type MapTopic = (topic: string) => Pick<TopicTarget, 'device' | 'bucket'> | undefined

export interface SiteBridgeOptions {
  config: BridgeConfig
  buffer: DataBuffer
  mapTopic: MapTopic
  log: Logger
  /** Delay between connection attempts (default 1 s; MQTT.js retries at a fixed period, forever). */
  reconnectPeriodMs?: number
  /** Longest wait for CONNACK (default 10 s). */
  connectTimeoutMs?: number
  /** MQTT keep-alive towards the site broker, seconds (default 30). */
  keepAliveSec?: number
}

/** Bridge figures, for DESCRIBE and /metrics. */
export interface BridgeStats {
  /** Connected and subscribed. */
  connected: boolean
  /** PUBLISH packets received (a QoS 2 resend of a message held already is not counted twice). */
  received: number
  /** Appended to the buffer. */
  appended: number
  /** Topic not mapped: ignored. */
  unmapped: number
  /** Refused by the buffer as invalid (too large): acknowledged and dropped. */
  invalid: number
  /** Waiting, unacknowledged, for room in a full buffer (reject-new). */
  held: number
  /** Connection, subscription and append errors. */
  errors: number
  /** Connections made (the first, then every reconnection). */
  connects: number
}

/** QoS 0 appends in flight above which reading from the broker waits (TCP backpressure to the broker). */
export const MAX_PENDING_QOS0 = 1000

/**
 * Events: `connected` (sessionPresent) once subscribed, `disconnected` when a connection is lost, `held` (topic)
 * when a message waits unacknowledged for room in a full buffer.
 */
export class SiteBridge extends EventEmitter {
  readonly clientId: string
  readonly #opts: SiteBridgeOptions
  readonly #buffer: DataBuffer
  readonly #log: Logger
  #client?: MqttClient
  #stopped = false
  #connected = false
  /** Bumped at every connect and close: an append that finishes in another generation is not acknowledged. */
  #generation = 0
  /** The filters were granted once on this clientId: a kept session (sessionPresent) still has them. */
  #subscribed = false
  #pendingQos0 = 0
  readonly #waitingQos0: Array<() => void> = []
  /** Held messages waiting for room; woken by `forwarded`, a lost connection and stop. */
  readonly #waitingRoom = new Set<() => void>()
  readonly #stats = { received: 0, appended: 0, unmapped: 0, invalid: 0, held: 0, errors: 0, connects: 0 }

  constructor(opts: SiteBridgeOptions) {
    super()
    this.#opts = opts
    this.#buffer = opts.buffer
    this.#log = opts.log
    this.clientId = opts.config.clientId ?? `tether-bridge-${randomBytes(4).toString('hex')}`
  }

  /** Connects in the background and keeps reconnecting until stopped; returns at once. */
  start(): void {
    if (this.#client) return
    const { config } = this.#opts
    if (config.clientId === undefined) {
      this.#log.warn(
        { url: this.#url() },
        'bridge: no clientId configured, so the site broker keeps no session: messages published while the bridge is disconnected are not delivered to it later',
      )
    }
    const client = connect(config.url, this.#clientOptions())
    this.#client = client
    // MQTT.js's documented hook: the PUBACK (QoS 1) is sent when `done` is called.
    client.handleMessage = (packet, done) => this.#onMessage(packet, done)
    let lastError = ''
    client.on('error', (err) => {
      this.#stats.errors++
      if (err.message === lastError) return // every retry repeats it: log each distinct error once
      lastError = err.message
      this.#log.warn({ url: this.#url(), err: err.message }, 'bridge: site broker error')
    })
    client.on('connect', (connack) => {
      lastError = ''
      this.#generation++
      this.#stats.connects++
      void this.#onConnect(client, connack)
    })
    client.on('close', () => {
      this.#generation++
      this.#wakeHeld()
      if (!this.#connected) return
      this.#connected = false
      if (!this.#stopped)
        this.#log.warn({ url: this.#url() }, 'bridge: site broker connection lost; reconnecting')
      this.emit('disconnected')
    })
  }

  /** Disconnects; messages not yet acknowledged stay with the broker (its kept session resends them). */
  async stop(): Promise<void> {
    this.#stopped = true
    this.#generation++
    this.#wakeHeld()
    const client = this.#client
    if (!client) return
    await client.endAsync(true)
    this.#connected = false
    for (const resume of this.#waitingQos0.splice(0)) resume()
  }

  /** Current figures. */
  stats(): BridgeStats {
    return { connected: this.#connected, ...this.#stats }
  }

  #clientOptions(): IClientOptions {
    const { config } = this.#opts
    return {
      clientId: this.clientId,
      username: config.username,
      password: config.password,
      ca: config.ca === undefined ? undefined : readFileSync(config.ca),
      rejectUnauthorized: config.rejectUnauthorized,
      // A kept session is what makes the broker hold our unacknowledged messages across reconnections.
      clean: config.clientId === undefined,
      keepalive: this.#opts.keepAliveSec ?? 30,
      reconnectPeriod: this.#opts.reconnectPeriodMs ?? 1000,
      connectTimeout: this.#opts.connectTimeoutMs ?? 10_000,
      // Credentials may be fixed on the broker while we wait: keep trying.
      reconnectOnConnackError: true,
      // Subscriptions are made in #onConnect, where a refused filter (SUBACK 0x80) is seen and reported.
      resubscribe: false,
      incomingStore: new AppendingIncomingStore((packet) => this.#takeAcked(packet)),
    }
  }

  async #onConnect(client: MqttClient, connack: IConnackPacket): Promise<void> {
    if (this.#stopped) return
    const generation = this.#generation
    this.#log.info({ url: this.#url(), sessionPresent: connack.sessionPresent }, 'bridge: connected')
    if (!this.#subscribed || !connack.sessionPresent) {
      const filters = Object.fromEntries(
        this.#opts.config.subscriptions.map((s) => [s.filter, { qos: s.qos }]),
      )
      try {
        const granted = await client.subscribeAsync(filters)
        const refused = granted.filter((g) => g.qos === 128).map((g) => g.topic)
        if (refused.length > 0) {
          this.#stats.errors++
          this.#log.warn({ url: this.#url(), refused }, 'bridge: the site broker refused some subscriptions')
        }
        this.#subscribed = true
      } catch (err) {
        this.#stats.errors++
        this.#log.warn({ url: this.#url(), err: (err as Error).message }, 'bridge: subscribe failed')
        return
      }
    }
    if (this.#stopped || generation !== this.#generation || !client.connected) return
    this.#connected = true
    this.emit('connected', connack.sessionPresent)
  }

  /** One message from the broker (QoS 2 ones were appended at PUBREC already); see the file comment. */
  #onMessage(packet: IPublishPacket, done: (err?: Error) => void): void {
    if (packet.qos === 2) return done()
    if (packet.qos === 1) {
      void this.#takeAcked(packet).then((ack) => done(ack ? undefined : new Error('not stored')))
      return
    }
    this.#pendingQos0++
    void this.#take(packet, false).finally(() => {
      this.#pendingQos0--
      while (this.#pendingQos0 < MAX_PENDING_QOS0 && this.#waitingQos0.length > 0)
        this.#waitingQos0.shift()!()
    })
    if (this.#pendingQos0 < MAX_PENDING_QOS0) done()
    else this.#waitingQos0.push(() => done())
  }

  /** Appends a QoS ≥ 1 message; whether to acknowledge it (false: connection lost or stopping meanwhile). */
  async #takeAcked(packet: IPublishPacket): Promise<boolean> {
    const generation = this.#generation
    const outcome = await this.#take(packet, true)
    return outcome !== 'retry' && generation === this.#generation && !this.#stopped
  }

  /**
   * Appends one message if its topic is mapped. 'done': stored, or ignored for good (unmapped, invalid, or a
   * QoS 0 message refused by a full buffer: counted in the buffer's `rejected`); 'retry': not stored, the broker
   * must send it again. `hold`: wait for room when the buffer is full (QoS ≥ 1).
   */
  async #take(packet: IPublishPacket, hold: boolean): Promise<'done' | 'retry'> {
    this.#stats.received++
    const target = this.#opts.mapTopic(packet.topic)
    if (!target) {
      this.#stats.unmapped++
      return 'done'
    }
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
    const record: RecordInput = {
      source: 'bridge',
      device: target.device,
      ...(target.bucket === undefined ? {} : { bucket: target.bucket }),
      topic: packet.topic,
      payload,
    }
    const generation = this.#generation
    for (;;) {
      const forwardedBefore = this.#buffer.stats().forwarded
      try {
        await this.#buffer.append(record)
        this.#stats.appended++
        return 'done'
      } catch (err) {
        const code = (err as BufferError).code
        if (code === 'TETHER_ERR_BUFFER_RECORD_INVALID') {
          this.#stats.invalid++
          this.#log.warn(
            { topic: packet.topic, err: (err as Error).message },
            'bridge: message cannot be buffered (acknowledged and dropped)',
          )
          return 'done'
        }
        if (code === 'TETHER_ERR_BUFFER_FULL' && !hold) return 'done'
        if (code !== 'TETHER_ERR_BUFFER_FULL' || this.#stopped || generation !== this.#generation) {
          if (code !== 'TETHER_ERR_BUFFER_CLOSED') this.#stats.errors++
          return 'retry'
        }
      }
      // Full under reject-new: hold the acknowledgement until the forwarder frees room (or we stop/disconnect).
      // Room freed while the append was being refused shows in the counter: then try again at once.
      if (this.#buffer.stats().forwarded !== forwardedBefore) continue
      this.#stats.held++
      this.emit('held', packet.topic)
      await this.#roomFreed()
      this.#stats.held--
      if (this.#stopped || generation !== this.#generation) return 'retry'
    }
  }

  /** Resolves at the buffer's next `forwarded` event, or when the connection is lost or the bridge stops. */
  #roomFreed(): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        this.#buffer.off('forwarded', wake)
        this.#waitingRoom.delete(wake)
        resolve()
      }
      this.#buffer.on('forwarded', wake)
      this.#waitingRoom.add(wake)
    })
  }

  #wakeHeld(): void {
    for (const wake of [...this.#waitingRoom]) wake()
  }

  /** The broker URL without credentials, for logs. */
  #url(): string {
    try {
      const url = new URL(this.#opts.config.url)
      url.username = ''
      url.password = ''
      return url.toString()
    } catch {
      return '(invalid url)'
    }
  }
}
