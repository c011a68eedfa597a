/**
 * Recent call results per endpoint. Kept in memory only (the last 100 per endpoint): they are a debugging aid,
 * lost on restart, and never worth a disk write per call.
 */
import type { CallLogEntry } from './schemas.ts'

export const CALL_LOG_SIZE = 100

export class CallLog {
  readonly #entries = new Map<string, CallLogEntry[]>()

  constructor(readonly size = CALL_LOG_SIZE) {}

  /** Records a result, dropping the oldest beyond `size`. */
  add(key: string, entry: CallLogEntry): void {
    let list = this.#entries.get(key)
    if (!list) {
      list = []
      this.#entries.set(key, list)
    }
    list.push(entry)
    if (list.length > this.size) list.splice(0, list.length - this.size)
  }

  /** The endpoint's results, newest first. */
  list(key: string): CallLogEntry[] {
    return [...(this.#entries.get(key) ?? [])].reverse()
  }

  /** Forgets an endpoint's results (it was deleted). */
  drop(key: string): void {
    this.#entries.delete(key)
  }
}
