/**
 * TCP over IoTMP: a relay-side TCP listener whose every connection becomes a tunnel stream to the agent
 * of the profile's device, which dials `target.address:port` on its LAN.
 */

/**
 * TCP over IoTMP: a relay-side TCP listener whose every connection becomes a tunnel stream to the agent
 * of the profile's device, which dials `target.address:port` on its LAN.
 */
import net, { isIP } from 'node:net'
import type { Logger } from 'pino'
import { PROXY_RESOURCE_PREFIX } from '../../protocol/messages.ts'
import { splice } from '../../protocol/splice.ts'
import type { AgentHub } from '../hub/agent-hub.ts'
import type { ProxyStats } from './proxy-stats.ts'
import type { ProxyProfile } from './schemas.ts'

export class TcpIotmpListener {
  readonly #server: net.Server
  readonly #sockets = new Set<net.Socket>()

  constructor(
    readonly profile: ProxyProfile,
    readonly hub: AgentHub,
    readonly stats: ProxyStats,
    readonly log: Logger,
  ) {
    this.#server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true }, (socket) =>
      this.#onConnection(socket),
    )
  }

  /** The bound port once listening. */
  get port(): number | undefined {
    const address = this.#server.address()
    return typeof address === 'object' && address ? address.port : undefined
  }

  /** Binds the source port; rejects with the listen error (EADDRINUSE, EACCES…). */
  listen(): Promise<void> {
    const { port, address = '0.0.0.0' } = this.profile.source
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen({ port, host: address }, () => {
        this.#server.off('error', reject)
        this.#server.on('error', (err) => this.log.error({ err }, 'proxy listener error'))
        resolve()
      })
    })
  }

  /** Stops listening and closes every live connection of this proxy. */
  close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy()
    return new Promise((resolve) => {
      if (!this.#server.listening) return resolve()
      this.#server.close(() => resolve())
    })
  }

  #onConnection(socket: net.Socket): void {
    const { id, target } = this.profile
    const client = `${socket.remoteAddress}:${socket.remotePort}`
    const stats = this.stats
    stats.total++
    stats.active++
    this.#sockets.add(socket)
    socket.on('error', () => {}) // reported through close below
    socket.once('close', () => {
      this.#sockets.delete(socket)
      stats.active--
      stats.rxBytes += socket.bytesRead
      stats.txBytes += socket.bytesWritten
    })

    const link = this.hub.get(target.user, target.device)
    if (!link) {
      const reason = `device ${target.user}/${target.device} is offline`
      this.log.warn({ client }, `proxy ${id}: ${reason}; closing the client connection`)
      stats.error(reason)
      socket.destroy()
      return
    }
    const secure = target.tls === true
    link.session
      .openStream(`${PROXY_RESOURCE_PREFIX}${id}`, {
        protocol: 'tcp',
        address: target.address,
        port: target.port,
        ...(secure ? { secure, verify: target.verify !== false } : {}),
        ...(secure && !isIP(target.address) ? { servername: target.address } : {}),
      })
      .then(
        (stream) => {
          if (socket.destroyed) {
            stream.destroy()
            return
          }
          splice(socket, stream, (err) => {
            if (err && !/ECONNRESET|EPIPE/.test(String((err as { code?: string }).code))) {
              this.log.info({ client }, `proxy ${id}: connection ended: ${err.message}`)
            }
          })
          socket.resume()
        },
        (err: Error) => {
          const reason = `agent could not open ${target.address}:${target.port}: ${err.message}`
          this.log.warn({ client }, `proxy ${id}: ${reason}; closing the client connection`)
          stats.error(reason)
          socket.destroy()
        },
      )
  }
}
