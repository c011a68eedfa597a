/** Events per second over a sliding window, from a running total sampled as it grows. */
export class RateMeter {
  readonly #windowMs: number
  readonly #samples: Array<{ at: number; total: number }> = []

  /** `windowMs`: how far back the rate looks (default 10 s). */
  constructor(windowMs = 10_000) {
    this.#windowMs = windowMs
  }

  /** Records that the running total is `total` at `at` (ms). */
  sample(total: number, at: number): void {
    this.#samples.push({ at, total })
    this.#trim(at)
  }

  /** Average events per second within the window ending at `now`; 0 without two samples in it. */
  perSecond(now: number): number {
    this.#trim(now)
    const first = this.#samples[0]
    const last = this.#samples[this.#samples.length - 1]
    if (!first || !last || last.at === first.at) return 0
    // Measured up to now, not to the last sample: a stalled flow decays to 0 instead of freezing.
    return ((last.total - first.total) * 1000) / Math.max(now - first.at, 1)
  }

  #trim(now: number): void {
    // Keep one sample older than the window: it is the baseline of the totals inside it.
    while (this.#samples.length > 2 && (this.#samples[1] as { at: number }).at < now - this.#windowMs) {
      this.#samples.shift()
    }
  }
}
