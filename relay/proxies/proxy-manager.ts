/** Runs the listeners of the proxy profiles: opens, moves and closes them live as profiles change. */
import type { Logger } from 'pino'
import type { AgentHub } from '../hub/agent-hub.ts'
import { ProxyStats } from './proxy-stats.ts'
import type { ProxyProfile, ProxyStatus } from './schemas.ts'
import { TcpIotmpListener } from './tcp-iotmp-listener.ts'

interface Entry {
  profile: ProxyProfile
  stats: ProxyStats
  listener?: TcpIotmpListener
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

export class ProxyManager {
  readonly #entries = new Map<string, Entry>()

  constructor(
    readonly hub: AgentHub,
    readonly log: Logger,
  ) {}

  /** Starts, restarts or stops the listener of `profile`; resolves with the listen error text, if any. */
  async apply(profile: ProxyProfile): Promise<string | undefined> {
    const entry = this.#entries.get(profile.id) ?? { profile, stats: new ProxyStats() }
    this.#entries.set(profile.id, entry)
    await entry.listener?.close()
    entry.listener = undefined
    entry.error = undefined
    entry.profile = profile
    if (!profile.enabled) return undefined
    const listener = new TcpIotmpListener(
      profile,
      this.hub,
      entry.stats,
      this.log.child({ proxy: profile.id }),
    )
    try {
      await listener.listen()
    } catch (err) {
      entry.error = listenError(err as NodeJS.ErrnoException, profile)
      entry.stats.error(entry.error)
      this.log.error(`proxy ${profile.id}: ${entry.error}`)
      return entry.error
    }
    entry.listener = listener
    this.log.info(`proxy ${profile.id} (${profile.protocol}) listening on port ${listener.port}`)
    return undefined
  }

  /** Closes the listener and connections of profile `id` and forgets it. */
  async remove(id: string): Promise<void> {
    const entry = this.#entries.get(id)
    this.#entries.delete(id)
    await entry?.listener?.close()
  }

  /** Live status of profile `id`. */
  status(id: string): ProxyStatus {
    const entry = this.#entries.get(id)
    if (!entry) return new ProxyStats().view(false)
    return entry.stats.view(entry.listener !== undefined, entry.listener?.port, entry.error)
  }

  /** Closes every listener (relay shutdown). */
  async closeAll(): Promise<void> {
    await Promise.all([...this.#entries.keys()].map((id) => this.remove(id)))
  }
}
