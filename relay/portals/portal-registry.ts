/** The live http-iotmp profiles, by id and by portal label, each with its pool of tunnel streams. */
import type { Duplex } from 'node:stream'
import type { TunnelStream } from '../../protocol/tunnel-stream.ts'
import type { ProxyContext } from '../proxies/proxy-context.ts'
import type { ProxyStats } from '../proxies/proxy-stats.ts'
import type { ProxyProfile } from '../proxies/schemas.ts'
import { SourceGuard } from '../proxies/source-guard.ts'
import { openTcpUpstream } from '../proxies/tcp-upstream.ts'
import { portalLabel } from './portal-label.ts'
import { TunnelAgent } from './tunnel-agent.ts'

/** One served portal. */
export interface Portal {
  profile: ProxyProfile & { target: { type: 'device' } }
  label: string
  stats: ProxyStats
  guard: SourceGuard
  /** Keep-alive pool for plain requests. */
  agent: TunnelAgent
  /** A fresh stream to the device's web server (WebSocket upgrades take one each). */
  open(): Promise<Duplex>
  /** Every open stream, pooled or not; closed when the profile changes or goes. */
  streams: Set<Duplex>
}

export class PortalRegistry {
  readonly #byId = new Map<string, Portal>()
  readonly #byLabel = new Map<string, Portal>()

  constructor(readonly ctx: ProxyContext) {}

  /** The portal label of a device-target profile. */
  static label(profile: ProxyProfile): string | undefined {
    const { target } = profile
    return target.type === 'device' ? portalLabel(profile.id, target.user, target.device) : undefined
  }

  /** Serves `profile` (replacing its previous version: pooled streams to the old target are closed). */
  apply(profile: ProxyProfile, stats: ProxyStats): void {
    this.remove(profile.id)
    const { target } = profile
    if (target.type !== 'device') return
    const device = { ...profile, target }
    const streams = new Set<Duplex>()
    const open = async (): Promise<Duplex> => {
      const stream = (await openTcpUpstream(profile, this.ctx)) as TunnelStream
      stats.total++
      stats.active++
      streams.add(stream)
      stream.once('close', () => {
        streams.delete(stream)
        stats.active--
        stats.rxBytes += stream.bytesSent ?? 0
        stats.txBytes += stream.bytesReceived ?? 0
      })
      return stream
    }
    const label = portalLabel(profile.id, target.user, target.device)
    const portal: Portal = {
      profile: device,
      label,
      stats,
      guard: new SourceGuard(profile.source),
      agent: new TunnelAgent(open),
      open,
      streams,
    }
    this.#byId.set(profile.id, portal)
    this.#byLabel.set(label, portal)
  }

  /** Stops serving profile `id` and closes its pooled streams. */
  remove(id: string): void {
    const portal = this.#byId.get(id)
    if (!portal) return
    this.#byId.delete(id)
    this.#byLabel.delete(portal.label)
    portal.agent.destroy()
    for (const stream of portal.streams) stream.destroy()
  }

  get(id: string): Portal | undefined {
    return this.#byId.get(id)
  }

  byLabel(label: string): Portal | undefined {
    return this.#byLabel.get(label)
  }

  closeAll(): void {
    for (const id of [...this.#byId.keys()]) this.remove(id)
  }
}
