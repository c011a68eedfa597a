/**
 * The store-and-forward buffer on its own LevelDB under the agent's state dir (DESIGN.md, "Storage").
 * Keys: `r!<seq as 16 hex digits>` → the msgpack record; `m!epoch`; `m!state` (last seq, depth, bytes, counters).
 * Every change goes through one write queue, one batch at a time: appends that arrive together share a batch
 * (group commit), and `m!state` is rewritten in the same atomic batch as the records it counts, so after any
 * crash the counters agree with the contents and a seq is never given out twice.
 */
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { mkdir } from 'node:fs/promises'
import { Level } from 'level'
import type { Logger } from 'pino'
import { type AppendOutcome, planAppends } from './append-plan.ts'
import { bufferError } from './buffer-errors.ts'
import { type BufferState, encodeState, restoreState } from './buffer-state.ts'
import type { AppendResult, BufferLimits, BufferStats, DataBuffer, ReadBatch } from './data-buffer.ts'
import { DropLog } from './drop-log.ts'
import { FrontReader, RECORDS_END, recordKey, seqOfKey } from './front-reader.ts'
import { RateMeter } from './rate-meter.ts'
import { checkInput, type DataRecord, decodeRecord, type RecordInput } from './records.ts'
import { type PoisonCounter, WriteQueue } from './write-queue.ts'

export interface LevelBufferOptions extends Partial<BufferLimits> {
  log?: Logger
  /** Largest stored record, bytes (default 256 KiB): a batch must fit in one IoTMP frame. */
  maxRecordBytes?: number
  /** How often records older than maxAgeDays are looked for (default 60 s). */
  expireEveryMs?: number
  /** The clock (tests move it). */
  now?: () => number
}

/** Defaults of the limits; the agent's config (agent/config.ts) repeats them in its schema. */
export const DEFAULT_LIMITS: BufferLimits = {
  maxBytes: 256 * 1024 * 1024,
  maxRecords: 1_000_000,
  policy: 'drop-oldest',
  sync: true,
}
/**
 * Largest stored record: the broker's and HTTP ingest's largest payload (256 KiB) plus room for the longest topic
 * (4,096 characters of UTF-8) and the other fields, so every payload a device may send can be stored.
 */
export const DEFAULT_MAX_RECORD_BYTES = 256 * 1024 + 20 * 1024
const DAY_MS = 86_400_000
/** Records expired per batch, so a long outage's backlog is trimmed in steps that let appends through. */
const EXPIRE_CHUNK = 10_000

/** A DataBuffer on LevelDB; open with `LevelBuffer.open`. */
export class LevelBuffer extends EventEmitter implements DataBuffer {
  readonly epoch: string
  readonly #db: Level<string, Buffer>
  readonly #limits: BufferLimits
  readonly #maxRecordBytes: number
  readonly #log?: Logger
  readonly #now: () => number
  readonly #expireEveryMs: number
  readonly #queue: WriteQueue
  readonly #rate = new RateMeter()
  readonly #drops: DropLog
  #state: BufferState
  #oldestTs: number | undefined
  /**
   * No record has a lower seq. Every iterator starts here: deleted keys stay in LevelDB as tombstones until a
   * compaction, and a scan from the start of the range would walk all of them (quadratic over a long forward).
   */
  #front = 1
  #writes = 0
  /** Unreadable records whose deletion is queued (a re-read meanwhile must not queue it twice). */
  readonly #corrupt = new Set<number>()
  #timer?: NodeJS.Timeout
  #closed?: Promise<void>

