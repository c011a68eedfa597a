/**
 * The forwarder: while the relay link is up, sends buffered records oldest first as RUN `$data` batches (DESIGN.md,
 * "Data uplink"), several in flight, and deletes them once the relay acknowledges `{ack}`, which it answers only
 * after a durable write. After a link loss it starts again from the oldest unacknowledged record; the relay
 * ignores what it already stored, so a redelivery never duplicates.
 *
 * Each batch carries `{epoch, after}`: the buffer's incarnation and the last seq sent before it in this run
 * (absent for a run's first batch, which starts at the oldest unacknowledged record). The relay answers ERROR
 * when `after` is beyond what it has stored (an earlier batch failed), so it never stores past a gap; an OK is
 * then proof that every earlier record is stored too, and records up to `ack` can go.
 *
 * A failed batch ends the run. A transient failure (relay ERROR other than BAD_ENCODING, timeout) is retried
 * after a backoff. A permanent one (relay ERROR BAD_ENCODING, or a frame too large for the relay's cap) must not
 * wedge the queue: the failed batch is resent in halves until the single offending record is found, which is
 * deleted and counted in `poisoned`. The relay itself acknowledges a record it finds invalid (counting it as
 * rejected on its side), so poisoning only happens with an incompatible relay or an oversized record.
 */
