/** Live statistics of one proxy profile. */
import type { ProxyStatus } from './schemas.ts'

export class ProxyStats {
  active = 0
  total = 0
  rxBytes = 0
  txBytes = 0
  lastError?: { message: string; ts: number }

  /** Records a failure shown as `last_error`. */
  error(message: string): void {
    this.lastError = { message, ts: Date.now() }
  }

  /** The status block of the API view. */
  view(listening: boolean, port?: number, error?: string): ProxyStatus {
    return {
      listening,
      ...(port !== undefined ? { port } : {}),
      ...(error ? { error } : {}),
      active_connections: this.active,
      total_connections: this.total,
      rx_bytes: this.rxBytes,
      tx_bytes: this.txBytes,
      ...(this.lastError ? { last_error: this.lastError } : {}),
    }
  }
}
