/** Live statistics of one proxy profile, shown in the API and exported as Prometheus metrics. */
import type { ProxyStatus } from './schemas.ts'

export class ProxyStats {
  active = 0
  total = 0
  rejected = 0
  rxBytes = 0
  txBytes = 0
  /** UDP: datagrams dropped on the way to the target (congested tunnel, full queue), as a router would. */
  droppedDatagrams = 0
  lastError?: { message: string; ts: number }

  /** Records a failure shown as `last_error`. */
  error(message: string): void {
    this.lastError = { message, ts: Date.now() }
  }

  /** Records a refused connection (source.allow, maxConnections, the target or the agent). */
  reject(message: string): void {
    this.rejected++
    this.error(message)
  }

  /** The status block of the API view. */
  view(listening: boolean, port?: number, error?: string, live = { rx: 0, tx: 0 }): ProxyStatus {
    return {
      listening,
      ...(port !== undefined ? { port } : {}),
      ...(error ? { error } : {}),
      active_connections: this.active,
      total_connections: this.total,
      rejected_connections: this.rejected,
      rx_bytes: this.rxBytes + live.rx,
      tx_bytes: this.txBytes + live.tx,
      dropped_datagrams: this.droppedDatagrams,
      ...(this.lastError ? { last_error: this.lastError } : {}),
    }
  }
}
