/**
 * The `$data` batch as the relay receives it (DESIGN.md, "Data uplink"): RUN `$data`, params `{epoch, after?}`,
 * payload an array of records `{seq, ts, source, device?, bucket?, topic?, payload}`. Two levels of checks: a
 * batch whose shape or seqs are wrong is refused whole (ERROR BAD_ENCODING: it can never be accepted as it is); a
 * record with a valid seq but a bad field is acknowledged and counted as rejected, so it can never wedge the
 * agent's queue. The agent (agent/buffer/records.ts) checks the same rules at append.
 */
import { dataError } from './data-errors.ts'

/** The RUN resource of the data uplink. */
export const DATA_RESOURCE = '$data'

/** One record, as sinks get it. */
export interface DataRecord {
  /** Position in the agent's buffer (epoch): unique, increasing. */
  seq: number
  /** ms since epoch. */
  ts: number
  /** `mqtt`, `bridge`, `http`, `integration:<id>`, …; picks the sink. */
  source: string
  /** The agent's id of a LAN device (any text; the device sink sanitises it). */
  device?: string
  /** The bucket its point goes to (a bucket id, as the agent's topic mapping named it); absent: the device's. */
  bucket?: string
  topic?: string
  /** Bytes (Uint8Array) or a JSON value. */
  payload: unknown
}

/** A batch that passed the batch-level checks; its records still need `recordProblem`. */
export interface DataBatch {
  /** The agent buffer's incarnation: seqs are unique within it. */
  epoch: string
  /** The last seq the agent sent before this batch in the same run; absent for a run's first batch. */
  after?: number
  /** Objects with a valid, strictly increasing `seq`. */
  records: Array<Record<string, unknown> & { seq: number }>
}

/** Records one batch may carry (the frame cap, 1 MiB by default, bounds its bytes). */
export const MAX_BATCH_RECORDS = 10_000
export const EPOCH_PATTERN = /^[A-Za-z0-9_-]{1,32}$/
export const SOURCE_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/
export const MAX_DEVICE_CHARS = 256
export const MAX_TOPIC_CHARS = 4096
/** Bucket ids (relay/buckets/schemas.ts BUCKET_ID_PATTERN). */
export const BUCKET_PATTERN = /^[A-Za-z0-9_-]{1,64}$/

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array)

/** Checks the batch's shape and seqs; throws TETHER_ERR_DATA_BAD_BATCH naming the first fault. */
export function parseBatch(payload: unknown, params: Record<string, unknown> | undefined): DataBatch {
  const epoch = params?.epoch
  if (typeof epoch !== 'string' || !EPOCH_PATTERN.test(epoch)) {
    throw dataError('TETHER_ERR_DATA_BAD_BATCH', `params/epoch must match ${EPOCH_PATTERN}`)
  }
  const after = params?.after ?? undefined
  if (after !== undefined && !(Number.isSafeInteger(after) && (after as number) >= 0)) {
    throw dataError('TETHER_ERR_DATA_BAD_BATCH', 'params/after must be a non-negative integer')
  }
  if (!Array.isArray(payload))
    throw dataError('TETHER_ERR_DATA_BAD_BATCH', 'payload must be an array of records')
  if (payload.length === 0 || payload.length > MAX_BATCH_RECORDS) {
    throw dataError(
      'TETHER_ERR_DATA_BAD_BATCH',
      `a batch holds 1 to ${MAX_BATCH_RECORDS} records, not ${payload.length}`,
    )
  }
  let previous = (after as number | undefined) ?? 0
  for (let i = 0; i < payload.length; i++) {
    const record: unknown = payload[i]
    if (!isMap(record)) throw dataError('TETHER_ERR_DATA_BAD_BATCH', `payload/${i} must be a map`)
    const seq = record.seq
    if (!Number.isSafeInteger(seq) || (seq as number) < 1) {
      throw dataError('TETHER_ERR_DATA_BAD_BATCH', `payload/${i}/seq must be a positive integer`)
    }
    // Seqs increase: the relay stores in seq order and acknowledges the last one.
    if ((seq as number) <= previous) {
      throw dataError('TETHER_ERR_DATA_BAD_BATCH', `payload/${i}/seq ${seq} does not follow ${previous}`)
    }
    previous = seq as number
  }
  return {
    epoch,
    ...(after === undefined ? {} : { after: after as number }),
    records: payload as DataBatch['records'],
  }
}

/** Why a record (of a parsed batch) cannot be stored, or undefined when it can. */
export function recordProblem(record: Record<string, unknown>): string | undefined {
  const { ts, source, device, bucket, topic, payload } = record
  if (!Number.isSafeInteger(ts) || (ts as number) < 0) return 'ts must be a non-negative integer (ms)'
  if (typeof source !== 'string' || !SOURCE_PATTERN.test(source)) return `source must match ${SOURCE_PATTERN}`
  // nil stands for absent: other agents' encoders may write it.
  if (
    device != null &&
    (typeof device !== 'string' || device.length < 1 || device.length > MAX_DEVICE_CHARS)
  ) {
    return `device must be a string of 1 to ${MAX_DEVICE_CHARS} characters`
  }
  if (topic != null && (typeof topic !== 'string' || topic.length > MAX_TOPIC_CHARS)) {
    return `topic must be a string of at most ${MAX_TOPIC_CHARS} characters`
  }
  if (bucket != null && (typeof bucket !== 'string' || !BUCKET_PATTERN.test(bucket))) {
    return `bucket must match ${BUCKET_PATTERN}`
  }
  if (payload === undefined) return 'payload is missing'
  return undefined
}

/** The record as sinks get it (nil device and topic dropped). */
export function toDataRecord(record: Record<string, unknown> & { seq: number }): DataRecord {
  const { seq, ts, source, device, bucket, topic, payload } = record
  return {
    seq,
    ts: ts as number,
    source: source as string,
    ...(device == null ? {} : { device: device as string }),
    ...(bucket == null ? {} : { bucket: bucket as string }),
    ...(topic == null ? {} : { topic: topic as string }),
    payload,
  }
}
