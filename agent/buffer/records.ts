/**
 * Records of the store-and-forward buffer: what callers append, and what is stored and sent in RUN `$data`
 * (DESIGN.md, "Data uplink": `{seq, ts, source, device?, topic?, payload}`, plus an optional `bucket`). Checked
 * here, at append, so the relay never sees a record this agent made that it would have to refuse.
 */
import { Packr, Unpackr } from 'msgpackr'
import { bufferError } from './buffer-errors.ts'

/** A JSON-able value. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue }

/** A payload: raw bytes (an MQTT message, an HTTP body) or a JSON-able value. */
export type RecordPayload = Uint8Array | JsonValue

/** What a caller appends. */
export interface RecordInput {
  /** What produced it: `mqtt`, `bridge`, `http`, `integration:<id>`; matches SOURCE_PATTERN. */
  source: string
  /** The LAN device it is about (the relay files it under this id); absent: the gateway itself. */
  device?: string
  /** The bucket its point goes to (BUCKET_PATTERN); absent: the device's own bucket. */
  bucket?: string
  /** The MQTT topic or HTTP path, when there is one. */
  topic?: string
  payload: RecordPayload
  /** When it was measured, ms since epoch (default: now at append). */
  ts?: number
}

/** A stored record, exactly as sent in RUN `$data`. */
export interface DataRecord {
  /** Position in this buffer's queue: starts at 1, never reused (DESIGN.md dedup key with the epoch). */
  seq: number
  ts: number
  source: string
  device?: string
  bucket?: string
  topic?: string
  payload: RecordPayload
}

/** Sources the relay accepts (the same pattern is checked there). */
export const SOURCE_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/
export const MAX_DEVICE_CHARS = 256
export const MAX_TOPIC_CHARS = 4096
/** Bucket ids the relay accepts (the same pattern is checked there). */
export const BUCKET_PATTERN = /^[A-Za-z0-9_-]{1,64}$/
/** Largest ts (ms since epoch): exact in a JS number. */
export const MAX_TS = Number.MAX_SAFE_INTEGER

// Plain maps: records are read back by other versions and by the relay, which never enables msgpackr extensions.
const packr = new Packr({ useRecords: false, variableMapSize: true })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' })

/** Checks an appended record and fills its ts; throws a TypeError naming the bad field. */
export function checkInput(input: RecordInput, now: number): Omit<DataRecord, 'seq'> {
  if (typeof input !== 'object' || input === null) throw invalid('a record must be an object')
  const { source, device, bucket, topic, payload } = input
  if (typeof source !== 'string' || !SOURCE_PATTERN.test(source)) {
    throw invalid(`source must match ${SOURCE_PATTERN}, got ${JSON.stringify(source)}`)
  }
  if (
    device !== undefined &&
    (typeof device !== 'string' || device.length < 1 || device.length > MAX_DEVICE_CHARS)
  ) {
    throw invalid(`device must be a string of 1 to ${MAX_DEVICE_CHARS} characters`)
  }
  if (topic !== undefined && (typeof topic !== 'string' || topic.length > MAX_TOPIC_CHARS)) {
    throw invalid(`topic must be a string of at most ${MAX_TOPIC_CHARS} characters`)
  }
  if (bucket !== undefined && (typeof bucket !== 'string' || !BUCKET_PATTERN.test(bucket))) {
    throw invalid(`bucket must match ${BUCKET_PATTERN}`)
  }
  const ts = input.ts ?? now
  if (!Number.isInteger(ts) || ts < 0 || ts > MAX_TS)
    throw invalid(`ts must be an integer from 0 to ${MAX_TS}`)
  if (payload === undefined || typeof payload === 'function' || typeof payload === 'symbol') {
    throw invalid('payload must be bytes or a JSON-able value')
  }
  if (typeof payload === 'bigint') throw invalid('payload must not be a BigInt')
  return {
    ts,
    source,
    ...(device === undefined ? {} : { device }),
    ...(bucket === undefined ? {} : { bucket }),
    ...(topic === undefined ? {} : { topic }),
    payload,
  }
}

/** The stored (and sent) bytes of a record. */
export function encodeRecord(record: DataRecord): Buffer {
  return packr.pack(record)
}

/** A stored record back from its bytes. */
export function decodeRecord(bytes: Uint8Array): DataRecord {
  return unpackr.unpack(bytes) as DataRecord
}

function invalid(why: string) {
  return new TypeError(why)
}

/** A record encoded for storage, with its seq and size. */
export interface ToStore {
  seq: number
  value: Buffer
  size: number
  stored: false
}

/**
 * Checks and encodes one append's records with seqs from `firstSeq`; throws TETHER_ERR_BUFFER_RECORD_INVALID
 * (naming the record) for a bad one or one larger than `maxRecordBytes`.
 */
export function encodeAppend(
  inputs: RecordInput[],
  firstSeq: number,
  now: number,
  maxRecordBytes: number,
): ToStore[] {
  return inputs.map((input, i) => {
    const seq = firstSeq + i
    let value: Buffer
    try {
      value = encodeRecord({ seq, ...checkInput(input, now) })
    } catch (err) {
      throw bufferError('TETHER_ERR_BUFFER_RECORD_INVALID', `record ${i}: ${(err as Error).message}`)
    }
    if (value.length > maxRecordBytes) {
      const why = `record ${i} takes ${value.length} bytes; at most ${maxRecordBytes}`
      throw bufferError('TETHER_ERR_BUFFER_RECORD_INVALID', why)
    }
    return { seq, value, size: value.length, stored: false }
  })
}
