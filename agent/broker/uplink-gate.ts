/**
 * The broker's `authorizePublish` hook, where uplinked messages become durable before they are acknowledged
 * (issue 7: "for QoS 1 the PUBACK is sent only after the message is durably in the agent's LevelDB").
 *
 * aedes calls the hook for every PUBLISH before it answers PUBACK (QoS 1) or PUBREC (QoS 2), and for wills. For a
 * topic a `topics` mapping matches, the message is appended to the store-and-forward buffer and the callback waits
 * for the append to be durable, so the acknowledgement follows the durable write. aedes hands a socket read's
 * packets to the hook one after the other before any append settles, so their appends share one group commit
 * (agent/buffer/write-queue.ts) and keep the client's order in the buffer's seqs.
 *
 * - QoS 0 messages and wills are appended too, best effort: the broker does not wait.
 * - Unmapped topics stay local: the callback is immediate.
 * - A refused append (buffer full under `reject-new`, or a record the buffer cannot take) is never acknowledged.
 *   MQTT 3.1.1 has no negative PUBACK: the server either acknowledges or closes the connection [MQTT-3.3.5-2].
 *   The client's connection is closed gracefully once every append it had in flight has settled: the PUBACKs of
 *   the messages that were stored go out first, then FIN; what the client sends after that is read and discarded
 *   until it closes. The client keeps the refused message (and every later one) and sends it again when it
 *   reconnects, as MQTT clients do with unacknowledged QoS 1/2 messages.
 * - A QoS 2 redelivery (DUP) of a message aedes still holds (before PUBREL) is not appended twice.
 */
import type { Socket } from 'node:net'
import type { Client, PublishPacket } from 'aedes'
import type { Logger } from 'pino'
import type { BufferError } from '../buffer/buffer-errors.ts'
import type { DataBuffer } from '../buffer/data-buffer.ts'
import type { RecordInput } from '../buffer/records.ts'
import { brokerError } from './broker-errors.ts'
import type { BrokerStats } from './broker-stats.ts'
import type { TopicMapper } from './topic-mapping.ts'

/** How long a refused client may take to close after our FIN before its socket is destroyed. */
export const REFUSED_LINGER_MS = 10_000
const SYS_PREFIX = '$SYS/'

export interface UplinkGateOptions {
  mapper: TopicMapper
  buffer: Pick<DataBuffer, 'append'>
  maxPayloadBytes: number
  stats: BrokerStats
  log: Logger
  /** Whether aedes already stores this QoS 2 message (a DUP before PUBREL). */
  holdsQos2: (client: Client, packet: PublishPacket) => Promise<boolean>
}

/** Appends of one connection. */
interface Uplink {
  /** Appends issued and not settled yet. */
  pending: number
  /** Why an append was refused, if one was: nothing more is appended or acknowledged on this connection. */
  refusal?: 'full' | 'invalid'
  closing: boolean
}

type Callback = (error?: Error | null) => void

export class UplinkGate {
  readonly #o: UplinkGateOptions
  readonly #uplinks = new WeakMap<Client, Uplink>()

  constructor(opts: UplinkGateOptions) {
    this.#o = opts
  }

