/**
 * The MQTT integration: a client of an external broker that subscribes to the topic filters and turns every
 * message into an uplink; downlinks are published to a topic from the converter's metadata or `downlinkTopic`.
 *
 * Acknowledgement (DESIGN choice, see `#onMessage`): a QoS 1/2 message is acknowledged only once its uplink
 * settled, through mqtt.js's `handleMessage` hook. A relay that dies mid-uplink leaves the message unacknowledged,
 * and a broker keeping the session (a configured clientId, see `clean` below) delivers it again.
 */
import { randomBytes } from 'node:crypto'
import { connect, type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt'
import type { MqttSettings } from '../schemas.ts'
import {
  downlinkBytes,
  type EncodedDownlink,
  type Transport,
  type TransportContext,
  type TransportStatus,
  type UplinkMetadata,
  type UplinkOutcome,
} from '../transport.ts'

/** mqtt.js retries at a fixed period; a broker that refuses us is not hammered every second. */
export const DEFAULT_RECONNECT_PERIOD_MS = 5000
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000
export const DEFAULT_DELIVER_TIMEOUT_MS = 10_000
/**
 * Longest an acknowledgement waits for its uplink. mqtt.js handles incoming packets one at a time, so a held
 * acknowledgement also holds PINGRESP; past 1.5 × keepalive (60 s) the client would drop the connection.
 */
export const ACK_WAIT_MS = 30_000
/** QoS 0 uplinks in flight above which reading from the broker waits (TCP backpressure to the broker). */
export const MAX_PENDING_QOS0_UPLINKS = 100

export interface MqttTransportOptions {
  /** Part of the generated clientId `tether-<integrationId>-<random>`. */
  integrationId: string
  /** Added to each uplink's metadata as `integrationName`. */
  integrationName?: string
  reconnectPeriodMs?: number
  connectTimeoutMs?: number
  deliverTimeoutMs?: number
}

export class MqttTransport implements Transport {
  readonly #settings: MqttSettings
  readonly #ctx: TransportContext
  readonly #opts: MqttTransportOptions | undefined
  readonly clientId: string
  #client: MqttClient | undefined
  #state: TransportStatus['state'] = 'starting'
  #error: string | undefined
  #received = 0
  #sent = 0
  /** The filters were granted once on this client: a kept session (sessionPresent) still has them. */
  #subscribed = false
  #pendingQos0 = 0
  /** Packet-loop callbacks held until the QoS 0 uplinks in flight drop below the cap. */
  readonly #waiting: Array<() => void> = []

  constructor(settings: MqttSettings, ctx: TransportContext, opts?: MqttTransportOptions) {
    this.#settings = settings
    this.#ctx = ctx
    this.#opts = opts
    const prefix = opts ? `tether-${opts.integrationId}` : 'tether'
    this.clientId = settings.clientId ?? `${prefix}-${randomBytes(4).toString('hex')}`
  }

  /** Connects (and keeps reconnecting); resolves once the first attempt connected and subscribed, or failed. */
  start(): Promise<void> {
    if (this.#client) return Promise.resolve()
    let client: MqttClient
    try {
      client = connect(this.#settings.url, this.#clientOptions())
    } catch (err) {
      // A URL mqtt.js cannot use throws here: report it like any failed start.
      this.#setError((err as Error).message)
      return Promise.reject(err)
    }
    this.#client = client
    // mqtt.js's documented backpressure hook: the acknowledgement is sent when `done` is called.
    client.handleMessage = (packet, done) => this.#onMessage(packet, done)
    let lastError = ''
    client.on('error', (err) => {
      this.#setError(err.message)
      if (err.message === lastError) return // reconnects repeat the same error: log each distinct one once
      lastError = err.message
      this.#ctx.log.warn({ url: this.#url(), err: err.message }, 'mqtt integration: broker error')
    })
    client.on('close', () => {
      if (this.#state === 'running') {
        this.#ctx.log.warn({ url: this.#url() }, 'mqtt integration: connection lost; reconnecting')
        this.#setError('connection to the broker lost; reconnecting')
      } else if (this.#state === 'starting') {
        this.#setError('connection closed before the broker accepted it') // e.g. no CONNACK in time
      }
    })
    return new Promise<void>((resolve) => {
      const settle = () => {
        client.off('close', settle)
        client.off('error', settle)
        resolve()
      }
      client.on('close', settle)
      client.on('error', settle)
      client.on('connect', (connack) => {
        lastError = ''
        this.#onConnect(client, connack).finally(settle)
      })
    })
  }

  /** Disconnects; uplinks in flight are not acknowledged (a kept session redelivers them). */
  async stop(): Promise<void> {
    this.#state = 'stopped'
    this.#error = undefined
    const client = this.#client
    if (!client) return
    await client.endAsync(true)
    for (const done of this.#waiting.splice(0)) done()
  }

  /** Publishes the downlink to metadata.topic, else downlinkTopic with {{device}}; resolves once acknowledged. */
  async deliver(device: string, downlink: EncodedDownlink): Promise<void> {
    const client = this.#client
    // No offline queue here: the caller decides about retries, and a late duplicate is avoided.
    if (!client?.connected) throw new Error(`not connected to ${this.#url()}`)
    const topic = downlinkTopic(device, downlink.metadata, this.#settings.downlinkTopic)
    const { qos, retain } = publishOptions(downlink.metadata)
    const timeoutMs = this.#opts?.deliverTimeoutMs ?? DEFAULT_DELIVER_TIMEOUT_MS
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      // The message may still reach the broker later (at least once, as MQTT QoS 1 is).
      timer = setTimeout(
        () => reject(new Error(`publish not acknowledged within ${timeoutMs} ms`)),
        timeoutMs,
      )
    })
    try {
      await Promise.race([client.publishAsync(topic, downlinkBytes(downlink), { qos, retain }), timeout])
      this.#sent++
    } finally {
      clearTimeout(timer)
    }
  }

  /** State (error while reconnecting, with the reason), broker URL without credentials, counters. */
  status(): TransportStatus {
    return {
      state: this.#state,
      ...(this.#error !== undefined && { error: this.#error }),
      url: this.#url(),
      connections: this.#client?.connected ? 1 : 0,
      received: this.#received,
      sent: this.#sent,
    }
  }

  #clientOptions(): IClientOptions {
    const s = this.#settings
    return {
      clientId: this.clientId,
      username: s.username,
      password: s.password,
      ca: s.ca,
      rejectUnauthorized: s.rejectUnauthorized ?? true,
      // A generated clientId is a new identity each run: a kept session would be orphaned on the broker. A
      // configured one keeps its session, so the broker queues messages while we are away and redelivers
      // those we did not acknowledge.
      clean: s.clientId === undefined,
      reconnectPeriod: this.#opts?.reconnectPeriodMs ?? DEFAULT_RECONNECT_PERIOD_MS,
      connectTimeout: this.#opts?.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      // Wrong credentials may be fixed on the broker: keep trying, the status shows the refusal meanwhile.
      reconnectOnConnackError: true,
      // Subscriptions are made in #onConnect, where a refused filter (SUBACK 0x80) is seen and reported.
      resubscribe: false,
      queueQoSZero: false,
    }
  }

  async #onConnect(client: MqttClient, connack: IConnackPacket): Promise<void> {
    if (this.#state === 'stopped') return
    this.#ctx.log.info(
      { url: this.#url(), sessionPresent: connack.sessionPresent },
      'mqtt integration: connected',
    )
    if (!this.#subscribed || !connack.sessionPresent) {
      const filters = Object.fromEntries(
        this.#settings.topicFilters.map((f) => [f.filter, { qos: f.qos ?? 0 }]),
      )
      try {
        const granted = await client.subscribeAsync(filters)
        const refused = granted.filter((g) => g.qos === 128).map((g) => g.topic)
        if (refused.length > 0) {
          const message = `broker refused the subscription to ${refused.join(', ')}`
          this.#ctx.log.warn({ url: this.#url(), refused }, `mqtt integration: ${message}`)
          return this.#setError(message)
        }
        this.#subscribed = true
      } catch (err) {
        return this.#setError(`subscribe failed: ${(err as Error).message}`)
      }
    }
    // Re-read after the await: stop() may have run meanwhile (TS keeps the narrowing from the first check).
    if ((this.#state as TransportStatus['state']) === 'stopped' || !client.connected) return
    this.#state = 'running'
    this.#error = undefined
  }

  /**
   * One message from the broker. mqtt.js calls this one packet at a time and sends PUBACK (QoS 1) or PUBCOMP
   * (QoS 2) when `done` is called, so QoS ≥ 1 messages run one uplink at a time and are acknowledged after it.
   * A failed uplink (converter error, already logged) is acknowledged too: redelivery would fail again forever.
   * QoS 0 messages are not waited for, up to MAX_PENDING_QOS0_UPLINKS in flight.
   */
  #onMessage(packet: IPublishPacket, done: (err?: Error) => void): void {
    this.#received++
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
    const metadata: UplinkMetadata = { topic: packet.topic }
    if (this.#opts?.integrationName !== undefined) metadata.integrationName = this.#opts.integrationName
    const qos0 = packet.qos === 0
    if (qos0) this.#pendingQos0++
    const settled = new Promise<UplinkOutcome>((resolve) => resolve(this.#ctx.uplink({ payload, metadata })))
      .then(
        () => {},
        (err: Error) =>
          this.#ctx.log.warn({ topic: packet.topic, err: err.message }, 'mqtt integration: uplink failed'),
      )
      .finally(() => {
        if (!qos0) return
        this.#pendingQos0--
        while (this.#pendingQos0 <= MAX_PENDING_QOS0_UPLINKS && this.#waiting.length > 0)
          this.#waiting.shift()!()
      })
    if (qos0) {
      if (this.#pendingQos0 > MAX_PENDING_QOS0_UPLINKS) this.#waiting.push(() => done())
      else done()
      return
    }
    let acked = false
    const ack = () => {
      if (acked) return
      acked = true
      clearTimeout(timer)
      done()
    }
    const timer = setTimeout(() => {
      this.#ctx.log.warn(
        { topic: packet.topic, waitedMs: ACK_WAIT_MS },
        'mqtt integration: uplink still running; message acknowledged before it finished',
      )
      ack()
    }, ACK_WAIT_MS)
    timer.unref() // a stopped transport must not keep the process alive for it
    settled.then(ack)
  }

  #setError(message: string): void {
    if (this.#state === 'stopped') return
    this.#state = 'error'
    this.#error = message
  }

  /** The broker URL without user info: status and logs must not show credentials. */
  #url(): string {
    try {
      const url = new URL(this.#settings.url)
      url.username = ''
      url.password = ''
      return url.toString()
    } catch {
      return this.#settings.url
    }
  }
}

/** The topic of a downlink: metadata.topic, else downlinkTopic with {{device}}; throws when none is usable. */
export function downlinkTopic(device: string, metadata: Record<string, unknown>, template?: string): string {
  const topic =
    typeof metadata.topic === 'string' && metadata.topic.length > 0
      ? metadata.topic
      : template?.replace(/\{\{\s*device\s*\}\}/g, device)
  if (topic === undefined) {
    throw new Error(
      'no downlink topic: the converter set no metadata.topic and the integration no downlinkTopic',
    )
  }
  // [MQTT-3.3.2-2]: a PUBLISH topic holds no wildcards; an empty or NUL-bearing topic is a protocol error too.
  if (topic.length === 0 || /[#+]/.test(topic) || topic.includes('\u0000'))
    throw new Error(`not a topic to publish to: "${topic}"`)
  return topic
}

/** qos (0, 1, 2; default 1) and retain (default false) from the converter's metadata, as values or strings. */
export function publishOptions(metadata: Record<string, unknown>): { qos: 0 | 1 | 2; retain: boolean } {
  // ThingsBoard converters often put metadata values as strings: "1" and "true" count.
  const q =
    typeof metadata.qos === 'string' && /^[012]$/.test(metadata.qos) ? Number(metadata.qos) : metadata.qos
  const qos = q === 0 || q === 1 || q === 2 ? q : 1
  const r = metadata.retain
  return { qos, retain: r === true || r === 'true' }
}