import type { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import { RemoteError, TetherProtocolError } from '../../protocol/errors.ts'
import { type ConnectOkParams, MAX_FRAME_BYTES, WireErrorCode } from '../../protocol/messages.ts'
import type { Session } from '../../protocol/session.ts'
import { Backoff } from '../link/backoff.ts'
import type { DataBuffer } from './data-buffer.ts'
import type { DataRecord } from './records.ts'
import { Wakeup } from './wakeup.ts'

/** The RUN resource of the data uplink. */
export const DATA_RESOURCE = '$data'
/** Room left in a frame for the message envelope and per-record msgpack overhead. */
const FRAME_MARGIN_BYTES = 4096

/** What the forwarder needs of the relay link: its open session and `connected` (session, CONNECT OK). */
export interface ForwardLink extends EventEmitter {
  readonly session: Session | undefined
}

export interface ForwarderOptions {
  buffer: DataBuffer
  link: ForwardLink
  log: Logger
  /** Records per batch at most (default 500). */
  maxBatchRecords?: number
  /** Stored bytes per batch at most (default 256 KiB; never more than the relay's frame cap allows). */
  maxBatchBytes?: number
  /** Batches awaiting their acknowledgement at most (default 4). */
  maxInFlight?: number
  /** How long a batch may wait for its reply (default 30 s). */
  requestTimeoutMs?: number
  /** Delays between retries after a transient failure (default 0.5 s doubling to 30 s, full jitter). */
  backoff?: Backoff
}

/** Forwarding figures, for DESCRIBE and logs. */
export interface ForwarderStats {
  inFlight: number
  batchesSent: number
  batchesFailed: number
  lastError?: string
}

interface Failure {
  err: Error
  first: number
  last: number
  count: number
}

export class Forwarder {
  readonly #buffer: DataBuffer
  readonly #link: ForwardLink
  readonly #log: Logger
  readonly #maxRecords: number
  readonly #maxBytes: number
  readonly #maxInFlight: number
  readonly #timeoutMs: number
  readonly #backoff: Backoff
  /** Work to look at: appends, replies, link changes, stop. */
  readonly #work = new Wakeup()
  /** Ends a backoff early: link changes and stop only. */
  readonly #control = new Wakeup()
  #maxFrameBytes = MAX_FRAME_BYTES
  /** Set while a permanently refused batch is being narrowed down to its offending record. */
  #isolate?: { untilSeq: number; maxRecords: number }
  #loop?: Promise<void>
  #stopped = false
  #inFlight = 0
  #sent = 0
  #failed = 0
  #lastError?: string

  constructor(opts: ForwarderOptions) {
    this.#buffer = opts.buffer
    this.#link = opts.link
    this.#log = opts.log
    this.#maxRecords = opts.maxBatchRecords ?? 500
    this.#maxBytes = opts.maxBatchBytes ?? 256 * 1024
    this.#maxInFlight = opts.maxInFlight ?? 4
    this.#timeoutMs = opts.requestTimeoutMs ?? 30_000
    this.#backoff = opts.backoff ?? new Backoff({ capMs: 30_000 })
  }

  /** Starts forwarding whenever the link is up; returns at once. */
  start(): void {
    if (this.#loop) return
    this.#link.on('connected', this.#onConnected)
    this.#link.on('disconnected', this.#onControl)
    this.#buffer.on('appended', this.#onWork)
    this.#loop = this.#run()
  }

  /** Stops sending; resolves once every batch in flight is settled (close the link to settle them at once). */
  async stop(): Promise<void> {
    this.#stopped = true
    this.#link.off('connected', this.#onConnected)
    this.#link.off('disconnected', this.#onControl)
    this.#buffer.off('appended', this.#onWork)
    this.#onControl()
    await this.#loop
  }

  /** Current figures. */
  stats(): ForwarderStats {
    return {
      inFlight: this.#inFlight,
      batchesSent: this.#sent,
      batchesFailed: this.#failed,
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }),
    }
  }

  readonly #onWork = () => this.#work.notify()
  readonly #onControl = () => {
    this.#control.notify()
    this.#work.notify()
  }
  readonly #onConnected = (_session: Session, ok?: ConnectOkParams) => {
    if (ok?.maxFrame) this.#maxFrameBytes = ok.maxFrame
    this.#onControl()
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const generation = this.#work.generation
      const session = this.#link.session
      if (!session) {
        await this.#work.after(generation)
        continue
      }
      const failure = await this.#pump(session)
      if (!failure || this.#stopped || !session.isOpen) continue // link lost: it reconnects with its own backoff
      if (isPermanent(failure.err)) {
        await this.#narrow(failure)
        continue
      }
      const delayMs = this.#backoff.next()
      this.#log.warn(
        { err: failure.err.message, seq: failure.first, attempt: this.#backoff.attempt, delayMs },
        `relay did not store a data batch; resending from the oldest unacknowledged record in ${delayMs} ms`,
      )
      await this.#control.sleep(delayMs)
    }
  }

  /** Sends batches over one session until it closes, the forwarder stops or a batch fails; the first failure. */
  async #pump(session: Session): Promise<Failure | undefined> {
    const inFlight = new Set<Promise<void>>()
    const run: { failure?: Failure } = {}
    let cursor: number | undefined
    const onClose = () => this.#work.notify()
    session.once('close', onClose)
    try {
      while (!this.#stopped && session.isOpen && !run.failure) {
        const generation = this.#work.generation
        if (inFlight.size >= this.#maxInFlight) {
          await this.#work.after(generation)
          continue
        }
        const batch = await this.#buffer.read(cursor, this.#batchRecords(cursor), this.#batchBytes())
        if (this.#stopped || !session.isOpen || run.failure) break
        if (batch.records.length === 0) {
          await this.#work.after(generation)
          continue
        }
        const sent: Promise<void> = this.#send(session, batch.records, cursor, run).finally(() => {
          inFlight.delete(sent)
          this.#work.notify()
        })
        inFlight.add(sent)
        cursor = (batch.records[batch.records.length - 1] as DataRecord).seq
      }
    } catch (err) {
      // The buffer closed under us (agent stopping) or could not be read: end this run like a failed batch.
      if (!this.#stopped) run.failure ??= { err: err as Error, first: (cursor ?? 0) + 1, last: 0, count: 0 }
    } finally {
      session.off('close', onClose)
    }
    await Promise.all(inFlight)
    return run.failure
  }

  /** Sends one batch and applies its acknowledgement; a failure is kept if it is the earliest of the run. */
  async #send(
    session: Session,
    records: DataRecord[],
    after: number | undefined,
    run: { failure?: Failure },
  ) {
    const first = (records[0] as DataRecord).seq
    const last = (records[records.length - 1] as DataRecord).seq
    const params = after === undefined ? { epoch: this.#buffer.epoch } : { epoch: this.#buffer.epoch, after }
    this.#inFlight++
    this.#sent++
    try {
      const reply = (await session.run(DATA_RESOURCE, records, params, this.#timeoutMs)) as { ack?: unknown }
      if (reply?.ack !== last)
        throw new Error(`relay acknowledged ${JSON.stringify(reply?.ack)}, not ${last}`)
      this.#backoff.reset()
      if (this.#isolate && last >= this.#isolate.untilSeq) this.#isolate = undefined
      await this.#buffer.ack(last)
    } catch (err) {
      this.#failed++
      this.#lastError = (err as Error).message
      if (!run.failure || first < run.failure.first) {
        run.failure = { err: err as Error, first, last, count: records.length }
      }
    } finally {
      this.#inFlight--
    }
  }

  /** A permanently refused batch: resend it in halves; a single refused record is dropped as poisoned. */
  async #narrow(failure: Failure): Promise<void> {
    if (failure.count > 1) {
      const maxRecords = Math.max(1, Math.floor(failure.count / 2))
      this.#isolate = { untilSeq: Math.max(failure.last, this.#isolate?.untilSeq ?? 0), maxRecords }
      this.#log.info({ seq: failure.first, maxRecords }, `relay refused a data batch: ${failure.err.message}`)
      return
    }
    // Found it: back to full batches (another bad record in the same stretch is narrowed down again).
    this.#isolate = undefined
    const dropped = await this.#buffer.dropPoisoned(failure.first).catch(() => false)
    if (dropped) {
      this.#log.error(
        { seq: failure.first, err: failure.err.message },
        'relay refuses a buffered record for good: dropped it (counted in poisoned)',
      )
    }
  }

  #batchRecords(cursor: number | undefined): number {
    const iso = this.#isolate
    return iso && (cursor ?? 0) < iso.untilSeq ? iso.maxRecords : this.#maxRecords
  }

  #batchBytes(): number {
    return Math.max(1, Math.min(this.#maxBytes, this.#maxFrameBytes - FRAME_MARGIN_BYTES))
  }
}

/** Whether resending the same batch can never succeed. */
function isPermanent(err: Error): boolean {
  if (err instanceof RemoteError) return err.wireCode === WireErrorCode.BAD_ENCODING
  return err instanceof TetherProtocolError && err.code === 'TETHER_ERR_FRAME_TOO_LARGE'
}
