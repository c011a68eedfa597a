/**
 * Host-side deadlines over isolated-vm's promises. isolated-vm enforces each call's timeout itself, but a thread
 * stuck in a builtin that ignores termination never answers: the watchdog then gives up on the isolate, and a
 * catastrophic error reported by isolated-vm does the same. Either way every promise in flight on that isolate
 * is rejected with IsolateLost, so no caller waits forever.
 */

/** The isolate went away under a promise; `running`: it was the oldest in flight (the one executing). */
export class IsolateLost extends Error {
  constructor(
    readonly code: 'timeout' | 'memory',
    message: string,
    readonly running: boolean,
  ) {
    super(message)
  }
}

// Beyond isolated-vm's own deadline: time for a terminated script to unwind.
const GRACE_MS = 2000

export class Watchdog {
  // Rejecters of the promises in flight, oldest first.
  readonly #aborts = new Set<(err: IsolateLost) => void>()
  readonly #onExpired: (limitMs: number) => void

  /** `onExpired` runs when a promise outlives its limit (plus a grace period); it should call `abortAll`. */
  constructor(onExpired: (limitMs: number) => void) {
    this.#onExpired = onExpired
  }

  /** Awaits `p`, or rejects with IsolateLost when the isolate is given up (`abortAll`). */
  guard<T>(p: Promise<T>, limitMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer)
        this.#aborts.delete(abort)
      }
      const abort = (err: IsolateLost) => {
        done()
        reject(err)
      }
      const timer = setTimeout(() => this.#onExpired(limitMs), limitMs + GRACE_MS)
      this.#aborts.add(abort)
      p.then(
        (v) => {
          done()
          resolve(v)
        },
        (e) => {
          done()
          reject(e)
        },
      )
    })
  }

  /** Rejects every promise in flight: the oldest as the one that was running, the others as never run. */
  abortAll(code: 'timeout' | 'memory', message: string): void {
    let running = true
    for (const abort of [...this.#aborts]) {
      abort(new IsolateLost(code, message, running))
      running = false
    }
  }
}
