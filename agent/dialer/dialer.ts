/**
 * Answers the relay's START_STREAM `$proxy/<id>`: checks the allowlist against the resolved address, dials
 * the local target (TLS with SNI when asked) within the dial timeout, then splices socket and stream.
 */
import dgram from 'node:dgram'
import { lookup } from 'node:dns/promises'
import net from 'node:net'
import tls from 'node:tls'
import type { Logger } from 'pino'
import { PROXY_RESOURCE_PREFIX, WireErrorCode } from '../../protocol/messages.ts'
import type { InboundStreamRequest } from '../../protocol/session.ts'
import { splice } from '../../protocol/splice.ts'
import { explainTlsFailure, type TlsTarget, tlsTargetOptions } from '../../protocol/tls-target.ts'
import type { TunnelStream } from '../../protocol/tunnel-stream.ts'
import { UDP_SOCKET_BUFFER_BYTES } from '../../protocol/udp-buffers.ts'
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

/** The dialed local end of a stream: TCP socket or UDP socket. */
interface LocalEnd {
  attach(stream: TunnelStream): void
  close(): void
}

/** Datagrams both ways: one STREAM_DATA per datagram; dropped (not queued) when the tunnel is congested. */
function udpEnd(socket: dgram.Socket): LocalEnd {
  return {
    attach(stream) {
      stream.on('data', (datagram: Buffer) => socket.send(datagram))
      socket.on('message', (datagram) => {
        if (!stream.writableNeedDrain && !stream.destroyed) stream.write(datagram)
      })
      stream.on('error', () => {})
      stream.once('close', () => socket.close())
      // A stream ending (relay mapping expired) closes the socket too.
      stream.once('end', () => stream.destroy())
    },
    close: () => socket.close(),
  }
}

export class Dialer {
  /** Dials refused (allowlist, unreachable target); reported in DESCRIBE. */
  refusals = 0

  readonly dialTimeoutMs: number
  readonly #targetCa: readonly string[]

  /** `targetCa`: extra CA certificates (PEM) trusted for TLS targets, besides Node's bundled roots. */
  constructor(
    readonly allowlist: Allowlist,
    readonly log: Logger,
    opts: { dialTimeoutMs: number; targetCa?: readonly string[] },
  ) {
    this.dialTimeoutMs = opts.dialTimeoutMs
    this.#targetCa = opts.targetCa ?? []
  }

  /** Session handler for inbound START_STREAM. */
  readonly handle = (req: InboundStreamRequest): void => {
    const { address, port } = req.params
    const target = `${address}:${port}`
    this.#open(req).then(
      (local) => {
        let stream: ReturnType<InboundStreamRequest['accept']>
        try {
          stream = req.accept()
        } catch {
          local.close() // the link went away while dialing
          return
        }
        this.log.debug({ stream: req.id, target, protocol: req.params.protocol }, 'stream open')
        local.attach(stream)
      },
      (err: DialError) => {
        this.refusals++
        this.log.warn({ stream: req.id, resource: req.resource }, `refused ${target}: ${err.message}`)
        req.reject(err.wireCode ?? WireErrorCode.DIAL_FAILED, err.message)
      },
    )
  }

  async #open(req: InboundStreamRequest): Promise<LocalEnd> {
    const { params, resource } = req
    if (!resource.startsWith(PROXY_RESOURCE_PREFIX)) {
      throw new DialError(WireErrorCode.UNKNOWN_RESOURCE, `unknown resource ${resource}`)
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
    if (params.protocol === 'udp') return udpEnd(await this.#dialUdp(ip, params.port))
    const tlsTarget: TlsTarget | undefined =
      params.secure === true
        ? {
            host: ip,
            port: params.port,
            servername: params.servername ?? name,
            verify: params.verify !== false,
            ca: this.#targetCa,
          }
        : undefined
    const socket = await this.#dial(ip, params.port, tlsTarget)
    return { attach: (stream) => splice(socket, stream), close: () => socket.destroy() }
  }

  async #resolve(name: string): Promise<string> {
    try {
      return (await lookup(name)).address
    } catch (err) {
      throw new DialError(WireErrorCode.DIAL_FAILED, `cannot resolve ${name}: ${(err as Error).message}`)
    }
  }

  #dialUdp(ip: string, port: number): Promise<dgram.Socket> {
    const socket = dgram.createSocket({
      type: net.isIPv6(ip) ? 'udp6' : 'udp4',
      recvBufferSize: UDP_SOCKET_BUFFER_BYTES,
      sendBufferSize: UDP_SOCKET_BUFFER_BYTES,
    })
    return new Promise((resolve, reject) => {
      socket.once('error', (err) => {
        socket.close()
        reject(new DialError(WireErrorCode.DIAL_FAILED, `udp ${ip}:${port}: ${err.message}`))
      })
      socket.connect(port, ip, () => {
        socket.removeAllListeners('error')
        // ICMP port unreachable arrives as ECONNREFUSED on a connected socket; UDP carries on.
        socket.on('error', () => {})
        resolve(socket)
      })
    })
  }

  #dial(ip: string, port: number, tlsTarget: TlsTarget | undefined) {
    return new Promise<net.Socket>((resolve, reject) => {
      const where = `${ip}:${port}`
      const secure = tlsTarget !== undefined
      const socket = secure
        ? tls.connect(tlsTargetOptions(tlsTarget))
        : net.connect({ host: ip, port, allowHalfOpen: true, noDelay: true })
      if (tlsTarget?.verify === false) this.log.warn(`TLS to ${where} without certificate verification`)
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
        const why =
          (tlsTarget && explainTlsFailure(err, tlsTarget)) ??
          (err.code === 'ECONNREFUSED' ? 'connection refused' : err.message)
        reject(new DialError(WireErrorCode.DIAL_FAILED, why))
      })
    })
  }
}
