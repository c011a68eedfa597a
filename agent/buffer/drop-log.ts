/** Logs drops at most once per period with the count since the last line: a full buffer drops on every append. */
import type { Logger } from 'pino'

export class DropLog {
  readonly #log?: Logger
  readonly #everyMs: number
  readonly #now: () => number
  #unlogged = 0
  #loggedAt = 0

  /** `everyMs`: the shortest gap between two lines (default 10 s). */
  constructor(log: Logger | undefined, now: () => number, everyMs = 10_000) {
    this.#log = log
    this.#now = now
    this.#everyMs = everyMs
  }

  /** Counts `count` more drops (`total` since the buffer was created); logs if the period has passed. */
  add(count: number, total: number): void {
    this.#unlogged += count
    if (this.#now() - this.#loggedAt >= this.#everyMs) this.flush(total)
  }

  /** Logs the drops not logged yet, now. */
  flush(total: number): void {
    if (this.#unlogged === 0) return
    this.#log?.warn(
      { dropped: this.#unlogged, total, policy: 'drop-oldest' },
      `buffer full: dropped the ${this.#unlogged} oldest record(s)`,
    )
    this.#unlogged = 0
    this.#loggedAt = this.#now()
  }
}
