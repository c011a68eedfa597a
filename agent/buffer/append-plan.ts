/**
 * Fits a group of appends into the buffer's bounds, one append at a time in call order, writing into one batch.
 * An invalid append fails alone. When full, `reject-new` refuses the whole append (TETHER_ERR_BUFFER_FULL,
 * counted in `rejected`); `drop-oldest` deletes the oldest records (stored ones first, then earlier appends of
 * this same batch) until it fits, and an append larger than the whole buffer keeps only its newest records. Every
 * record dropped is counted in `dropped`.
 */
import { bufferError } from './buffer-errors.ts'
import { type BufferState, fits } from './buffer-state.ts'
import type { AppendResult, BufferLimits } from './data-buffer.ts'
import { type FrontReader, recordKey } from './front-reader.ts'
import { encodeAppend, type RecordInput, type ToStore } from './records.ts'

/** The part of a LevelDB chained batch the plan writes into. */
export interface BatchWriter {
  put(key: string, value: Buffer): unknown
  del(key: string): unknown
}

export interface AppendGroup {
  ops: Array<{ inputs: RecordInput[] }>
  /** A copy of the state, updated as records are added and dropped. */
  state: BufferState
  limits: BufferLimits
  now: number
  maxRecordBytes: number
  /** The stored records, oldest first. */
  front: FrontReader
  batch: BatchWriter
}

export interface AppendOutcome {
  /** Per op: its seqs, or the error to reject it with. */
  results: Array<AppendResult | Error>
  /** Some op was accepted (the batch must be fsynced if `sync`). */
  accepted: boolean
  /** A stored record was dropped (the oldest record changed). */
  droppedStored: boolean
}

/** Plans the group into `batch` and `state` (see above). */
export async function planAppends(group: AppendGroup): Promise<AppendOutcome> {
  const { ops, state: st, limits, front, batch } = group
  const outcome: AppendOutcome = { results: [], accepted: false, droppedStored: false }
  const fresh: ToStore[] = []
  for (let i = 0; i < ops.length; i++) {
    let records: ToStore[]
    try {
      records = encodeAppend(
        (ops[i] as { inputs: RecordInput[] }).inputs,
        st.seq + 1,
        group.now,
        group.maxRecordBytes,
      )
    } catch (err) {
      outcome.results[i] = err as Error
      continue
    }
    const n = records.length
    const bytes = records.reduce((sum, r) => sum + r.size, 0)
    if (limits.policy === 'reject-new' && !fits(st, limits, n, bytes)) {
      st.rejected += n
      const why = `${st.depth}/${limits.maxRecords} records, ${st.bytes}/${limits.maxBytes} bytes stored`
      outcome.results[i] = bufferError('TETHER_ERR_BUFFER_FULL', n, why)
      continue
    }
    while (!fits(st, limits, n, bytes) && st.depth > 0) {
      const victim = (await front.next()) ?? fresh.shift()
      if (!victim) break
      if (victim.stored) outcome.droppedStored = true
      batch.del(recordKey(victim.seq))
      st.depth--
      st.bytes -= victim.size
      st.dropped++
    }
    let skip = 0
    let skipBytes = 0
    while (skip < n && !fits(st, limits, n - skip, bytes - skipBytes)) {
      skipBytes += (records[skip] as ToStore).size
      skip++
    }
    for (const record of records.slice(skip)) {
      batch.put(recordKey(record.seq), record.value)
      fresh.push(record)
    }
    outcome.results[i] = { first: st.seq + 1, last: st.seq + n }
    st.seq += n
    st.appended += n
    st.dropped += skip
    st.depth += n - skip
    st.bytes += bytes - skipBytes
    outcome.accepted = true
  }
  return outcome
}
