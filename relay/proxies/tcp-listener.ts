/**
 * A proxy's TCP listener (protocols tcp and tcp-iotmp): admits clients by source rules, opens the target
 * (from the relay or through the agent) and splices the two, half-close included.
 */
import net from 'node:net'
import type { Duplex } from 'node:stream'
import { splice } from '../../protocol/splice.ts'
import type { ProxyContext } from './proxy-context.ts'
import type { ProxyStats } from './proxy-stats.ts'
import type { ProxyProfile } from './schemas.ts'
import { SourceGuard } from './source-guard.ts'
import { openTcpUpstream } from './tcp-upstream.ts'

/** The contract ProxyManager uses for every listener kind. */
export interface ProxyListener {
  readonly port: number | undefined
  listen(): Promise<void>
  /** Applies a profile with the same source address and port, for new connections. */
  update(profile: ProxyProfile): void
  /** Stops listening and closes every live connection. */
  close(): Promise<void>
  /** Bytes moved so far by connections still open (closed ones are in the stats). */
  liveBytes(): { rx: number; tx: number }
}

export class TcpListener implements ProxyListener {
  readonly #server: net.Server
  readonly #sockets = new Set<net.Socket>()
  #profile: ProxyProfile
  #guard: SourceGuard

  constructor(
    profile: ProxyProfile,
    readonly stats: ProxyStats,
    readonly ctx: ProxyContext,
  ) {
    this.#profile = profile
    this.#guard = new SourceGuard(profile.source)
    this.#server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }, (socket) =>
      this.#onConnection(socket),
    )
  }

  get port(): number | undefined {
    const address = this.#server.address()
    return typeof address === 'object' && address ? address.port : undefined
  }

  listen(): Promise<void> {
    const { port, address = '0.0.0.0' } = this.#profile.source
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen({ port, host: address }, () => {
        this.#server.off('error', reject)
        this.#server.on('error', (err) => this.ctx.log.error({ err }, 'proxy listener error'))
        resolve()
      })
    })
  }

  update(profile: ProxyProfile): void {
    this.#profile = profile
    this.#guard = new SourceGuard(profile.source)
  }

  liveBytes(): { rx: number; tx: number } {
    let rx = 0
    let tx = 0
    for (const socket of this.#sockets) {
      rx += socket.bytesRead
      tx += socket.bytesWritten
    }
    return { rx, tx }
  }

  close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy()
    return new Promise((resolve) => {
      if (!this.#server.listening) return resolve()
      this.#server.close(() => resolve())
    })
  }

  #onConnection(socket: net.Socket): void {
    const profile = this.#profile
    const { stats, ctx } = this
    const client = `${socket.remoteAddress}:${socket.remotePort}`
    const refusal = this.#guard.refusal(socket.remoteAddress, stats.active)
    socket.on('error', () => {}) // reported through close below
    if (refusal) {
      ctx.log.warn({ client }, `proxy ${profile.id}: ${refusal}; connection refused`)
      stats.reject(refusal)
      socket.destroy()
      return
    }
    stats.total++
    stats.active++
    this.#sockets.add(socket)
    socket.once('close', () => {
      this.#sockets.delete(socket)
      stats.active--
      stats.rxBytes += socket.bytesRead
      stats.txBytes += socket.bytesWritten
    })
    openTcpUpstream(profile, ctx).then(
      (upstream: Duplex) => {
        if (socket.destroyed) {
          upstream.destroy()
          return
        }
        splice(socket, upstream)
        socket.resume()
      },
      (err: Error) => {
        ctx.log.warn({ client }, `proxy ${profile.id}: ${err.message}; closing the client connection`)
        stats.reject(err.message)
        socket.destroy()
      },
    )
  }
}
