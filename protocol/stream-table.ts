/**
 * A session's multiplexed streams: the open ones by id, inbound START_STREAMs still being answered, the
 * per-stream frames (STREAM_DATA, STREAM_CREDIT, STOP_STREAM) and the streams waiting for the channel to drain.
 */
import { Compile } from 'typebox/compile'
import { protocolError } from './errors.ts'
import {
  MAX_WINDOW_BYTES,
  type Message,
  MessageType,
  StartStreamParams,
  StopStreamParams,
  WireErrorCode,
} from './messages.ts'
import type { InboundStreamRequest, Role } from './session-types.ts'
import { type StreamHost, TunnelStream } from './tunnel-stream.ts'

const checkStartStream = Compile(StartStreamParams)
const checkStopStream = Compile(StopStreamParams)

/** What the table needs from its session. */
export interface StreamLink {
  /** Sends a control message (OK, ERROR, STREAM_CREDIT, STOP_STREAM). */
  send(msg: Message): void
  /** Sends STREAM_DATA. */
  sendData(id: number, data: Uint8Array): void
  /** False while the channel is congested. */
  writable(): boolean
  /** Largest STREAM_DATA payload the peer's frame cap admits. */
  maxDataBytes(): number
  isClosed(): boolean
}

export class StreamTable {
  readonly #streams = new Map<number, TunnelStream>()
  readonly #reserved = new Set<number>()
  readonly #drainWaiters: Array<() => void> = []
  readonly #host: StreamHost

  /** `windowBytes`/`maxWindowBytes`: the receive window this side grants each stream, and how far it grows. */
  constructor(
    link: StreamLink,
    readonly windowBytes: number,
    readonly maxWindowBytes: number,
  ) {
    this.#host = {
      sendData: (id, data) => link.sendData(id, data),
      sendCredit: (id, bytes) => link.send({ type: MessageType.STREAM_CREDIT, streamId: id, payload: bytes }),
      sendStop: (id, params) => link.send({ type: MessageType.STOP_STREAM, streamId: id, params }),
      writable: () => link.writable(),
      maxDataBytes: () => link.maxDataBytes(),
      whenWritable: (cb) => {
        this.#drainWaiters.push(cb)
      },
      streamClosed: (id) => {
        this.#streams.delete(id)
      },
    }
    this.#link = link
  }

  readonly #link: StreamLink

  get size(): number {
    return this.#streams.size
  }

  /** True when `id` is open or being answered. */
  has(id: number): boolean {
    return this.#streams.has(id) || this.#reserved.has(id)
  }

  /** Registers an open stream; `sendWindow` is the credit the peer granted. */
  add(id: number, sendWindow: number, resource: string, datagram: boolean): TunnelStream {
    const stream = new TunnelStream(
      id,
      this.#host,
      sendWindow,
      this.windowBytes,
      resource,
      datagram,
      this.maxWindowBytes,
    )
    this.#streams.set(id, stream)
    return stream
  }

  /** START_STREAM from the peer: checked, then handed to `handler`, which accepts or rejects it. */
  onStart(msg: Message, role: Role, handler?: (req: InboundStreamRequest) => void): void {
    const id = msg.streamId
    if (id === 0 || id % 2 === (role === 'relay' ? 0 : 1)) {
      throw protocolError('TETHER_ERR_PROTOCOL', `stream id ${id} has the wrong parity for the peer`)
    }
    if (this.has(id)) throw protocolError('TETHER_ERR_PROTOCOL', `stream id ${id} is already in use`)
    const replyError = (code: number, message: string) =>
      this.#link.send({ type: MessageType.ERROR, streamId: id, params: { code, message } })
    if (!checkStartStream.Check(msg.params)) {
      return replyError(WireErrorCode.BAD_ENCODING, 'START_STREAM params are malformed')
    }
    if (!handler) return replyError(WireErrorCode.UNKNOWN_RESOURCE, 'this side accepts no streams')
    const params = msg.params as StartStreamParams
    const resource = msg.resource ?? ''
    this.#reserved.add(id)
    let answered = false
    const answer = () => {
      if (answered) throw new Error(`stream ${id} was already answered`)
      answered = true
      this.#reserved.delete(id)
    }
    handler({
      id,
      resource,
      params,
      accept: () => {
        answer()
        if (this.#link.isClosed()) throw protocolError('TETHER_ERR_LINK_CLOSED', 'before the stream opened')
        const stream = this.add(id, params.window, resource, params.protocol === 'udp')
        this.#link.send({ type: MessageType.OK, streamId: id, params: { window: this.windowBytes } })
        return stream
      },
      reject: (code, message) => {
        answer()
        replyError(code, message)
      },
    })
  }

  onStop(msg: Message): void {
    const stream = this.#streams.get(msg.streamId)
    if (!stream) return // already closed on this side
    const params = checkStopStream.Check(msg.params ?? {}) ? ((msg.params ?? {}) as StopStreamParams) : {}
    stream.receiveStop(params)
  }

  onData(msg: Message): void {
    if (!(msg.payload instanceof Uint8Array)) {
      throw protocolError('TETHER_ERR_BAD_ENCODING', 'STREAM_DATA payload must be binary')
    }
    this.#streams.get(msg.streamId)?.receiveData(msg.payload)
  }

  onCredit(msg: Message): void {
    const bytes = msg.payload
    if (typeof bytes !== 'number' || !Number.isInteger(bytes) || bytes <= 0 || bytes > MAX_WINDOW_BYTES) {
      throw protocolError('TETHER_ERR_BAD_ENCODING', 'STREAM_CREDIT payload must be a positive byte count')
    }
    this.#streams.get(msg.streamId)?.receiveCredit(bytes)
  }

  /** The channel drained: streams waiting to write go on. */
  flushDrainWaiters(): void {
    for (const cb of this.#drainWaiters.splice(0)) cb()
  }

  /** The link is gone: every stream ends with `reason`. */
  linkLost(reason: string): void {
    for (const stream of [...this.#streams.values()]) stream.linkLost(reason)
    this.#streams.clear()
    this.flushDrainWaiters()
  }
}
