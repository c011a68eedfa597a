/** Runs the listeners of the proxy profiles: opens, moves and closes them live as profiles change. */
import type { TunnelStream } from '../../protocol/tunnel-stream.ts'
import { type Portal, PortalRegistry } from '../portals/portal-registry.ts'
import type { ProxyContext } from './proxy-context.ts'
import { ProxyStats } from './proxy-stats.ts'
import type { ProxyProfile, ProxyStatus } from './schemas.ts'
import { type ProxyListener, TcpListener } from './tcp-listener.ts'
import { UdpListener } from './udp-listener.ts'

interface Entry {
  profile: ProxyProfile
  stats: ProxyStats
  listener?: ProxyListener
  /** Why the listener is not running although the profile is enabled. */
  error?: string
}

/** Human text for a listen failure, naming the port. */
function listenError(err: NodeJS.ErrnoException, profile: ProxyProfile): string {
  const where = `${profile.source.address ?? '0.0.0.0'}:${profile.source.port}`
  if (err.code === 'EADDRINUSE') return `source port ${profile.source.port} is already in use (${where})`
  if (err.code === 'EACCES') return `no permission to listen on ${where}`
  if (err.code === 'EADDRNOTAVAIL') return `address ${profile.source.address} is not available on this host`
  return `cannot listen on ${where}: ${err.message}`
}

/** Listener kind of a protocol; http-iotmp portals are served by the HTTP server, not a listener. */
function listenerKind(profile: ProxyProfile): 'tcp' | 'udp' | undefined {
  if (profile.protocol === 'tcp' || profile.protocol === 'tcp-iotmp') return 'tcp'
  if (profile.protocol === 'udp' || profile.protocol === 'udp-iotmp') return 'udp'
  return undefined
}

/** Bytes moved so far by a portal's open streams (closed ones are in the stats). */
function livePortalBytes(portal: Portal): { rx: number; tx: number } {
  let rx = 0
  let tx = 0
  for (const stream of portal.streams as Set<Partial<TunnelStream>>) {
    rx += stream.bytesSent ?? 0
    tx += stream.bytesReceived ?? 0
  }
  return { rx, tx }
}

/** True when `b` can take over `a`'s listener without rebinding. */
function sameBinding(a: ProxyProfile, b: ProxyProfile): boolean {
  return (
    listenerKind(a) === listenerKind(b) &&
    a.source.port === b.source.port &&
    (a.source.address ?? '0.0.0.0') === (b.source.address ?? '0.0.0.0')
  )
}

export class ProxyManager {
  readonly #entries = new Map<string, Entry>()
  /** http-iotmp profiles, served by the relay's HTTP server rather than a listener. */
  readonly portals: PortalRegistry

  constructor(readonly ctx: ProxyContext) {
    this.portals = new PortalRegistry(ctx)
  }

  /**
   * Starts, updates or stops the listener of `profile`; resolves with the listen error text, if any.
   * An update that keeps protocol family and source binding keeps the listener and its live connections.
   */
  async apply(profile: ProxyProfile): Promise<string | undefined> {
    const entry = this.#entries.get(profile.id) ?? { profile, stats: new ProxyStats() }
    this.#entries.set(profile.id, entry)
    const previous = entry.profile
    entry.profile = profile
    if (entry.listener && profile.enabled && sameBinding(previous, profile)) {
      entry.listener.update(profile)
      this.#warnUnverified(profile)
      return undefined
    }
    await entry.listener?.close()
    entry.listener = undefined
    entry.error = undefined
    this.portals.remove(profile.id)
    if (!profile.enabled) return undefined
    const kind = listenerKind(profile)
    if (!kind) {
      this.portals.apply(profile, entry.stats)
      this.#warnUnverified(profile)
      return undefined
    }
    const log = this.ctx.log.child({ proxy: profile.id })
    const ctx = { ...this.ctx, log }
    const listener =
      kind === 'tcp' ? new TcpListener(profile, entry.stats, ctx) : new UdpListener(profile, entry.stats, ctx)
    try {
      await listener.listen()
    } catch (err) {
      entry.error = listenError(err as NodeJS.ErrnoException, profile)
      entry.stats.error(entry.error)
      log.error(`proxy ${profile.id}: ${entry.error}`)
      return entry.error
    }
    entry.listener = listener
    this.#warnUnverified(profile)
    log.info(`proxy ${profile.id} (${profile.protocol}) listening on port ${listener.port}`)
    return undefined
  }

  #warnUnverified(profile: ProxyProfile): void {
    if (profile.target.tls && profile.target.verify === false) {
      this.ctx.log.warn(`proxy ${profile.id}: TLS to the target without certificate verification`)
    }
  }

  /** Closes the listener and connections of profile `id` and forgets it. */
  async remove(id: string): Promise<void> {
    const entry = this.#entries.get(id)
    this.#entries.delete(id)
    this.portals.remove(id)
    await entry?.listener?.close()
  }

  /** Live status of profile `id`. */
  status(id: string): ProxyStatus {
    const entry = this.#entries.get(id)
    if (!entry) return new ProxyStats().view(false)
    const portal = this.portals.get(id)
    if (portal)
      return {
        ...entry.stats.view(true, undefined, undefined, livePortalBytes(portal)),
        portal: { label: portal.label },
      }
    return entry.stats.view(
      entry.listener !== undefined,
      entry.listener?.port,
      entry.error,
      entry.listener?.liveBytes(),
    )
  }

  /** Every profile's id, protocol and stats, for metrics. */
  *entries(): Iterable<{ id: string; protocol: string; stats: ProxyStats; listening: boolean }> {
    for (const [id, e] of this.#entries) {
      const listening = e.listener !== undefined || this.portals.get(id) !== undefined
      yield { id, protocol: e.profile.protocol, stats: e.stats, listening }
    }
  }

  /** Closes every listener and portal (relay shutdown). */
  async closeAll(): Promise<void> {
    await Promise.all([...this.#entries.keys()].map((id) => this.remove(id)))
    this.portals.closeAll()
  }
}
