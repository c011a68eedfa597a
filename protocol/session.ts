/**
 * One IoTMP link over a MessageChannel: CONNECT handshake, frame dispatch, RUN/DESCRIBE, and lifecycle.
 * Request correlation (pending-requests.ts), the keep-alive deadline (dead-link-timer.ts) and the streams
 * (stream-table.ts) are its parts. Both the relay and the agent run this class; `role` decides stream id
 * parity (relay even, agent odd) and who answers CONNECT.
 */
import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import { Compile } from 'typebox/compile'
import type { MessageChannel } from './channel.ts'
import { decodeFrame } from './codec/decode.ts'
import { encodeMessage, encodeStreamData, encodeStreamDataHeader } from './codec/encode.ts'
import { DeadLinkTimer } from './dead-link-timer.ts'
import { protocolError, RemoteError, TetherProtocolError } from './errors.ts'
import {
  ConnectOkParams,
  ConnectParams,
  ConnectPayload,
  DEFAULT_KEEP_ALIVE_SEC,
  DEFAULT_MAX_WINDOW_BYTES,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_WINDOW_BYTES,
  DIAL_TIMEOUT_MS,
  ErrorParams,
  MAX_FRAME_BYTES,
  type Message,
  MessageType,
  messageTypeName,
  PROTOCOL_VERSION,
  StartStreamOkParams,
  type StartStreamParams,
  WireErrorCode,
} from './messages.ts'
import { PendingRequests } from './pending-requests.ts'
import {
  CHANNEL_HIGH_WATER_BYTES,
  CloseCode,
  type CloseInfo,
  CONNECT_WAIT_MS,
  type ConnectRequest,
  type Role,
  type SessionOptions,
} from './session-types.ts'
import { StreamTable } from './stream-table.ts'
import type { TunnelStream } from './tunnel-stream.ts'

export * from './session-types.ts'

const checkConnectParams = Compile(ConnectParams)
const checkConnectPayload = Compile(ConnectPayload)
const checkConnectOk = Compile(ConnectOkParams)
const checkStartStreamOk = Compile(StartStreamOkParams)
const checkError = Compile(ErrorParams)

type State = 'connecting' | 'open' | 'closed'

/** Events: `open` (ConnectRequest on the relay, ConnectOkParams on the agent), `close` (CloseInfo). */
export class Session extends EventEmitter {
  readonly role: Role
  readonly log: Logger
  rxBytes = 0
  txBytes = 0
  /** Frames each way, for the device's daily message counts. */
  rxFrames = 0
  txFrames = 0
  connectedAt?: number
  /** Set on the relay once CONNECT succeeded. */
  peer?: ConnectRequest

  readonly #channel: MessageChannel
  readonly #opts: SessionOptions
  readonly #maxFrame: number
  #state: State = 'connecting'
  #nextId: number
  readonly #pending = new PendingRequests()
  readonly #streams: StreamTable
  #keepAliveSec = DEFAULT_KEEP_ALIVE_SEC
  readonly #deadLink = new DeadLinkTimer((reason) => this.#linkDead(reason))
  #pingTimer?: NodeJS.Timeout
  #connectTimer?: NodeJS.Timeout
  #peerMaxFrame = MAX_FRAME_BYTES
  #closeInfo?: CloseInfo
  #authenticating = false

