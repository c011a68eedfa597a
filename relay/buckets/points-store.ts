/**
 * Bucket points, behind an interface so a database backend can replace LevelDB.
 *
 * A point is stored as its final JSON text `{"ts":…,"val":…}`: reads, pages and json/ndjson exports join
 * stored texts without parsing or re-serialising a single point, which is what makes range reads fast.
 */
import type { Level } from 'level'

/** A point ready to store: `json` is exactly `{"ts":<ts>,"val":<value>}`. */
export interface PointRecord {
  ts: number
  /** Set for a point whose ts came from the clock: keeps it apart from others of the same millisecond. */
  seq?: number
  /**
   * Set for a point with a stable identity (an agent's record: origin and seq): its key is `<ts>:<tag>`, so
   * writing it again overwrites it. No `!` (the key separator).
   */
  tag?: string
  json: string
}

/** Points of one bucket, part of a batch. */
export interface PointWrite {
  user: string
  bucket: string
  points: PointRecord[]
}

/** An inclusive ts range; absent bounds are open. */
export interface TsRange {
  min_ts?: number
  max_ts?: number
}

/** A consistent view of the store: scans given it see no write made after it was taken. */
export interface PointsSnapshot {
  close(): Promise<void>
}

export interface ScanOptions extends TsRange {
  /** Newest first. */
  reverse?: boolean
  /** Stop after this many points. */
  limit?: number
  snapshot?: PointsSnapshot
}

/** Points of a range in ts order, a batch at a time. */
export interface PointCursor {
  /** The next stored texts (`{"ts":…,"val":…}`), in order; an empty array at the end. */
  next(): Promise<string[]>
  close(): Promise<void>
}

export interface PointsStore {
  /** Writes all points in one atomic batch, in order: a later point with the same ts wins. */
  write(writes: PointWrite[]): Promise<void>
  /** Iterates a bucket's points in a ts range. */
  scan(user: string, bucket: string, options?: ScanOptions): PointCursor
  /** Deletes up to `limit` of the oldest points in the range; answers how many and the newest ts deleted. */
  deleteOldest(
    user: string,
    bucket: string,
    range: TsRange,
    limit: number,
  ): Promise<{ deleted: number; last_ts?: number }>
  /** Takes a snapshot for scans that must agree with each other (the two passes of a CSV export). */
  snapshot(): PointsSnapshot
}

export interface LevelPointsOptions {
  /** fsync each batch before it resolves (default true: a 200 means the points survive a power cut). */
  sync?: boolean
  /** Bytes an iterator reads ahead per step: LevelDB's 16 KiB default makes range reads cost twice as much. */
  readAheadBytes?: number
}

const TS_HEX_WIDTH = 16
/** Sorts like the number: fixed-width hex of a non-negative safe integer. */
const tsKey = (ts: number) => ts.toString(16).padStart(TS_HEX_WIDTH, '0')
/**
 * A point's key after the bucket prefix: the ts, then `.seq` for a point that got its ts from the clock, or
 * `:tag` for a point with a stable identity. Both suffixes sort after the bare ts and before the next ts.
 */
const pointKey = (p: PointRecord) =>
  p.tag !== undefined
    ? `${tsKey(p.ts)}:${p.tag}`
    : p.seq === undefined
      ? tsKey(p.ts)
      : `${tsKey(p.ts)}.${p.seq.toString(16).padStart(TS_HEX_WIDTH, '0')}`
/**
 * `user!bucket!` prefixes a bucket's points. Neither name may contain `!` (their patterns forbid it), and every
 * allowed character sorts after `!`, so a prefix never matches another bucket's keys.
 */
const prefixOf = (user: string, bucket: string) => `${user}!${bucket}!`

/** PointsStore on its own sublevel of the relay's LevelDB, keys `user!bucket!<ts as 16 hex digits>`. */
export function levelPointsStore(db: Level<string, string>, options: LevelPointsOptions = {}): PointsStore {
  const sync = options.sync ?? true
  const highWaterMarkBytes = options.readAheadBytes ?? 256 * 1024
  const points = db.sublevel<string, string>('bucket-points', { keyEncoding: 'utf8', valueEncoding: 'utf8' })
  type Snapshot = ReturnType<Level<string, string>['snapshot']>
  // `sync` and `highWaterMarkBytes` are classic-level options that abstract-level's types do not list.
  const writeOptions: { sync: boolean; keyEncoding?: 'utf8' } = { sync }

  const bounds = (user: string, bucket: string, range: TsRange) => {
    const prefix = prefixOf(user, bucket)
    return {
      gte: prefix + tsKey(range.min_ts ?? 0),
      // The prefix's `!` + 1 is `"`: every ts key of the bucket sorts before it.
      ...(range.max_ts === undefined
        ? { lt: `${prefix.slice(0, -1)}"` }
        : { lt: prefix + tsKey(range.max_ts + 1) }),
    }
  }

  return {
    async write(writes) {
      // A chained batch on the root, keys already prefixed: the array form of batch() copies its options into
      // every operation (and a sublevel's batch does all per-operation work twice), ~5x slower per point.
      const batch = db.batch()
      let n = 0
      for (const { user, bucket, points: list } of writes) {
        const prefix = points.prefix + prefixOf(user, bucket)
        for (const p of list) batch.put(prefix + pointKey(p), p.json)
        n += list.length
      }
      if (n > 0) await batch.write(writeOptions)
      else await batch.close()
    },

    scan(user, bucket, opts = {}) {
      const iteratorOptions = {
        ...bounds(user, bucket, opts),
        reverse: opts.reverse === true,
        limit: opts.limit ?? -1,
        highWaterMarkBytes,
        ...(opts.snapshot ? { snapshot: opts.snapshot as Snapshot } : {}),
      }
      const it = points.values(iteratorOptions)
      return {
        // nextv may answer fewer than asked (read-ahead is capped by bytes): only an empty batch is the end.
        next: () => it.nextv(1000),
        close: () => it.close(),
      }
    },

    async deleteOldest(user, bucket, range, limit) {
      const keys = await points.keys({ ...bounds(user, bucket, range), limit }).all()
      if (keys.length === 0) return { deleted: 0 }
      // Not fsynced: a deletion lost to a power cut is simply redone by the next purge or retention run.
      await points.batch(keys.map((key) => ({ type: 'del' as const, key })))
      const last = keys[keys.length - 1] as string
      const tsHex = last.slice(last.lastIndexOf('!') + 1, last.lastIndexOf('!') + 1 + TS_HEX_WIDTH)
      return { deleted: keys.length, last_ts: Number.parseInt(tsHex, 16) }
    },

    snapshot() {
      return db.snapshot()
    },
  }
}
