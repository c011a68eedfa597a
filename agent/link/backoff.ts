/**
 * Reconnect delays for the relay link: exponential backoff with full jitter, 0.5 s up to 60 s, reset after a
 * link stays up 30 s (DESIGN.md, "Reconnect"). Full jitter spreads a fleet of agents that lost the relay at the
 * same moment, so they do not all come back in lockstep.
 */

/** Tuning and injectable clock/randomness (tests pass fakes; production uses Math.random and Date.now). */
export interface BackoffOptions {
  baseMs?: number
  capMs?: number
  resetAfterMs?: number
  random?: () => number
  now?: () => number
}

/** Counts reconnect attempts and hands out the delay before each one. */
export class Backoff {
  readonly #baseMs: number
  readonly #capMs: number
  readonly #resetAfterMs: number
  readonly #random: () => number
  readonly #now: () => number
  #attempt = 0
  #connectedAt: number | undefined

  /** Defaults: base 500 ms, cap 60 000 ms, reset after 30 000 ms up; throws RangeError on nonsensical options. */
  constructor(opts: BackoffOptions = {}) {
    this.#baseMs = opts.baseMs ?? 500
    this.#capMs = opts.capMs ?? 60_000
    this.#resetAfterMs = opts.resetAfterMs ?? 30_000
    this.#random = opts.random ?? Math.random
    this.#now = opts.now ?? Date.now
    if (!(Number.isFinite(this.#baseMs) && this.#baseMs >= 0)) {
      throw new RangeError('baseMs must be a finite number ≥ 0')
    }
    if (!(Number.isFinite(this.#capMs) && this.#capMs >= this.#baseMs)) {
      throw new RangeError('capMs must be a finite number ≥ baseMs')
    }
    if (!(Number.isFinite(this.#resetAfterMs) && this.#resetAfterMs >= 0)) {
      throw new RangeError('resetAfterMs must be a finite number ≥ 0')
    }
  }

  /** Delay before the next attempt, and counts the attempt. */
  next(): number {
    // 2^1024 is Infinity and 0·Infinity is NaN; clamping the exponent keeps the product a number for any attempt.
    const ceiling = Math.min(this.#capMs, this.#baseMs * 2 ** Math.min(this.#attempt, 1023))
    if (this.#attempt < Number.MAX_SAFE_INTEGER) this.#attempt++
    // A misbehaving random source must not produce a negative, oversized or NaN delay.
    const r = Math.min(1, Math.max(0, this.#random() || 0))
    return Math.round(r * ceiling)
  }

  /** Attempts since the last reset. */
  get attempt(): number {
    return this.#attempt
  }

  /** The link came up: remember when. */
  connected(): void {
    this.#connectedAt = this.#now()
  }

  /** The link went down: if it had been up >= resetAfterMs, start over from attempt 0. */
  disconnected(): void {
    // Only a link that stayed up counts as healthy; a relay that accepts and then drops at once keeps backing off.
    if (this.#connectedAt !== undefined && this.#now() - this.#connectedAt >= this.#resetAfterMs) this.reset()
    this.#connectedAt = undefined
  }

  /** Starts over from attempt 0. */
  reset(): void {
    this.#attempt = 0
  }
}