  constructor(channel: MessageChannel, opts: SessionOptions) {
    super()
    this.role = opts.role
    this.log = opts.logger
    this.#channel = channel
    this.#opts = opts
    this.#maxFrame = opts.maxFrameBytes ?? MAX_FRAME_BYTES
    const windowBytes = opts.windowBytes ?? DEFAULT_WINDOW_BYTES
    const maxWindowBytes = Math.max(windowBytes, opts.maxWindowBytes ?? DEFAULT_MAX_WINDOW_BYTES)
    this.#streams = new StreamTable(
      {
        send: (msg) => this.#send(msg),
        sendData: (id, data) => this.#sendData(id, data),
        writable: () => this.#channel.bufferedAmount < CHANNEL_HIGH_WATER_BYTES,
        // STREAM_DATA header is at most 12 bytes: fixarray, type, uint32 id, nil, bin32 length.
        maxDataBytes: () => this.#peerMaxFrame - 16,
        isClosed: () => this.#state === 'closed',
      },
      windowBytes,
      maxWindowBytes,
    )
    this.#nextId = opts.role === 'relay' ? 2 : 1
    channel.on('frame', (frame: Buffer) => this.#onFrame(frame))
    channel.on('drain', () => this.#streams.flushDrainWaiters())
    channel.on('close', (code: number, reason: string) =>
      this.#teardown({ reason: reason || `channel closed (${code})`, by: 'remote' }),
    )
    if (opts.role === 'relay') {
      this.#connectTimer = setTimeout(
        () => this.fail(protocolError('TETHER_ERR_PROTOCOL', 'no CONNECT within 10 s')),
        CONNECT_WAIT_MS,
      )
    }
  }

  get isOpen(): boolean {
    return this.#state === 'open'
  }

  get keepAliveSec(): number {
    return this.#keepAliveSec
  }

  get closeInfo(): CloseInfo | undefined {
    return this.#closeInfo
  }

  /** Open streams, for stats and tests. */
  get streamCount(): number {
    return this.#streams.size
  }