  private constructor(
    db: Level<string, Buffer>,
    epoch: string,
    state: BufferState,
    opts: LevelBufferOptions,
  ) {
    super()
    this.#db = db
    this.epoch = epoch
    this.#state = state
    const { log, maxRecordBytes, expireEveryMs, now, ...limits } = opts
    this.#limits = { ...DEFAULT_LIMITS, ...limits }
    this.#maxRecordBytes = maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES
    this.#log = log
    this.#now = now ?? Date.now
    this.#drops = new DropLog(log, this.#now)
    this.#queue = new WriteQueue({
      append: (ops) => this.#commitAppends(ops),
      ack: (seq) => this.#commitAck(seq),
      poison: (seq, counter) => this.#commitPoison(seq, counter),
      expire: () => this.#commitExpire(),
    })
    this.#expireEveryMs = expireEveryMs ?? 60_000
  }

  /** Opens (creating if needed) the buffer in `dir`, restores its seq and counters, expires old records. */
  static async open(dir: string, opts: LevelBufferOptions = {}): Promise<LevelBuffer> {
    await mkdir(dir, { recursive: true })
    const db = new Level<string, Buffer>(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' })
    try {
      await db.open()
    } catch (err) {
      // Most often another agent process holds the same state dir (LevelDB's LOCK).
      const why = (err as { cause?: Error }).cause?.message ?? (err as Error).message
      throw new Error(`cannot open the store-and-forward buffer in ${dir}: ${why}`, { cause: err })
    }
    try {
      let epoch = (await db.get('m!epoch'))?.toString()
      if (!epoch) {
        epoch = randomBytes(6).toString('hex')
        await db.put('m!epoch', Buffer.from(epoch), { sync: true } as object)
      }
      const buffer = new LevelBuffer(db, epoch, await restoreState(db), opts)
      await buffer.#refreshOldest() // from seq 1: the one scan over old tombstones, at open
      await buffer.#expireAll()
      if (buffer.#limits.maxAgeDays !== undefined) {
        buffer.#timer = setInterval(() => void buffer.#expireAll(), buffer.#expireEveryMs)
        buffer.#timer.unref()
      }
      return buffer
    } catch (err) {
      await db.close()
      throw err
    }
  }

  /** Appends in order; resolves with the seqs once durable (DataBuffer.append). */
  append(records: RecordInput | RecordInput[]): Promise<AppendResult> {
    const inputs = Array.isArray(records) ? records : [records]
    if (this.#closed) return Promise.reject(bufferError('TETHER_ERR_BUFFER_CLOSED'))
    if (inputs.length === 0) return Promise.resolve({ first: this.#state.seq + 1, last: this.#state.seq })
    return this.#queue.append(inputs)
  }

  /**
   * Records after `afterSeq`, oldest first, within both limits but at least one. A record that cannot be read back
   * (damaged on disk) is skipped, logged, and deleted counted as `corrupted`: one bad record must not wedge the
   * queue, and the relay accepts the gap in seqs (as after a poisoned record).
   */
  async read(afterSeq: number | undefined, maxRecords: number, maxBytes: number): Promise<ReadBatch> {
    if (this.#closed) throw bufferError('TETHER_ERR_BUFFER_CLOSED')
    const from = Math.max(this.#front, (afterSeq ?? 0) + 1)
    // No `limit`: skipped records must not use up the batch.
    const it = this.#db.iterator({ gte: recordKey(from), lt: RECORDS_END })
    const batch: ReadBatch = { records: [], bytes: 0 }
    try {
      for (;;) {
        const entries = await it.nextv(Math.min(256, maxRecords - batch.records.length))
        if (entries.length === 0) return batch
        for (const [key, value] of entries) {
          const record = readStored(key, value)
          if (!record) {
            this.#dropCorrupt(seqOfKey(key), value.length)
            continue
          }
          if (batch.records.length > 0 && batch.bytes + value.length > maxBytes) return batch
          batch.records.push(record)
          batch.bytes += value.length
        }
        if (batch.records.length >= maxRecords) return batch
      }
    } finally {
      await it.close()
    }
  }

  /** Deletes every record up to `seq`, counted as forwarded. */
  ack(seq: number): Promise<number> {
    if (this.#closed) return Promise.reject(bufferError('TETHER_ERR_BUFFER_CLOSED'))
    return this.#queue.ack(seq)
  }

  /** Deletes one record the relay refuses for good, counted as poisoned. */
  dropPoisoned(seq: number): Promise<boolean> {
    if (this.#closed) return Promise.reject(bufferError('TETHER_ERR_BUFFER_CLOSED'))
    return this.#queue.poison(seq)
  }

  /** Counters and gauges, from memory (cheap enough for every DESCRIBE). */
  stats(): BufferStats {
    const now = this.#now()
    const { seq, ...counters } = this.#state
    return {
      ...counters,
      ...(this.#oldestTs === undefined ? {} : { oldestAgeMs: Math.max(0, now - this.#oldestTs) }),
      forwardRatePerSec: Math.round(this.#rate.perSecond(now)),
      lastSeq: seq,
      epoch: this.epoch,
      writes: this.#writes,
      policy: this.#limits.policy,
      maxRecords: this.#limits.maxRecords,
      maxBytes: this.#limits.maxBytes,
    }
  }

  /** Finishes queued writes, then closes the database; idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      clearInterval(this.#timer)
      await this.#queue.idle()
      this.#drops.flush(this.#state.dropped)
      await this.#db.close()
    })()
    return this.#closed
  }

  async #commitAppends(ops: Array<{ inputs: RecordInput[] }>): Promise<Array<AppendResult | Error>> {
    const before = this.#state
    const st = { ...before }
    const batch = this.#db.batch()
    const front = new FrontReader(this.#db, this.#front)
    let outcome: AppendOutcome
    try {
      const group = { ops, state: st, limits: this.#limits, now: this.#now(), front, batch }
      outcome = await planAppends({ ...group, maxRecordBytes: this.#maxRecordBytes })
    } catch (err) {
      await batch.close()
      throw err
    } finally {
      await front.close()
    }
    const { results, accepted, droppedStored } = outcome
    if (st.seq === before.seq && st.rejected === before.rejected) {
      await batch.close()
      return results
    }
    batch.put('m!state', encodeState(st))
    // Nothing accepted (only refusals counted): no fsync needed for a counter.
    await batch.write({ sync: accepted && this.#limits.sync } as object)
    this.#writes++
    this.#state = st
    this.#drops.add(st.dropped - before.dropped, st.dropped)
    if (droppedStored || (before.depth === 0 && st.depth > 0)) await this.#refreshOldest()
    if (accepted) this.emit('appended', st.seq)
    return results
  }

  async #commitAck(seq: number): Promise<number> {
    const entries = await this.#db.iterator({ gte: recordKey(this.#front), lte: recordKey(seq) }).all()
    if (entries.length === 0) return 0
    const st = { ...this.#state }
    const batch = this.#db.batch()
    for (const [key, value] of entries) {
      batch.del(key)
      st.bytes -= value.length
    }
    st.depth -= entries.length
    st.forwarded += entries.length
    batch.put('m!state', encodeState(st))
    // Not fsynced: an acknowledgement lost to a power cut only means a redelivery, which the relay ignores.
    await batch.write({ sync: false } as object)
    this.#writes++
    this.#state = st
    this.#rate.sample(st.forwarded, this.#now())
    await this.#refreshOldest()
    this.emit('forwarded', this.stats())
    return entries.length
  }

  /** Queues the deletion of an unreadable record, once; logs it. */
  #dropCorrupt(seq: number, bytes: number): void {
    if (this.#corrupt.has(seq)) return
    this.#corrupt.add(seq)
    this.#queue
      .poison(seq, 'corrupted')
      .then(
        (deleted) => {
          if (!deleted) return
          this.#log?.error(
            { seq, bytes, corrupted: this.#state.corrupted },
            'buffered record unreadable (damaged on disk): skipped and deleted, counted in corrupted',
          )
        },
        (err: Error) => this.#log?.error({ seq, err }, 'deleting an unreadable buffered record failed'),
      )
      .finally(() => this.#corrupt.delete(seq))
  }

  async #commitPoison(seq: number, counter: PoisonCounter): Promise<boolean> {
    const value = await this.#db.get(recordKey(seq))
    if (value === undefined) return false
    const st = { ...this.#state, depth: this.#state.depth - 1, bytes: this.#state.bytes - value.length }
    st[counter]++
    await this.#db.batch([
      { type: 'del', key: recordKey(seq) },
      { type: 'put', key: 'm!state', value: encodeState(st) },
    ])
    this.#writes++
    this.#state = st
    await this.#refreshOldest()
    return true
  }

  /** Deletes up to EXPIRE_CHUNK records older than maxAgeDays; resolves with how many. */
  async #commitExpire(): Promise<number> {
    if (this.#limits.maxAgeDays === undefined || this.#state.depth === 0) return 0
    const cutoff = this.#now() - this.#limits.maxAgeDays * DAY_MS
    const it = this.#db.iterator({ gte: recordKey(this.#front), lt: RECORDS_END, limit: EXPIRE_CHUNK })
    const st = { ...this.#state }
    const batch = this.#db.batch()
    try {
      // Oldest by seq first; stops at the first young record (a late, old-ts record waits its turn).
      for (let entry = await it.next(); entry; entry = await it.next()) {
        const [key, value] = entry
        const record = readStored(key, value)
        if (!record) continue // unreadable: left for read() to count as corrupted
        if (record.ts >= cutoff) break
        batch.del(key)
        st.depth--
        st.bytes -= value.length
        st.expired++
      }
    } finally {
      await it.close()
    }
    const expired = st.expired - this.#state.expired
    if (expired === 0) {
      await batch.close()
      return 0
    }
    batch.put('m!state', encodeState(st))
    await batch.write({ sync: false } as object)
    this.#writes++
    this.#state = st
    await this.#refreshOldest()
    this.#log?.warn({ expired, maxAgeDays: this.#limits.maxAgeDays }, 'dropped records older than maxAgeDays')
    return expired
  }

  async #expireAll(): Promise<void> {
    try {
      while (!this.#closed && (await this.#queue.expire()) === EXPIRE_CHUNK) {}
    } catch (err) {
      if (!this.#closed) this.#log?.error({ err }, 'expiring old buffered records failed')
    }
  }

  /** Finds the oldest record again after the front changed; moves `#front` up to it. */
  async #refreshOldest(): Promise<void> {
    const [first] = await this.#db.iterator({ gte: recordKey(this.#front), lt: RECORDS_END, limit: 1 }).all()
    this.#front = first === undefined ? this.#state.seq + 1 : seqOfKey(first[0])
    // An unreadable oldest record has no ts: count its age from now until read() removes it.
    this.#oldestTs = first === undefined ? undefined : (readStored(...first)?.ts ?? this.#now())
  }
}

/** The record stored under `key`, or undefined when its bytes do not read back as the record of that seq. */
function readStored(key: string, value: Buffer): DataRecord | undefined {
  try {
    const record = decodeRecord(value)
    checkInput(record, 0)
    return record.seq === seqOfKey(key) ? record : undefined
  } catch {
    return undefined
  }
}
