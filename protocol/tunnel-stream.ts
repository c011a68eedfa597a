/**
 * A multiplexed stream as a Node Duplex. Writes spend send credit and wait for STREAM_CREDIT when it runs
 * out; reads grant credit back as the consumer takes bytes. `end()` sends STOP_STREAM {half}, like a TCP FIN.
 */
import { Duplex } from 'node:stream'
import { ReceiveWindow, SendCredit } from './credit-window.ts'
import type { StopStreamParams } from './messages.ts'

/** Largest STREAM_DATA payload; well under the 1 MiB frame cap. */
export const MAX_DATA_CHUNK_BYTES = 128 * 1024

/** Datagram mode: bytes queued for the peer before senders start dropping (about 40 ms at 200 Mbit/s). */
export const DATAGRAM_QUEUE_BYTES = 1024 * 1024

/** What a stream needs from its session. */
export interface StreamHost {
  sendData(streamId: number, data: Uint8Array): void
  sendCredit(streamId: number, bytes: number): void
  sendStop(streamId: number, params: StopStreamParams): void
  /** Largest STREAM_DATA payload the peer's frame cap admits. */
  maxDataBytes(): number
  /** False while the channel is congested; `whenWritable` then calls back on drain. */
  writable(): boolean
  whenWritable(cb: () => void): void
  streamClosed(streamId: number): void
}

/** The remote side closed the stream abnormally. */
export class StreamAbortedError extends Error {
  readonly code = 'TETHER_ERR_STREAM_ABORTED'
  constructor(message: string) {
    super(message)
    this.name = 'StreamAbortedError'
  }
}

export class TunnelStream extends Duplex {
  readonly #host: StreamHost
  readonly #credit: SendCredit
  readonly #window: ReceiveWindow
  #pending?: { data: Uint8Array; offset: number; cb: (err?: Error | null) => void }
  #waitingDrain = false
  #localEnded = false
  #remoteEnded = false
  #remoteClosed = false
  readonly #sendWindowBytes: number
  /** Datagram mode: datagrams too large for the peer's window or frame cap. */
  droppedDatagrams = 0
  /** Bytes received from and sent to the peer, for statistics. */
  bytesReceived = 0
  bytesSent = 0
  /** `performance.now()` of the last data either way, for idle timeouts. */
  lastActivity = performance.now()

  /**
   * @param id stream id
   * @param sendWindowBytes credit the peer granted (its `window`)
   * @param recvWindowBytes credit this side grants (our `window`)
   */
  constructor(
    readonly id: number,
    host: StreamHost,
    sendWindowBytes: number,
    recvWindowBytes: number,
    readonly resource = '',
    /** UDP: every write is one datagram, sent as one STREAM_DATA and never split across credit grants. */
    readonly datagram = false,
    /** How far the receive window may grow for a consumer that keeps up (see ReceiveWindow.grow). */
    maxRecvWindowBytes = recvWindowBytes,
  ) {
    super({
      allowHalfOpen: true,
      readableHighWaterMark: 64 * 1024,
      // UDP senders drop rather than wait when this fills: hold a few ms of a fast flow across a credit round trip.
      writableHighWaterMark: datagram ? DATAGRAM_QUEUE_BYTES : 64 * 1024,
    })
    this.#host = host
    this.#credit = new SendCredit(sendWindowBytes)
    this.#sendWindowBytes = sendWindowBytes
    this.#window = new ReceiveWindow(recvWindowBytes, maxRecvWindowBytes)
  }

  /** The receive window now granted to the peer (grows for a consumer that keeps up). */
  get receiveWindowBytes(): number {
    return this.#window.currentWindow
  }

  /** Session → stream: STREAM_DATA arrived. */
  receiveData(data: Uint8Array): void {
    if (this.destroyed || this.#remoteEnded) return
    if (!this.#window.receive(data.length, this.datagram ? data.length : 1)) {
      this.destroy(new StreamAbortedError('peer sent more than its credit'))
      return
    }
    this.bytesReceived += data.length
    this.lastActivity = performance.now()
    this.push(data)
    const extra = this.#window.grow(this.readableLength)
    if (extra > 0) this.#host.sendCredit(this.id, extra)
  }

  /** Session → stream: STREAM_CREDIT arrived. */
  receiveCredit(bytes: number): void {
    this.#credit.grant(bytes)
    this.#pump()
  }

  /** Session → stream: STOP_STREAM arrived. */
  receiveStop(params: StopStreamParams): void {
    if (params.half) {
      if (this.#remoteEnded) return
      this.#remoteEnded = true
      this.push(null)
      return
    }
    this.#remoteClosed = true
    this.destroy(params.error ? new StreamAbortedError(params.error) : undefined)
  }

  /** Session → stream: the link went away. */
  linkLost(reason: string): void {
    this.#remoteClosed = true
    this.destroy(new StreamAbortedError(`link lost: ${reason}`))
  }

  override _read(): void {
    this.#grant()
  }

  // Node calls _read only while it wants more data; a reader that paused with everything buffered and reads
  // later would never trigger it again, so credit is also granted after every read.
  override read(size?: number): unknown {
    const chunk = super.read(size)
    this.#grant()
    return chunk
  }

  #grant(): void {
    if (this.destroyed || this.#remoteEnded) return
    const grant = this.#window.grantFor(this.readableLength)
    if (grant > 0) this.#host.sendCredit(this.id, grant)
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#pending = { data: chunk, offset: 0, cb }
    this.#pump()
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.#localEnded = true
    this.#host.sendStop(this.id, { half: true })
    cb()
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const graceful = this.#localEnded && this.#remoteEnded && !err
    if (!this.#remoteClosed && !graceful) {
      this.#host.sendStop(this.id, err ? { error: err.message } : {})
    }
    const pending = this.#pending
    this.#pending = undefined
    this.#host.streamClosed(this.id)
    pending?.cb(err ?? new Error('stream destroyed'))
    cb(err)
  }

  /** Sends as much of the pending write as credit and the channel allow. */
  #pump(): void {
    const p = this.#pending
    if (!p || this.destroyed) return
    while (p.offset < p.data.length) {
      if (!this.#host.writable()) {
        if (!this.#waitingDrain) {
          this.#waitingDrain = true
          this.#host.whenWritable(() => {
            this.#waitingDrain = false
            this.#pump()
          })
        }
        return
      }
      const wanted = Math.min(p.data.length - p.offset, MAX_DATA_CHUNK_BYTES, this.#host.maxDataBytes())
      if (this.datagram) {
        // A datagram is never split; one that can never fit the window or a frame is dropped, as UDP would.
        if (p.data.length > this.#sendWindowBytes || p.data.length > this.#host.maxDataBytes()) {
          this.#pending = undefined
          this.droppedDatagrams++
          p.cb()
          return
        }
        if (this.#credit.available < p.data.length) return // resumed by receiveCredit
      }
      const n = this.#credit.take(wanted)
      if (n === 0) return // resumed by receiveCredit
      this.#host.sendData(this.id, p.data.subarray(p.offset, p.offset + n))
      p.offset += n
      this.bytesSent += n
      this.lastActivity = performance.now()
    }
    this.#pending = undefined
    p.cb()
  }
}