  /** Agent: sends CONNECT and resolves with the relay's OK params, or rejects with its ERROR. */
  async connect(user: string, device: string, credential: string, keepAliveSec: number, agent: string) {
    let ok: ConnectOkParams | undefined
    await this.#request(
      {
        type: MessageType.CONNECT,
        streamId: this.#allocateId(),
        params: { pv: PROTOCOL_VERSION, ka: keepAliveSec, agent, window: this.#streams.windowBytes },
        payload: [user, device, credential],
      },
      DEFAULT_REQUEST_TIMEOUT_MS,
      // Open synchronously on OK: the relay may send its first request in the same TCP segment.
      (reply) => {
        if (!checkConnectOk.Check(reply.params)) return
        ok = reply.params as ConnectOkParams
        this.#peerMaxFrame = ok.maxFrame
        this.#open(ok.ka)
        const ka = ok.ka
        this.#pingTimer = setInterval(
          () => this.#send({ type: MessageType.KEEP_ALIVE, streamId: 0 }),
          ka * 1000,
        )
      },
    )
    if (!ok) {
      this.fail(protocolError('TETHER_ERR_PROTOCOL', 'malformed CONNECT reply'))
      throw protocolError('TETHER_ERR_PROTOCOL', 'malformed CONNECT reply')
    }
    this.emit('open', ok)
    return ok
  }

  /** Sends RUN `resource` and resolves with the OK payload. */
  async run(resource: string, payload?: unknown, params?: Record<string, unknown>, timeoutMs?: number) {
    const reply = await this.#request(
      { type: MessageType.RUN, streamId: this.#allocateId(), resource, payload, params },
      timeoutMs ?? this.#opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    )
    return reply.payload
  }

  /** Sends DESCRIBE and resolves with the peer's description. */
  async describe(): Promise<unknown> {
    const reply = await this.#request(
      { type: MessageType.DESCRIBE, streamId: this.#allocateId() },
      this.#opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    )
    return reply.payload
  }

  /** Sends START_STREAM and resolves with the open stream once the peer answers OK. */
  async openStream(resource: string, params: Omit<StartStreamParams, 'window'>): Promise<TunnelStream> {
    const id = this.#allocateId()
    let stream: TunnelStream | undefined
    await this.#request(
      {
        type: MessageType.START_STREAM,
        streamId: id,
        resource,
        params: { ...params, window: this.#streams.windowBytes },
      },
      DIAL_TIMEOUT_MS + 5000,
      (ok) => {
        const sendWindow = checkStartStreamOk.Check(ok.params) ? (ok.params as { window: number }).window : 0
        stream = this.#streams.add(id, sendWindow, resource, params.protocol === 'udp')
      },
    )
    return stream!
  }

  /** Ends the link after sending ERROR {code, message} for `err` (protocol faults, refusals, replacement). */
  fail(err: TetherProtocolError | { wireCode: number; message: string }, closeCode?: number): void {
    if (this.#state === 'closed') return
    this.#send({ type: MessageType.ERROR, streamId: 0, params: { code: err.wireCode, message: err.message } })
    const code =
      closeCode ?? (err.wireCode === WireErrorCode.BAD_ENCODING ? CloseCode.PROTOCOL : CloseCode.POLICY)
    this.#channel.close(code, err.message)
    this.#teardown({ reason: err.message, wireCode: err.wireCode, by: 'local' })
  }

  /** Closes the link gracefully with DISCONNECT. */
  close(reason = 'closed'): void {
    if (this.#state === 'closed') return
    this.#send({ type: MessageType.DISCONNECT, streamId: 0 })
    this.#channel.close(CloseCode.NORMAL, reason)
    this.#teardown({ reason, by: 'local' })
  }

  // ---- inbound ---------------------------------------------------------------------------------------

  #onFrame(frame: Buffer): void {
    if (this.#state === 'closed') return
    this.rxBytes += frame.length
    this.rxFrames++
    this.#deadLink.touch()
    let msg: Message
    try {
      msg = decodeFrame(frame, this.#maxFrame)
    } catch (err) {
      this.#protocolFault(err)
      return
    }
    try {
      this.#dispatch(msg)
    } catch (err) {
      this.#protocolFault(err)
    }
  }

  #protocolFault(err: unknown): void {
    if (err instanceof TetherProtocolError) {
      this.log.warn({ code: err.code }, `closing link: ${err.message}`)
      const close = err.code === 'TETHER_ERR_FRAME_TOO_LARGE' ? CloseCode.TOO_BIG : undefined
      this.fail(err, close)
      return
    }
    this.log.error({ err }, 'closing link after an internal error')
    this.fail({ wireCode: WireErrorCode.HANDLER_FAILED, message: 'internal error' }, 1011)
  }

  #dispatch(msg: Message): void {
    if (this.#authenticating) throw protocolError('TETHER_ERR_PROTOCOL', 'frame before the CONNECT reply')
    if (this.#state === 'connecting') {
      if (this.role === 'relay') {
        // IoTMP: CONNECT must come first, and only once.
        if (msg.type !== MessageType.CONNECT)
          throw protocolError('TETHER_ERR_PROTOCOL', 'CONNECT must come first')
        this.#onConnect(msg)
        return
      }
      if (msg.type !== MessageType.OK && msg.type !== MessageType.ERROR) {
        throw protocolError('TETHER_ERR_PROTOCOL', `${messageTypeName(msg.type)} before the CONNECT reply`)
      }
    }
    switch (msg.type) {
      case MessageType.STREAM_DATA:
        return this.#streams.onData(msg)
      case MessageType.STREAM_CREDIT:
        return this.#streams.onCredit(msg)
      case MessageType.OK:
      case MessageType.ERROR:
        return this.#onReply(msg)
      case MessageType.KEEP_ALIVE:
        // DESIGN.md: the relay echoes at once; the agent's deadline was refreshed by the arrival itself.
        if (this.role === 'relay') this.#send({ type: MessageType.KEEP_ALIVE, streamId: 0 })
        return
      case MessageType.START_STREAM:
        return this.#streams.onStart(msg, this.role, this.#opts.onStartStream)
      case MessageType.STOP_STREAM:
        return this.#streams.onStop(msg)
      case MessageType.RUN:
        return this.#onRun(msg)
      case MessageType.DESCRIBE:
        return this.#onDescribe(msg)
      case MessageType.DISCONNECT:
        this.#channel.close(CloseCode.NORMAL, 'peer disconnected')
        return this.#teardown({ reason: 'peer sent DISCONNECT', by: 'remote' })
      case MessageType.CONNECT:
        throw protocolError('TETHER_ERR_PROTOCOL', 'CONNECT sent twice or by the relay')
    }
  }

  #onConnect(msg: Message): void {
    clearTimeout(this.#connectTimer)
    const authenticate = this.#opts.authenticate
    if (!authenticate) throw protocolError('TETHER_ERR_PROTOCOL', 'this side does not accept CONNECT')
    const params = msg.params ?? {}
    if (!checkConnectPayload.Check(msg.payload)) {
      throw protocolError('TETHER_ERR_BAD_ENCODING', 'CONNECT payload must be [user, device, credential]')
    }
    if (!checkConnectParams.Check(params)) {
      const ka = (params as { ka?: unknown }).ka
      if (ka !== undefined && !(Number.isInteger(ka) && (ka as number) >= 1 && (ka as number) <= 1800)) {
        this.#replyError(msg.streamId, WireErrorCode.INVALID_KEEP_ALIVE, 'keep-alive must be 1..1800 s')
        this.#channel.close(CloseCode.POLICY, 'invalid keep-alive')
        return this.#teardown({
          reason: 'invalid keep-alive',
          wireCode: WireErrorCode.INVALID_KEEP_ALIVE,
          by: 'local',
        })
      }
      throw protocolError('TETHER_ERR_BAD_ENCODING', 'CONNECT params must be {pv, ka, agent?, window?}')
    }
    const [user, device, credential] = msg.payload as [string, string, string]
    const req: ConnectRequest = { user, device, credential, params: params as ConnectParams }
    // Any frame before the reply is a violation (checked in #dispatch).
    this.#authenticating = true
    authenticate(req).then(
      (ok) => {
        if (this.#state === 'closed') return
        this.#authenticating = false
        this.peer = req
        this.#peerMaxFrame = this.#maxFrame
        this.#send({ type: MessageType.OK, streamId: msg.streamId, params: ok })
        this.#open(ok.ka)
        this.emit('open', req)
      },
      (err: unknown) => {
        if (this.#state === 'closed') return
        const wire =
          err instanceof TetherProtocolError
            ? err
            : { wireCode: WireErrorCode.HANDLER_FAILED, message: 'authentication failed' }
        if (!(err instanceof TetherProtocolError)) this.log.error({ err }, 'CONNECT handler failed')
        this.#replyError(msg.streamId, wire.wireCode, wire.message)
        this.#channel.close(CloseCode.POLICY, wire.message)
        this.#teardown({ reason: wire.message, wireCode: wire.wireCode, by: 'local' })
      },
    )
  }

  #onReply(msg: Message): void {
    const settled = this.#pending.settle(msg, msg.type === MessageType.OK, () => {
      const p = checkError.Check(msg.params)
        ? (msg.params as ErrorParams)
        : { code: WireErrorCode.HANDLER_FAILED, message: 'peer answered ERROR' }
      return new RemoteError(p.code, p.message)
    })
    // Unmatched: a late reply to a request that timed out, or a link-level ERROR (replaced, protocol fault).
    if (settled || msg.type !== MessageType.ERROR || msg.streamId !== 0) return
    const p = checkError.Check(msg.params) ? (msg.params as ErrorParams) : undefined
    this.#channel.close(CloseCode.NORMAL, p?.message ?? 'peer error')
    this.#teardown({ reason: p?.message ?? 'peer sent ERROR', wireCode: p?.code, by: 'remote' })
  }

  #onRun(msg: Message): void {
    const handler = this.#opts.onRun
    const id = msg.streamId
    if (!handler || !msg.resource) {
      if (id !== 0)
        this.#replyError(id, WireErrorCode.UNKNOWN_RESOURCE, `unknown resource ${msg.resource ?? ''}`)
      return
    }
    handler(msg.resource, msg.payload, msg.params).then(
      (payload) => {
        if (id === 0) return
        try {
          this.#send({ type: MessageType.OK, streamId: id, payload })
        } catch (err) {
          const e = err as { wireCode?: number; message: string }
          this.#replyError(id, e.wireCode ?? WireErrorCode.HANDLER_FAILED, `reply not sent: ${e.message}`)
        }
      },
      (err: unknown) => {
        if (id === 0) return
        const e = err as { wireCode?: number; message?: string }
        this.#replyError(id, e.wireCode ?? WireErrorCode.HANDLER_FAILED, e.message ?? 'handler failed')
      },
    )
  }

  #onDescribe(msg: Message): void {
    const describe = this.#opts.onDescribe
    if (!describe)
      return this.#replyError(msg.streamId, WireErrorCode.UNKNOWN_RESOURCE, 'nothing to describe')
    this.#send({ type: MessageType.OK, streamId: msg.streamId, payload: describe() })
  }

  // ---- outbound --------------------------------------------------------------------------------------

  #send(msg: Message): void {
    if (this.#state === 'closed') return
    const frame = encodeMessage(msg)
    if (frame.length > this.#peerMaxFrame) {
      throw protocolError('TETHER_ERR_FRAME_TOO_LARGE', frame.length, this.#peerMaxFrame)
    }
    this.#write(frame)
  }

  #write(frame: Buffer): void {
    this.txBytes += frame.length
    this.txFrames++
    this.#channel.send(frame)
  }

  #sendData(id: number, data: Uint8Array): void {
    if (this.#state === 'closed') return
    if (!this.#channel.sendParts) return this.#write(encodeStreamData(id, data))
    const head = encodeStreamDataHeader(id, data.length)
    this.txBytes += head.length + data.length
    this.txFrames++
    this.#channel.sendParts(head, data)
  }

  #replyError(streamId: number, code: number, message: string): void {
    this.#send({ type: MessageType.ERROR, streamId, params: { code, message } })
  }

  #request(msg: Message, timeoutMs: number, onOk?: (msg: Message) => void): Promise<Message> {
    if (this.#state === 'closed') {
      return Promise.reject(protocolError('TETHER_ERR_LINK_CLOSED', this.#closeInfo?.reason ?? 'closed'))
    }
    const onTimeout = () =>
      protocolError(
        'TETHER_ERR_REQUEST_TIMEOUT',
        `${messageTypeName(msg.type)} ${msg.resource ?? ''}`,
        timeoutMs,
      )
    return this.#pending.wait(msg.streamId, timeoutMs, onTimeout, () => this.#send(msg), onOk)
  }

  #allocateId(): number {
    // Relay ids are even, agent ids odd, so the two sides never collide (DESIGN.md, "Stream ids").
    for (;;) {
      const id = this.#nextId
      this.#nextId = id >= 0xfffffffd ? (this.role === 'relay' ? 2 : 1) : id + 2
      if (!this.#pending.has(id) && !this.#streams.has(id)) return id
    }
  }

  // ---- lifecycle -------------------------------------------------------------------------------------

  #open(keepAliveSec: number): void {
    this.#state = 'open'
    this.connectedAt = Date.now()
    this.#keepAliveSec = keepAliveSec
    this.#deadLink.start(keepAliveSec)
  }

  /** The dead-link deadline passed: drop the link without the close handshake, which could never complete. */
  #linkDead(reason: string): void {
    if (this.#state === 'closed') return
    this.log.warn(`link dead: ${reason}`)
    const ws = this.#channel as { terminate?: () => void }
    if (ws.terminate) ws.terminate()
    else this.#channel.close(CloseCode.DEAD, 'keep-alive timeout')
    this.#teardown({ reason, by: 'local' })
  }

  #teardown(info: CloseInfo): void {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    this.#closeInfo = info
    clearTimeout(this.#connectTimer)
    this.#deadLink.stop()
    clearInterval(this.#pingTimer)
    const err = protocolError('TETHER_ERR_LINK_CLOSED', info.reason)
    this.#pending.rejectAll(info.wireCode ? new RemoteError(info.wireCode, info.reason) : err)
    this.#streams.linkLost(info.reason)
    this.emit('close', info)
  }
}
