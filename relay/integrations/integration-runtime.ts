/** One running integration: its config, transport (mqtt/tcp/udp), pending HTTP downlinks and counters. */
import type { Transport } from '../../integrations/transport.ts'
import { DownlinkQueue } from './downlink-queue.ts'
import type { IntegrationRecord, IntegrationStatus } from './schemas.ts'

/** Pending downlinks kept per HTTP device unless the integration says otherwise. */
export const DEFAULT_DOWNLINK_QUEUE = 100

export class IntegrationRuntime {
  transport?: Transport
  readonly queue: DownlinkQueue
  uplinks = 0
  errors = 0
  downlinks = 0
  lastError?: { ts: number; message: string }
  lastUplinkTs?: number
  /** Set when the transport could not start. */
  startError?: string

  constructor(readonly record: IntegrationRecord) {
    const size = record.type === 'http' ? record.http?.downlinkQueueSize : undefined
    this.queue = new DownlinkQueue(size ?? DEFAULT_DOWNLINK_QUEUE)
  }

  get key(): string {
    return `${this.record.user}/${this.record.id}`
  }

  get enabled(): boolean {
    return this.record.enabled !== false
  }

  /** Counts a failure and keeps it as the last error. */
  failed(message: string): void {
    this.errors++
    this.lastError = { ts: Date.now(), message }
  }

  /** Live status for the API. */
  status(httpUrl?: string, agentOnline?: boolean): IntegrationStatus {
    const transport = this.transport?.status()
    const state = !this.enabled
      ? 'disabled'
      : this.startError
        ? 'error'
        : this.record.runOn
          ? 'remote'
          : (transport?.state ?? 'running')
    return {
      state,
      ...(this.startError || transport?.error ? { error: this.startError ?? transport?.error } : {}),
      ...(transport?.port !== undefined ? { port: transport.port } : {}),
      ...(httpUrl ? { url: httpUrl } : transport?.url ? { url: transport.url } : {}),
      ...(transport?.connections !== undefined ? { connections: transport.connections } : {}),
      uplinks: this.uplinks,
      errors: this.errors,
      downlinks: this.downlinks,
      downlinks_pending: this.queue.size(),
      downlinks_dropped: this.queue.dropped,
      ...(this.lastError ? { last_error: this.lastError } : {}),
      ...(this.lastUplinkTs ? { last_uplink_ts: this.lastUplinkTs } : {}),
      ...(agentOnline !== undefined ? { agent_online: agentOnline } : {}),
    }
  }
}
