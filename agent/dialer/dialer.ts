/**
 * Answers the relay's START_STREAM `$proxy/<id>`: checks the allowlist against the resolved address, dials
 * the local target (TLS with SNI when asked) within the dial timeout, then splices socket and stream.
 */
import { lookup } from 'node:dns/promises'
import net from 'node:net'
import tls from 'node:tls'
import type { Logger } from 'pino'
import { PROXY_RESOURCE_PREFIX, WireErrorCode } from '../../protocol/messages.ts'
import type { InboundStreamRequest } from '../../protocol/session.ts'
import { splice } from '../../protocol/splice.ts'
import type { Allowlist } from './allowlist.ts'

/** A refused or failed dial, with the wire code the relay receives. */
class DialError extends Error {
  constructor(
    readonly wireCode: number,
    message: string,
  ) {
    super(message)
  }
}

export class Dialer {
  constructor(
    readonly allowlist: Allowlist,
    readonly log: Logger,
    readonly dialTimeoutMs: number,
  ) {}

  /** Session handler for inbound START_STREAM. */
  readonly handle = (req: InboundStreamRequest): void => {
    const { address, port } = req.params
    const target = `${address}:${port}`
    this.#open(req).then(
      (socket) => {
        let stream: ReturnType<InboundStreamRequest['accept']>
        try {
          stream = req.accept()
        } catch {
          socket.destroy() // the link went away while dialing
          return
        }
        this.log.debug({ stream: req.id, target }, 'stream open')
        splice(socket, stream)
      },
      (err: DialError) => {
        this.log.warn({ stream: req.id, resource: req.resource }, `refused ${target}: ${err.message}`)
        req.reject(err.wireCode ?? WireErrorCode.DIAL_FAILED, err.message)
      },
    )
  }

  async #open(req: InboundStreamRequest): Promise<net.Socket> {
    const { params, resource } = req
    if (!resource.startsWith(PROXY_RESOURCE_PREFIX)) {
      throw new DialError(WireErrorCode.UNKNOWN_RESOURCE, `unknown resource ${resource}`)
    }
    if (params.protocol !== 'tcp') {
      throw new DialError(
        WireErrorCode.UNKNOWN_RESOURCE,
        `protocol ${params.protocol} is not supported by this agent`,
      )
    }
    const name = net.isIP(params.address) ? undefined : params.address
    const ip = name ? await this.#resolve(name) : params.address
    // Check the resolved address and dial that same address, so DNS cannot change the answer in between.
    if (!this.allowlist.allows({ name, ip, port: params.port })) {
      throw new DialError(
        WireErrorCode.TARGET_NOT_ALLOWED,
        `${params.address}:${params.port} is not in the agent's allowlist`,
      )
    }
    return this.#dial(
      ip,
      params.port,
      params.secure === true,
      params.servername ?? name,
      params.verify !== false,
    )
  }

  async #resolve(name: string): Promise<string> {
    try {
      return (await lookup(name)).address
    } catch (err) {
      throw new DialError(WireErrorCode.DIAL_FAILED, `cannot resolve ${name}: ${(err as Error).message}`)
    }
  }

  #dial(ip: string, port: number, secure: boolean, servername: string | undefined, verify: boolean) {
    return new Promise<net.Socket>((resolve, reject) => {
      const where = `${ip}:${port}`
      const socket = secure
        ? tls.connect({ host: ip, port, servername, rejectUnauthorized: verify })
        : net.connect({ host: ip, port, allowHalfOpen: true, noDelay: true })
      if (secure && !verify) this.log.warn(`TLS to ${where} without certificate verification`)
      const timer = setTimeout(() => {
        socket.destroy()
        reject(
          new DialError(
            WireErrorCode.DIAL_TIMEOUT,
            `no answer from ${where} within ${this.dialTimeoutMs} ms`,
          ),
        )
      }, this.dialTimeoutMs)
      socket.once(secure ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer)
        socket.removeAllListeners('error')
        socket.on('error', () => {}) // the splice reports it
        resolve(socket)
      })
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer)
        const why = err.code === 'ECONNREFUSED' ? 'connection refused' : err.message
        reject(new DialError(WireErrorCode.DIAL_FAILED, why))
      })
    })
  }
}
