/**
 * The store-and-forward buffer's contract: a durable FIFO of data records with monotonically increasing seqs,
 * bounded in records, bytes and age. The LevelDB implementation is level-buffer.ts; a test suite written as a
 * function (test/agent/buffer/buffer-contract.ts) runs against every implementation.
 */
import type { EventEmitter } from 'node:events'
import type { DataRecord, RecordInput } from './records.ts'

/**
 * What happens to an append that does not fit: `drop-oldest` deletes the oldest records to make room (each one
 * counted in `dropped`); `reject-new` refuses the append with TETHER_ERR_BUFFER_FULL (counted in `rejected`) so
 * the caller can refuse the device's message (no PUBACK, HTTP 507) and the device keeps it.
 */
export type OverflowPolicy = 'drop-oldest' | 'reject-new'

export interface BufferLimits {
  /** Bytes of stored records (their msgpack encoding) at most. */
  maxBytes: number
  maxRecords: number
  /** Records whose ts is older than this are dropped (counted in `expired`); absent: kept until forwarded. */
  maxAgeDays?: number
  policy: OverflowPolicy
  /**
   * true (default): fsync every append batch, so an append that resolved survives a power cut. false: appends
   * resolve once in the OS page cache: survives a crash of the agent process, not of the machine; several times
   * the throughput on slow storage (SD cards), at the risk of losing the last seconds of records on power loss.
   */
  sync: boolean
}

/** Where appended records got their seqs. */
export interface AppendResult {
  first: number
  last: number
}

/** Records read for forwarding, oldest first. */
export interface ReadBatch {
  records: DataRecord[]
  /** Their stored bytes. */
  bytes: number
}

/**
 * Counters and gauges. Every counter is persisted with the write that changes it (`rejected` within a second),
 * so they survive restarts. Invariant: appended = forwarded + dropped + expired + poisoned + corrupted + depth.
 */
export interface BufferStats {
  /** Records waiting to be forwarded. */
  depth: number
  bytes: number
  /** Age of the oldest waiting record by its ts, ms; absent when empty. */
  oldestAgeMs?: number
  /** Records accepted since the buffer was created. */
  appended: number
  /** Deleted to make room (policy drop-oldest). */
  dropped: number
  /** Deleted for being older than maxAgeDays. */
  expired: number
  /** Refused at append (policy reject-new); never stored. */
  rejected: number
  /** Acknowledged by the relay and deleted. */
  forwarded: number
  /** Refused permanently by the relay, one at a time, and deleted (see forwarder.ts). */
  poisoned: number
  /** Found unreadable on disk when read for forwarding: skipped, deleted and logged; the rest still flow. */
  corrupted: number
  /** Records forwarded per second over the last 10 s. */
  forwardRatePerSec: number
  /** The last seq given out. */
  lastSeq: number
  /** Random id of this buffer's incarnation: a wiped state dir starts a new epoch (seqs restart at 1). */
  epoch: string
  /** Batch writes since open (group commit folds concurrent appends into one). */
  writes: number
  policy: OverflowPolicy
  maxRecords: number
  maxBytes: number
}

/** Events: `appended` (last seq), `forwarded` (BufferStats, after each acknowledgement is applied). */
export interface DataBuffer extends EventEmitter {
  readonly epoch: string
  /**
   * Appends records in order; resolves with their seqs once durable (see `sync`). Concurrent appends share one
   * batch write. Rejects with TETHER_ERR_BUFFER_FULL (reject-new; the whole call), TETHER_ERR_BUFFER_RECORD_INVALID
   * or TETHER_ERR_BUFFER_CLOSED.
   */
  append(records: RecordInput | RecordInput[]): Promise<AppendResult>
  /** Up to `maxRecords` records after `afterSeq` (from the oldest when undefined), at least one if any. */
  read(afterSeq: number | undefined, maxRecords: number, maxBytes: number): Promise<ReadBatch>
  /** Deletes every record up to `seq` (the relay stored them); resolves with how many were deleted. */
  ack(seq: number): Promise<number>
  /** Deletes one record the relay refuses for good, counted in `poisoned`; false if it was gone already. */
  dropPoisoned(seq: number): Promise<boolean>
  stats(): BufferStats
  /** Finishes pending writes and closes; later calls reject with TETHER_ERR_BUFFER_CLOSED. */
  close(): Promise<void>
}
