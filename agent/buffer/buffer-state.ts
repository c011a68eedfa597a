/**
 * The buffer's persisted state record (`m!state`): the last seq given out, depth, bytes and counters. It is
 * rewritten in the same atomic batch as every change it counts; at open it is read back, checked against the
 * stored records, and rebuilt by a scan if it is missing or behind them.
 */
import type { Level } from 'level'
import type { BufferLimits } from './data-buffer.ts'
import { RECORDS_END, RECORDS_START, seqOfKey } from './front-reader.ts'

export interface BufferState {
  seq: number
  depth: number
  bytes: number
  appended: number
  dropped: number
  expired: number
  rejected: number
  forwarded: number
  poisoned: number
  /** Records found unreadable on disk, skipped and deleted (see LevelBuffer.read). */
  corrupted: number
}

const FIELDS = [
  'seq',
  'depth',
  'bytes',
  'appended',
  'dropped',
  'expired',
  'rejected',
  'forwarded',
  'poisoned',
] as const
/** Fields added later: a state record written before them reads them as 0. */
const LATER_FIELDS = ['corrupted'] as const

/** The state record as stored. */
export function encodeState(state: BufferState): Buffer {
  return Buffer.from(JSON.stringify(state))
}

/** Whether `n` more records of `bytes` fit beside what is stored. */
export function fits(state: BufferState, limits: BufferLimits, n: number, bytes: number): boolean {
  return state.depth + n <= limits.maxRecords && state.bytes + bytes <= limits.maxBytes
}

/** Reads the state record back; rebuilds depth and bytes by a scan when it is missing, damaged or stale. */
export async function restoreState(db: Level<string, Buffer>): Promise<BufferState> {
  const stored = parse(await db.get('m!state'))
  const [lastKey] = await db.keys({ gte: RECORDS_START, lt: RECORDS_END, reverse: true, limit: 1 }).all()
  const lastSeq = lastKey === undefined ? 0 : seqOfKey(lastKey)
  if (stored && stored.seq >= lastSeq) return stored
  // Only a state dir written by something else gets here: batches keep records and state together.
  const state: BufferState = { ...(stored ?? zero()), depth: 0, bytes: 0 }
  for await (const value of db.values({ gte: RECORDS_START, lt: RECORDS_END })) {
    state.depth++
    state.bytes += value.length
  }
  state.seq = Math.max(state.seq, lastSeq)
  state.appended = Math.max(state.appended, state.depth)
  return state
}

function parse(raw: Buffer | undefined): BufferState | undefined {
  if (!raw) return undefined
  try {
    const value = JSON.parse(raw.toString()) as Record<string, unknown>
    const state = zero()
    for (const field of FIELDS) {
      const n = value[field]
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) return undefined
      state[field] = n
    }
    for (const field of LATER_FIELDS) {
      const n = value[field] ?? 0
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) return undefined
      state[field] = n
    }
    return state
  } catch {
    return undefined
  }
}

function zero(): BufferState {
  return {
    seq: 0,
    depth: 0,
    bytes: 0,
    appended: 0,
    dropped: 0,
    expired: 0,
    rejected: 0,
    forwarded: 0,
    poisoned: 0,
    corrupted: 0,
  }
}
