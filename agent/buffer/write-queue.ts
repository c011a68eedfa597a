/**
 * The buffer's single writer: changes run one batch at a time, in arrival order. Appends waiting together
 * (queued while a batch is being written, or within one event-loop turn) are handed over as one group and
 * written in one batch: group commit, one fsync for all of them. Acknowledgements waiting together merge into
 * one (the highest seq covers the others).
 */
import type { AppendResult } from './data-buffer.ts'
import type { RecordInput } from './records.ts'

/** The batch writers the queue drives; `append` answers per op a result or the error to reject it with. */
export interface Committers {
  append(ops: Array<{ inputs: RecordInput[] }>): Promise<Array<AppendResult | Error | undefined>>
  ack(seq: number): Promise<number>
  poison(seq: number, counter: PoisonCounter): Promise<boolean>
  expire(): Promise<number>
}

/** What a deleted single record is counted as: refused by the relay, or unreadable on disk. */
export type PoisonCounter = 'poisoned' | 'corrupted'

type Settle<T> = { resolve: (value: T) => void; reject: (err: unknown) => void }
type Op =
  | ({ kind: 'append'; inputs: RecordInput[] } & Settle<AppendResult>)
  | ({ kind: 'ack'; seq: number } & Settle<number>)
  | ({ kind: 'poison'; seq: number; counter: PoisonCounter } & Settle<boolean>)
  | ({ kind: 'expire' } & Settle<number>)

/** Records per append group at most: bounds one batch's memory after a burst of appends. */
const MAX_GROUP_RECORDS = 20_000

export class WriteQueue {
  readonly #commit: Committers
  readonly #ops: Op[] = []
  #running = false
  #idle: Array<() => void> = []

  constructor(commit: Committers) {
    this.#commit = commit
  }

  /** Queues an append; resolves with its seqs once its batch is written. */
  append(inputs: RecordInput[]): Promise<AppendResult> {
    return new Promise((resolve, reject) => this.#push({ kind: 'append', inputs, resolve, reject }))
  }

  /** Queues the deletion of every record up to `seq`. */
  ack(seq: number): Promise<number> {
    return new Promise((resolve, reject) => this.#push({ kind: 'ack', seq, resolve, reject }))
  }

  /** Queues the deletion of one refused (or unreadable) record. */
  poison(seq: number, counter: PoisonCounter = 'poisoned'): Promise<boolean> {
    return new Promise((resolve, reject) => this.#push({ kind: 'poison', seq, counter, resolve, reject }))
  }

  /** Queues one expiry step. */
  expire(): Promise<number> {
    return new Promise((resolve, reject) => this.#push({ kind: 'expire', resolve, reject }))
  }

  /** Resolves once everything queued so far is written (or failed). */
  idle(): Promise<void> {
    if (!this.#running) return Promise.resolve()
    return new Promise((resolve) => this.#idle.push(resolve))
  }

  #push(op: Op): void {
    this.#ops.push(op)
    if (this.#running) return
    this.#running = true
    // One turn's grace: appends made in the same poll phase (a burst of MQTT messages) share the first batch.
    setImmediate(() => void this.#drain())
  }

  async #drain(): Promise<void> {
    while (this.#ops.length > 0) {
      const head = this.#ops[0] as Op
      if (head.kind === 'append') await this.#appends()
      else if (head.kind === 'ack') await this.#acks()
      else {
        this.#ops.shift()
        const run =
          head.kind === 'poison' ? this.#commit.poison(head.seq, head.counter) : this.#commit.expire()
        await (run as Promise<never>).then(head.resolve, head.reject)
      }
    }
    this.#running = false
    for (const resolve of this.#idle.splice(0)) resolve()
  }

  async #appends(): Promise<void> {
    const group: Array<Extract<Op, { kind: 'append' }>> = []
    let records = 0
    while (this.#ops[0]?.kind === 'append' && (group.length === 0 || records < MAX_GROUP_RECORDS)) {
      const op = this.#ops.shift() as Extract<Op, { kind: 'append' }>
      group.push(op)
      records += op.inputs.length
    }
    try {
      const results = await this.#commit.append(group)
      group.forEach((op, i) => {
        const result = results[i]
        if (result instanceof Error || result === undefined) op.reject(result ?? new Error('append lost'))
        else op.resolve(result)
      })
    } catch (err) {
      for (const op of group) op.reject(err)
    }
  }

  async #acks(): Promise<void> {
    const group: Array<Extract<Op, { kind: 'ack' }>> = []
    while (this.#ops[0]?.kind === 'ack') group.push(this.#ops.shift() as Extract<Op, { kind: 'ack' }>)
    const seq = Math.max(...group.map((op) => op.seq))
    try {
      const deleted = await this.#commit.ack(seq)
      for (const op of group) op.resolve(deleted)
    } catch (err) {
      for (const op of group) op.reject(err)
    }
  }
}
