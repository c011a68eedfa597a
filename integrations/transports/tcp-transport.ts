/**
 * The TCP integration: devices connect to `settings.port` and send framed messages (integrations/framing.ts);
 * each frame is one uplink. A device named by an uplink's converter is remembered on that connection, so its
 * downlinks go back over its last live connection, framed the same way.
 */
import net from 'node:net'
import { FrameSplitter, FrameTooLargeError } from '../framing.ts'
import type { TcpSettings } from '../schemas.ts'
import {
  downlinkBytes,
  type EncodedDownlink,
  type Transport,
  type TransportContext,
  type TransportStatus,
  type UplinkOutcome,
} from '../transport.ts'
import { DeviceRoutes } from './device-routes.ts'

export const DEFAULT_MAX_CONNECTIONS = 1000
export const DEFAULT_IDLE_TIMEOUT_MS = 10 * 60_000
/** Uplinks in flight per connection above which the socket is paused until they settle. */
export const DEFAULT_MAX_PENDING_FRAMES = 100
/** `connection` framing: how long our side stays open for a reply after the peer ended its message. */
export const DEFAULT_REPLY_WAIT_MS = 5000
/** A downlink is refused while this much is still queued for a device that does not read. */
const MAX_WRITE_BACKLOG_BYTES = 1024 * 1024

export interface TcpTransportOptions {
  maxConnections?: number
  idleTimeoutMs?: number
  maxPendingFrames?: number
  replyWaitMs?: number
}

export interface TcpTransportStatus extends TransportStatus {
  /** Connections closed because a frame exceeded maxFrameBytes. */
  oversizedFrames: number
  /** Connections refused because maxConnections were open. */
  refusedConnections: number
}

interface Connection {
  socket: net.Socket
  splitter: FrameSplitter
  /** Uplinks started and not yet settled. */
  pending: number
  /** The peer ended its side: close ours once the pending uplinks settle and a reply had its chance. */
  peerEnded: boolean
  replyTimer?: NodeJS.Timeout
  /** Our side was ended (or is about to be): no second reply timer. */
  ending: boolean
}

export class TcpTransport implements Transport {
  readonly #settings: TcpSettings
  readonly #ctx: TransportContext
  readonly #server: net.Server
  readonly #connections = new Set<Connection>()
  readonly #routes = new DeviceRoutes<Connection>()
  readonly #idleTimeoutMs: number
  readonly #maxPendingFrames: number
  readonly #replyWaitMs: number
  #state: TransportStatus['state'] = 'starting'
  #error: string | undefined
  #received = 0
  #sent = 0
  #oversizedFrames = 0
  #refusedConnections = 0
  /** Set on a refused connection, cleared on an accepted one: logs one line per overload, not one per peer. */
  #full = false

