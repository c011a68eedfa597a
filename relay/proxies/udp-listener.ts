/**
 * A proxy's UDP listener (protocols udp and udp-iotmp): datagrams from each client address map to their own
 * upstream channel; replies go back to that client; mappings expire after `source.idleTimeoutSec` of silence.
 */
import dgram from 'node:dgram'
import net from 'node:net'
import { UDP_SOCKET_BUFFER_BYTES } from '../../protocol/udp-buffers.ts'
import type { ProxyContext } from './proxy-context.ts'
import type { ProxyStats } from './proxy-stats.ts'
import type { ProxyProfile } from './schemas.ts'
import { SourceGuard } from './source-guard.ts'
import type { ProxyListener } from './tcp-listener.ts'
import { type DatagramUpstream, openUdpUpstream } from './udp-upstream.ts'

/** Datagrams queued per client while its upstream opens; later ones are dropped. */
const MAX_PENDING_DATAGRAMS = 64
const DEFAULT_IDLE_TIMEOUT_SEC = 60

interface Mapping {
  upstream?: DatagramUpstream
  pending: Buffer[]
  idle: NodeJS.Timeout
  closed: boolean
}

export class UdpListener implements ProxyListener {
  readonly #socket: dgram.Socket
  readonly #mappings = new Map<string, Mapping>()
  #profile: ProxyProfile
  #guard: SourceGuard

  constructor(
    profile: ProxyProfile,
    readonly stats: ProxyStats,
    readonly ctx: ProxyContext,
  ) {
    this.#profile = profile
    this.#guard = new SourceGuard(profile.source)
    const address = profile.source.address ?? '0.0.0.0'
    this.#socket = dgram.createSocket({
      type: net.isIPv6(address) ? 'udp6' : 'udp4',
      // Bursts arrive faster than one event-loop turn forwards them; the kernel caps this at rmem_max.
      recvBufferSize: UDP_SOCKET_BUFFER_BYTES,
      sendBufferSize: UDP_SOCKET_BUFFER_BYTES,
    })
    this.#socket.on('message', (msg, rinfo) => this.#onDatagram(msg, rinfo))
  }

  get port(): number | undefined {
    try {
      return this.#socket.address().port
    } catch {
      return undefined // not bound
    }
  }

  listen(): Promise<void> {
    const { port, address = '0.0.0.0' } = this.#profile.source
    return new Promise((resolve, reject) => {
      this.#socket.once('error', reject)
      this.#socket.bind({ port, address, exclusive: true }, () => {
        this.#socket.off('error', reject)
        this.#socket.on('error', (err) => this.ctx.log.error({ err }, 'udp proxy socket error'))
        resolve()
      })
    })
  }

  update(profile: ProxyProfile): void {
    this.#profile = profile
    this.#guard = new SourceGuard(profile.source)
  }

  liveBytes(): { rx: number; tx: number } {
    return { rx: 0, tx: 0 } // datagrams are counted as they pass
  }

  async close(): Promise<void> {
    for (const [key, mapping] of [...this.#mappings]) this.#expire(key, mapping)
    await new Promise<void>((resolve) => {
      try {
        this.#socket.close(() => resolve())
      } catch {
        resolve() // never bound
      }
    })
  }

  #onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const key = `${rinfo.address}|${rinfo.port}`
    const stats = this.stats
    stats.rxBytes += msg.length
    const existing = this.#mappings.get(key)
    if (existing) {
      existing.idle.refresh()
      this.#forward(existing, msg)
      return
    }
    const profile = this.#profile
    const refusal = this.#guard.refusal(rinfo.address, this.#mappings.size)
    if (refusal) {
      this.ctx.log.warn(
        `proxy ${profile.id}: ${refusal}; datagram from ${rinfo.address}:${rinfo.port} dropped`,
      )
      stats.reject(refusal)
      return
    }
    const idleMs = (profile.source.idleTimeoutSec ?? DEFAULT_IDLE_TIMEOUT_SEC) * 1000
    const mapping: Mapping = {
      pending: [msg],
      idle: setTimeout(() => this.#expire(key, mapping), idleMs),
      closed: false,
    }
    this.#mappings.set(key, mapping)
    stats.total++
    stats.active++
    openUdpUpstream(profile, this.ctx, {
      onMessage: (reply) => {
        mapping.idle.refresh()
        stats.txBytes += reply.length
        this.#socket.send(reply, rinfo.port, rinfo.address)
      },
      onClose: () => this.#expire(key, mapping),
    }).then(
      (upstream) => {
        if (mapping.closed) return upstream.close()
        mapping.upstream = upstream
        for (const datagram of mapping.pending.splice(0)) this.#forward(mapping, datagram)
      },
      (err: Error) => {
        this.ctx.log.warn(
          `proxy ${profile.id}: ${err.message}; dropping client ${rinfo.address}:${rinfo.port}`,
        )
        stats.reject(err.message)
        this.#expire(key, mapping)
      },
    )
  }

  #forward(mapping: Mapping, datagram: Buffer): void {
    if (!mapping.upstream) {
      if (mapping.pending.length < MAX_PENDING_DATAGRAMS) mapping.pending.push(datagram)
      else this.stats.droppedDatagrams++
      return
    }
    if (!mapping.upstream.send(datagram)) this.stats.droppedDatagrams++
  }

  /** Ends `mapping`; a late close of an already replaced mapping must not remove its successor. */
  #expire(key: string, mapping: Mapping): void {
    if (this.#mappings.get(key) !== mapping) return
    this.#mappings.delete(key)
    mapping.closed = true
    clearTimeout(mapping.idle)
    mapping.upstream?.close()
    this.stats.active--
  }
}
