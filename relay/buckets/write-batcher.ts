/**
 * Group commit for point writes: writes that arrive while the store is busy (or within the same event-loop turn)
 * go to the store as one batch, and each caller resolves only once its batch is written. One batch is in flight
 * at a time, so writes land in arrival order and the last write of a ts wins.
 */
import type { PointWrite } from './points-store.ts'

interface Pending {
  write: PointWrite
  resolve: () => void
  reject: (err: unknown) => void
}

export class WriteBatcher {
  readonly #flush: (writes: PointWrite[]) => Promise<void>
  readonly #maxPoints: number
  readonly #queue: Pending[] = []
  #running = false

  /** `flush` writes one batch; a batch takes whole writes until it holds at least `maxPoints` points. */
  constructor(flush: (writes: PointWrite[]) => Promise<void>, maxPoints = 10_000) {
    this.#flush = flush
    this.#maxPoints = maxPoints
  }

  /** Queues a write; resolves once the batch holding it is written, rejects if that batch failed. */
  write(write: PointWrite): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ write, resolve, reject })
      if (!this.#running) {
        this.#running = true
        // Wait one turn: requests parsed in the same poll phase share the first batch.
        setImmediate(() => void this.#drain())
      }
    })
  }

  /** Resolves once every write queued before this call has been written (or has failed). */
  barrier(): Promise<void> {
    return this.write({ user: '', bucket: '', points: [] }).catch(() => {})
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      let taken = 0
      let points = 0
      while (taken < this.#queue.length && points < this.#maxPoints) {
        points += (this.#queue[taken] as Pending).write.points.length
        taken++
      }
      const batch = this.#queue.splice(0, taken)
      try {
        await this.#flush(batch.map((p) => p.write))
        for (const p of batch) p.resolve()
      } catch (err) {
        for (const p of batch) p.reject(err)
      }
    }
    this.#running = false
  }
}
