/**
 * A wake-up signal for a loop that waits on several event sources. Waiting is race-free: a loop notes the
 * `generation` before it looks for work and waits `after` it, so a notify that came in between is not lost.
 */
export class Wakeup {
  #generation = 0
  #waiters: Array<() => void> = []

  /** Counts notifications; compare to tell whether one came since. */
  get generation(): number {
    return this.#generation
  }

  /** Wakes every waiter. */
  notify(): void {
    this.#generation++
    for (const resolve of this.#waiters.splice(0)) resolve()
  }

  /** Resolves at the first notify after `generation` was read (at once if one came already). */
  after(generation: number): Promise<void> {
    if (this.#generation !== generation) return Promise.resolve()
    return new Promise((resolve) => this.#waiters.push(resolve))
  }

  /** Resolves after `ms`, or earlier at a notify. */
  async sleep(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      this.after(this.#generation),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, ms)
      }),
    ])
    clearTimeout(timer)
  }
}