  constructor(settings: TcpSettings, ctx: TransportContext, opts: TcpTransportOptions = {}) {
    this.#settings = settings
    this.#ctx = ctx
    this.#idleTimeoutMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS
    this.#maxPendingFrames = opts.maxPendingFrames ?? DEFAULT_MAX_PENDING_FRAMES
    this.#replyWaitMs = opts.replyWaitMs ?? DEFAULT_REPLY_WAIT_MS
    // Half-open: a `connection`-framed device ends its side to mark the message, then reads the reply.
    this.#server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) =>
      this.#onConnection(socket),
    )
    this.#server.maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS
    this.#server.on('drop', (peer) => {
      this.#refusedConnections++
      if (this.#full) return
      this.#full = true
      this.#ctx.log.warn(
        { remoteAddress: peer?.remoteAddress, maxConnections: this.#server.maxConnections },
        'tcp integration: connection limit reached; refusing new connections',
      )
    })
  }

  /** Listens on settings.port (0: any free port, see status().port) at settings.address (default 0.0.0.0). */
  start(): Promise<void> {
    const { port, address = '0.0.0.0' } = this.#settings
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => {
        this.#state = 'error'
        this.#error = err.message
        reject(err)
      }
      this.#server.once('error', onError)
      this.#server.listen({ port, host: address }, () => {
        this.#server.off('error', onError)
        this.#server.on('error', (err) => this.#ctx.log.error({ err }, 'tcp integration: listener error'))
        this.#state = 'running'
        resolve()
      })
    })
  }

  /** Stops listening and closes every connection. */
  async stop(): Promise<void> {
    this.#state = 'stopped'
    for (const conn of this.#connections) conn.socket.destroy()
    await new Promise<void>((resolve) => {
      if (!this.#server.listening) return resolve()
      this.#server.close(() => resolve())
    })
  }

  /** Writes the framed downlink to the device's last live connection; resolves once handed to the kernel. */
  deliver(device: string, downlink: EncodedDownlink): Promise<void> {
    const conn = this.#routes.get(device)
    if (!conn?.socket.writable) {
      return Promise.reject(new Error(`device ${device} has no live tcp connection`))
    }
    const { socket, splitter } = conn
    if (socket.writableLength > MAX_WRITE_BACKLOG_BYTES) {
      return Promise.reject(new Error(`device ${device} is not reading its tcp connection`))
    }
    let frame: Buffer
    try {
      frame = splitter.encode(downlinkBytes(downlink))
    } catch (err) {
      return Promise.reject(err)
    }
    return new Promise((resolve, reject) => {
      socket.write(frame, (err) => {
        if (err) return reject(err)
        this.#sent++
        resolve()
      })
      // One message per connection each way: the reply completes the exchange.
      if (splitter.framing.type === 'connection') this.#endReply(conn)
    })
  }

  /** State, bound port, open connections and counters. */
  status(): TcpTransportStatus {
    const address = this.#server.address()
    return {
      state: this.#state,
      ...(this.#error !== undefined && { error: this.#error }),
      ...(typeof address === 'object' && address && { port: address.port }),
      connections: this.#connections.size,
      received: this.#received,
      sent: this.#sent,
      oversizedFrames: this.#oversizedFrames,
      refusedConnections: this.#refusedConnections,
    }
  }

  #onConnection(socket: net.Socket): void {
    this.#full = false
    const splitter = new FrameSplitter(this.#settings.framing)
    const conn: Connection = { socket, splitter, pending: 0, peerEnded: false, ending: false }
    this.#connections.add(conn)
    const metadata = {
      remoteAddress: socket.remoteAddress ?? '',
      remotePort: String(socket.remotePort ?? ''),
    }
    socket.setTimeout(this.#idleTimeoutMs)
    socket.on('timeout', () => {
      // Not idle while its uplinks run (the socket may be paused for them): look again later.
      if (conn.pending > 0) return socket.setTimeout(this.#idleTimeoutMs)
      this.#ctx.log.debug(metadata, 'tcp integration: idle connection closed')
      socket.destroy()
    })
    socket.on('error', (err) =>
      this.#ctx.log.debug({ ...metadata, err: err.message }, 'tcp integration: socket error'),
    )
    socket.on('close', () => {
      clearTimeout(conn.replyTimer)
      this.#connections.delete(conn)
      this.#routes.forget(conn)
    })
    socket.on('data', (chunk: Buffer) => {
      let frames: Buffer[]
      try {
        frames = conn.splitter.push(chunk)
      } catch (err) {
        // Frames before the oversized one are complete and valid: they still go up.
        const valid = err instanceof FrameTooLargeError ? err.frames : []
        for (const frame of valid) this.#uplink(conn, frame, metadata)
        return this.#frameError(conn, err, metadata)
      }
      for (const frame of frames) this.#uplink(conn, frame, metadata)
    })
    socket.on('end', () => {
      conn.peerEnded = true
      const left = conn.splitter.buffered
      const frames = conn.splitter.end()
      if (frames.length === 0 && left > 0) {
        this.#ctx.log.warn(
          { ...metadata, bytes: left },
          'tcp integration: peer ended inside a frame; dropped',
        )
      }
      for (const frame of frames) this.#uplink(conn, frame, metadata)
      this.#maybeEnd(conn)
    })
  }

  #uplink(conn: Connection, frame: Buffer, metadata: { remoteAddress: string; remotePort: string }): void {
    this.#received++
    conn.pending++
    // Backpressure: a device sending faster than its uplinks complete waits in TCP, not in our memory.
    if (conn.pending > this.#maxPendingFrames && !conn.socket.isPaused()) conn.socket.pause()
    const route = this.#routes.begin()
    // A synchronous throw becomes a rejection: an uplink must never take the listener down.
    new Promise<UplinkOutcome>((resolve) =>
      resolve(this.#ctx.uplink({ payload: frame, metadata: { ...metadata } })),
    )
      .then(
        (outcome) => {
          if (!conn.socket.destroyed) this.#routes.learn(route, outcome.devices, conn)
        },
        (err: Error) =>
          this.#ctx.log.warn({ ...metadata, err: err.message }, 'tcp integration: uplink failed'),
      )
      .finally(() => {
        conn.pending--
        if (conn.pending <= this.#maxPendingFrames && conn.socket.isPaused()) conn.socket.resume()
        this.#maybeEnd(conn)
      })
  }

  #frameError(conn: Connection, err: unknown, metadata: Record<string, string>): void {
    conn.socket.destroy()
    if (!(err instanceof FrameTooLargeError)) {
      this.#ctx.log.error({ ...metadata, err }, 'tcp integration: cannot read frames; connection closed')
      return
    }
    this.#oversizedFrames++
    this.#ctx.log.warn(
      { ...metadata, bytes: err.bytes, maxFrameBytes: err.maxFrameBytes },
      'tcp integration: frame too large; connection closed',
    )
  }

  /**
   * Once the peer ended and the last uplink settled, ends our side: at once for a stream of frames (the device is
   * done), after `replyWaitMs` for `connection` framing, whose device waits for a one-message reply.
   */
  #maybeEnd(conn: Connection): void {
    if (!conn.peerEnded || conn.pending > 0 || conn.ending || conn.replyTimer) return
    if (conn.splitter.framing.type !== 'connection') return this.#endReply(conn)
    conn.replyTimer = setTimeout(() => this.#endReply(conn), this.#replyWaitMs)
  }

  #endReply(conn: Connection): void {
    clearTimeout(conn.replyTimer)
    conn.ending = true
    if (conn.socket.writable) conn.socket.end()
  }
}
