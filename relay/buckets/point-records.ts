/** Turns a write's body (one point or an array of points) into stored records, naming any bad element. */
import { RelayErrors } from '../errors.ts'
import type { PointRecord } from './points-store.ts'
import { MAX_POINTS_PER_WRITE, MAX_TS } from './schemas.ts'

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

/**
 * Tells apart points that get the same `now` (many callbacks in one millisecond): with their own `ts` a point
 * overwrites the point of that ts, as the API promises; without one it must never replace another.
 */
let autoSeq = 0

/** Builds one record; `path` names the element in error messages (`body`, `body/3`). */
function toRecord(point: unknown, path: string, now: number): PointRecord {
  if (!isObject(point)) throw new RelayErrors.TETHER_ERR_BAD_REQUEST(`${path} must be an object (one point)`)
  let ts = now
  let seq: number | undefined
  let val: Record<string, unknown> = point
  if (Object.hasOwn(point, 'ts')) {
    const { ts: own, ...rest } = point
    if (typeof own !== 'number' || !Number.isInteger(own) || own < 0 || own > MAX_TS) {
      throw new RelayErrors.TETHER_ERR_BAD_REQUEST(
        `${path}/ts must be an integer from 0 to ${MAX_TS} (ms since epoch), got ${JSON.stringify(own) ?? typeof own}`,
      )
    }
    ts = own
    val = rest
  } else {
    autoSeq = (autoSeq + 1) % Number.MAX_SAFE_INTEGER
    seq = autoSeq
  }
  let text: string
  try {
    text = JSON.stringify(val)
  } catch (err) {
    // Only in-process callers can get here (a parsed HTTP body always serialises): BigInt, cycles.
    throw new RelayErrors.TETHER_ERR_BAD_REQUEST(
      `${path} is not serialisable as JSON: ${(err as Error).message}`,
    )
  }
  return { ts, ...(seq !== undefined ? { seq } : {}), json: `{"ts":${ts},"val":${text}}` }
}

/**
 * Records of a write body: an object is one point, an array holds several. A point's own integer `ts` (ms since
 * epoch) is used and removed from the stored value (a later point with the same ts replaces it); points without
 * one get `now` and are all kept, however many arrive in the same millisecond.
 */
export function pointRecords(body: unknown, now: number): PointRecord[] {
  if (Array.isArray(body)) {
    if (body.length > MAX_POINTS_PER_WRITE) {
      throw new RelayErrors.TETHER_ERR_BAD_REQUEST(
        `body has ${body.length} points; at most ${MAX_POINTS_PER_WRITE} per write`,
      )
    }
    const records = new Array<PointRecord>(body.length)
    for (let i = 0; i < body.length; i++) records[i] = toRecord(body[i], `body/${i}`, now)
    return records
  }
  if (!isObject(body))
    throw new RelayErrors.TETHER_ERR_BAD_REQUEST('body must be a point (an object) or an array of points')
  return [toRecord(body, 'body', now)]
}