  /** aedes `authorizePublish` (see above). */
  readonly authorize = (client: Client | null, packet: PublishPacket, callback: Callback): void => {
    const { stats, log } = this.#o
    const topic = packet.topic
    // aedes' default hook refuses these; ours replaces it (moscajs/aedes#597).
    if (topic.startsWith(SYS_PREFIX)) return callback(new Error(`${SYS_PREFIX} topics are reserved`))
    // A will is published while its client closes, or with no client for a will left by an earlier run.
    const will = client === null || client.closed
    if (!will) stats.messagesIn++
    const bytes =
      typeof packet.payload === 'string' ? Buffer.byteLength(packet.payload) : packet.payload.length
    if (bytes > this.#o.maxPayloadBytes) {
      stats.oversize++
      const err = brokerError('TETHER_ERR_MQTT_PAYLOAD_TOO_LARGE', bytes, this.#o.maxPayloadBytes)
      log.warn({ clientId: client?.id, topic, bytes, will }, `${err.message}: client disconnected`)
      return callback(err)
    }
    const target = this.#o.mapper.match(topic)
    if (!target) {
      stats.local++
      return callback(null)
    }
    const record: RecordInput = {
      source: 'mqtt',
      device: target.device,
      ...(target.bucket === undefined ? {} : { bucket: target.bucket }),
      topic,
      payload: typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload,
    }
    if (will || packet.qos === 0 || client === null) {
      this.#bestEffort(record, client)
      return callback(null)
    }
    const uplink = this.#uplink(client)
    if (uplink.refusal) {
      // Held, never acknowledged: the connection is closing (see above).
      this.#count(uplink.refusal)
      return
    }
    if (packet.qos === 2 && packet.dup) {
      uplink.pending++
      this.#o.holdsQos2(client, packet).then(
        (held) => {
          uplink.pending--
          if (!held) return this.#hold(client, uplink, record, callback)
          stats.duplicates++
          callback(null)
          this.#settled(client, uplink)
        },
        () => {
          uplink.pending--
          this.#hold(client, uplink, record, callback)
        },
      )
      return
    }
    this.#hold(client, uplink, record, callback)
  }

  #uplink(client: Client): Uplink {
    let uplink = this.#uplinks.get(client)
    if (!uplink) {
      uplink = { pending: 0, closing: false }
      this.#uplinks.set(client, uplink)
    }
    return uplink
  }

  /** Appends, then calls back (acknowledges) once durable; a refusal holds the message and closes the client. */
  #hold(client: Client, uplink: Uplink, record: RecordInput, callback: Callback): void {
    const { stats, log } = this.#o
    uplink.pending++
    this.#o.buffer.append(record).then(
      () => {
        uplink.pending--
        stats.appended++
        callback(null)
        this.#settled(client, uplink)
      },
      (err: BufferError) => {
        uplink.pending--
        const reason = this.#reason(err)
        this.#count(reason)
        if (!uplink.refusal) {
          uplink.refusal = reason
          const refusal = brokerError('TETHER_ERR_MQTT_UPLINK_REFUSED', err.message)
          log.warn({ clientId: client.id, topic: record.topic, code: err.code }, refusal.message)
        }
        this.#settled(client, uplink)
      },
    )
  }

  #bestEffort(record: RecordInput, client: Client | null): void {
    this.#o.buffer.append(record).then(
      () => {
        this.#o.stats.appended++
      },
      (err: BufferError) => {
        this.#count(this.#reason(err))
        this.#o.log.warn(
          { clientId: client?.id, topic: record.topic, code: err.code },
          `QoS 0 message or will not uplinked: ${err.message}`,
        )
      },
    )
  }

  #reason(err: BufferError): 'full' | 'invalid' {
    return err.code === 'TETHER_ERR_BUFFER_FULL' ? 'full' : 'invalid'
  }

  #count(reason: 'full' | 'invalid'): void {
    if (reason === 'full') this.#o.stats.refusedFull++
    else this.#o.stats.invalid++
  }

  /** Closes a refusing client once its last append settled (every PUBACK owed has been written). */
  #settled(client: Client, uplink: Uplink): void {
    if (!uplink.refusal || uplink.pending > 0 || uplink.closing || client.closed) return
    uplink.closing = true
    const conn = client.conn as Socket
    // aedes reads no more packets from this client; read and discard until it closes. Destroying a socket with
    // unread input makes the kernel send RST, which can discard the PUBACKs not yet delivered to the client.
    conn.removeAllListeners('readable')
    conn.on('data', () => {})
    conn.resume()
    conn.end()
    const timer = setTimeout(() => conn.destroy(), REFUSED_LINGER_MS)
    timer.unref()
    conn.once('close', () => clearTimeout(timer))
  }
}
