/**
 * The buckets capability as an in-process service: bucket CRUD, point writes (group-committed), reads, streamed
 * exports, background deletion of a deleted bucket's points and the retention job. The HTTP plugin and other
 * capabilities (HTTP device callbacks, the agent's data uplink) call it; it throws RelayErrors, which the relay
 * answers as `{error: {code, message}}`.
 */
import { Readable } from 'node:stream'
import type { Logger } from 'pino'
import { RelayErrors } from '../errors.ts'
import type { BucketsStore } from './buckets-store.ts'
import { csvColumns, EXPORT_CONTENT_TYPES, exportChunks } from './export-formats.ts'
import { pointRecords } from './point-records.ts'
import type { PointsStore, TsRange } from './points-store.ts'
import {
  BUCKET_ID_PATTERN,
  type BucketCreate,
  type BucketPoint,
  type BucketRecord,
  type BucketUpdate,
  type BucketView,
  type ExportQuery,
  type ReadQuery,
} from './schemas.ts'
import { WriteBatcher } from './write-batcher.ts'

const DAY_MS = 86_400_000

/** The ts of a stored point's text (`{"ts":<ts>,…`), without parsing the rest. */
const tsOf = (json: string) => Number(json.slice(6, json.indexOf(',')))

/**
 * The first `items` of `page` (which holds one more), minus a trailing group of points that share their ts with
 * the point after the page: paging by ts (next min_ts = last ts + 1) would otherwise skip the rest of the group.
 * Undefined when the whole page is one millisecond: the caller then answers that whole group instead.
 */
function wholeMilliseconds(page: string[], items: number): string[] | undefined {
  const next = tsOf(page[items] as string)
  let end = items
  while (end > 0 && tsOf(page[end - 1] as string) === next) end--
  return end === 0 ? undefined : page.slice(0, end)
}

const BUCKET_ID = new RegExp(BUCKET_ID_PATTERN)

export interface BucketServiceOptions {
  buckets: BucketsStore
  points: PointsStore
  log: Logger
  /** How often the retention job runs (default 1 h); 0 = only on demand (`applyRetention`). */
  retentionIntervalMs?: number
  /** Points deleted per step by purges and retention, with a turn of the event loop between steps. */
  deleteChunk?: number
  /** The clock (tests move it). */
  now?: () => number
}

/** What a write is for: only logged, never checked against the bucket's `config.source`. */
export interface WriteOptions {
  source?: string
}

/** A point with a stable identity (`origin` of the write, then `seq`): a rewrite overwrites it. */
export interface KeyedPoint {
  /** ms since epoch. */
  ts: number
  /** Unique within the origin; a non-negative safe integer. */
  seq: number
  /** Stored as the point's value; must serialise as JSON. */
  value: unknown
}

/** Who writes keyed points: `origin` names the sequence their seqs belong to. */
export interface KeyedWriteOptions extends WriteOptions {
  /** `^[A-Za-z0-9_.-]{1,160}$`, e.g. an agent's device id and buffer epoch. */
  origin: string
}

const ORIGIN = /^[A-Za-z0-9_.-]{1,160}$/

/** A streamed export, ready to send. */
export interface BucketExport {
  stream: Readable
  contentType: string
  /** Suggested file name (`<bucket>.<format>`). */
  filename: string
}

const keyOf = (user: string, bucket: string) => `${user}/${bucket}`
const viewOf = ({ user: _user, deleting: _deleting, ...view }: BucketRecord): BucketView => view
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

export class BucketService {
  /** Points streamed by exports since start (tests use it to see that an export reads as the client reads). */
  exportedPoints = 0
  /** Exports whose stream is still open. */
  activeExports = 0

  readonly #buckets: BucketsStore
  readonly #points: PointsStore
  readonly #log: Logger
  readonly #deleteChunk: number
  readonly #now: () => number
  readonly #batcher: WriteBatcher
  /** Bucket records by `user/bucket`: every write looks its bucket up. Only this service changes records. */
  readonly #cache = new Map<string, BucketRecord>()
  /** Running point deletions of deleted buckets, by `user/bucket`. */
  readonly #purges = new Map<string, Promise<void>>()
  /** Serialises create/update/delete of one bucket. */
  readonly #locks = new Map<string, Promise<unknown>>()
  #retentionRun: Promise<{ deleted: number }> | undefined
  #timer: NodeJS.Timeout | undefined
  #closing = false

  private constructor(opts: BucketServiceOptions) {
    this.#buckets = opts.buckets
    this.#points = opts.points
    this.#log = opts.log
    this.#deleteChunk = opts.deleteChunk ?? 1000
    this.#now = opts.now ?? Date.now
    this.#batcher = new WriteBatcher((writes) => this.#points.write(writes))
  }

  /** Opens the service: resumes deleting the points of buckets deleted before a restart, starts the retention timer. */
  static async open(opts: BucketServiceOptions): Promise<BucketService> {
    const service = new BucketService(opts)
    for (const record of await opts.buckets.list()) if (record.deleting) service.#purge(record)
    const every = opts.retentionIntervalMs ?? 3_600_000
    if (every > 0) {
      service.#timer = setInterval(() => {
        service.applyRetention().catch((err) => service.#log.error({ err }, 'bucket retention failed'))
      }, every)
      service.#timer.unref()
    }
    return service
  }

  /** A user's buckets, ordered by id. */
  async list(user: string): Promise<BucketView[]> {
    return (await this.#buckets.list(user)).filter((r) => !r.deleting).map(viewOf)
  }

  /** One bucket; 404 when it does not exist. */
  async get(user: string, bucket: string): Promise<BucketView> {
    return viewOf(await this.#live(user, bucket))
  }

  /** Creates a bucket (empty, even if one of that id was deleted a moment ago); 409 if it exists. */
  async create(user: string, input: BucketCreate): Promise<BucketView> {
    // The HTTP schemas check both; an in-process caller must not smuggle the key separators `!` and `/` either.
    if (!BUCKET_ID.test(input.bucket)) {
      throw new RelayErrors.TETHER_ERR_BAD_REQUEST(`body/bucket must match pattern "${BUCKET_ID_PATTERN}"`)
    }
    if (user === '' || /[!/]/.test(user))
      throw new RelayErrors.TETHER_ERR_BAD_REQUEST(`user ${user} is not valid`)
    const key = keyOf(user, input.bucket)
    return this.#exclusive(key, async () => {
      await this.#purges.get(key)
      const existing = await this.#record(user, input.bucket)
      if (existing?.deleting) {
        throw new RelayErrors.TETHER_ERR_CONFLICT(`bucket ${input.bucket} is still being deleted; try again`)
      }
      if (existing) throw new RelayErrors.TETHER_ERR_CONFLICT(`bucket ${input.bucket} already exists`)
      const record: BucketRecord = {
        user,
        bucket: input.bucket,
        name: input.name ?? input.bucket,
        description: input.description ?? '',
        enabled: input.enabled ?? true,
        config: input.config ?? { source: 'api' },
        ...(input.retention_days === undefined ? {} : { retention_days: input.retention_days }),
        created_ts: this.#now(),
      }
      await this.#save(record)
      return viewOf(record)
    })
  }

  /** Changes the given fields (`retention_days: null` keeps points forever); the id never changes (400). */
  async update(user: string, bucket: string, input: BucketUpdate): Promise<BucketView> {
    if (input.bucket !== undefined && input.bucket !== bucket) {
      throw new RelayErrors.TETHER_ERR_BAD_REQUEST(
        `body/bucket cannot change (${bucket}): create a new bucket instead`,
      )
    }
    return this.#exclusive(keyOf(user, bucket), async () => {
      const record = { ...(await this.#live(user, bucket)) }
      if (input.name !== undefined) record.name = input.name
      if (input.description !== undefined) record.description = input.description
      if (input.enabled !== undefined) record.enabled = input.enabled
      if (input.config !== undefined) record.config = input.config
      if (input.retention_days === null) delete record.retention_days
      else if (input.retention_days !== undefined) record.retention_days = input.retention_days
      await this.#save(record)
      return viewOf(record)
    })
  }

  /** Deletes a bucket at once (404 if absent); its points are deleted in the background (see `settled`). */
  async delete(user: string, bucket: string): Promise<void> {
    await this.#exclusive(keyOf(user, bucket), async () => {
      const record = { ...(await this.#live(user, bucket)), deleting: true }
      await this.#save(record)
      this.#purge(record)
    })
  }

  /**
   * Stores points: `body` is one point (a JSON object) or an array of them; a point's own integer `ts` (ms since
   * epoch) is honoured and removed from the value, else it gets now; a point with the ts of a stored one
   * replaces it. Resolves with the number of points once they are durably written. Throws 404 for an unknown
   * bucket, 409 for a disabled one, 400 naming the first bad element.
   */
  async write(user: string, bucket: string, body: unknown, opts: WriteOptions = {}): Promise<number> {
    const record = await this.#live(user, bucket)
    if (!record.enabled) {
      this.#log.debug({ user, bucket, source: opts.source }, 'write to a disabled bucket refused')
      throw new RelayErrors.TETHER_ERR_CONFLICT(`bucket ${bucket} is disabled`)
    }
    const points = pointRecords(body, this.#now())
    if (points.length > 0) await this.#batcher.write({ user, bucket, points })
    return points.length
  }

  /**
   * Stores points idempotently: each key derives from (ts, origin, seq), so writing the same points again (a
   * redelivery after a crash) overwrites them instead of adding copies, and points of one millisecond keep their
   * seq order. Resolves with the number written once durable. Throws 404 for an unknown bucket, 409 for a disabled
   * one, 400 for a bad origin, ts, seq or value.
   */
  async writeAt(
    user: string,
    bucket: string,
    points: KeyedPoint[],
    opts: KeyedWriteOptions,
  ): Promise<number> {
    if (!ORIGIN.test(opts.origin))
      throw new RelayErrors.TETHER_ERR_BAD_REQUEST(`origin ${opts.origin} is not valid`)
    const record = await this.#live(user, bucket)
    if (!record.enabled) throw new RelayErrors.TETHER_ERR_CONFLICT(`bucket ${bucket} is disabled`)
    const records = points.map(({ ts, seq, value }, i) => {
      if (!Number.isSafeInteger(ts) || ts < 0 || !Number.isSafeInteger(seq) || seq < 0) {
        throw new RelayErrors.TETHER_ERR_BAD_REQUEST(`points/${i}: ts and seq must be non-negative integers`)
      }
      let text: string | undefined
      try {
        text = JSON.stringify(value)
      } catch (err) {
        throw new RelayErrors.TETHER_ERR_BAD_REQUEST(
          `points/${i} is not serialisable: ${(err as Error).message}`,
        )
      }
      if (text === undefined) throw new RelayErrors.TETHER_ERR_BAD_REQUEST(`points/${i} has no JSON value`)
      const tag = `${opts.origin}:${seq.toString(16).padStart(16, '0')}`
      return { ts, tag, json: `{"ts":${ts},"val":${text}}` }
    })
    if (records.length > 0) await this.#batcher.write({ user, bucket, points: records })
    return records.length
  }

  /** A page of points (`items` default 100, max 1000; `sort` default desc, newest first), parsed. */
  async read(user: string, bucket: string, query: ReadQuery = {}): Promise<BucketPoint[]> {
    return JSON.parse(await this.readJson(user, bucket, query)) as BucketPoint[]
  }

  /** The same page as `read`, as the JSON text of an array of `{ts, val}` (built without parsing any point). */
  async readJson(user: string, bucket: string, query: ReadQuery = {}): Promise<string> {
    await this.#live(user, bucket)
    const items = query.items ?? 100
    // One point past the page tells whether the page would end inside a millisecond's group of points.
    const cursor = this.#points.scan(user, bucket, {
      min_ts: query.min_ts,
      max_ts: query.max_ts,
      reverse: (query.sort ?? 'desc') === 'desc',
      limit: items + 1,
    })
    let page: string[] = []
    try {
      // A full page ends the loop without asking for the (empty) rest: paging is latency-bound.
      while (page.length <= items) {
        const batch = await cursor.next()
        if (batch.length === 0) break
        page = page.length === 0 ? batch : page.concat(batch)
      }
    } finally {
      // Not awaited, for the same reason: nothing depends on the iterator being closed before the answer.
      cursor.close().catch((err) => this.#log.warn({ err }, 'closing a bucket iterator failed'))
    }
    if (page.length > items) {
      // More than a page of points in one millisecond: the only page that skips none of them is all of them.
      page =
        wholeMilliseconds(page, items) ??
        (await this.#allAt(user, bucket, tsOf(page[0] as string), (query.sort ?? 'desc') === 'desc'))
    }
    return `[${page.join(',')}]`
  }

  /** Every point stored at exactly `ts` (points that got the same clock reading). */
  async #allAt(user: string, bucket: string, ts: number, reverse: boolean): Promise<string[]> {
    const cursor = this.#points.scan(user, bucket, { min_ts: ts, max_ts: ts, reverse })
    const all: string[] = []
    try {
      for (let batch = await cursor.next(); batch.length > 0; batch = await cursor.next()) all.push(...batch)
    } finally {
      await cursor.close()
    }
    return all
  }

  /**
   * A streamed export of a range, oldest first: `json` (one array of `{ts, val}`), `ndjson` (one `{ts, val}` per
   * line) or `csv` (header `ts,<columns>`, nested objects flattened into dotted columns, found by a first pass
   * over the range). Both passes read one snapshot, and the stream reads the store only as the client reads.
   */
  async export(user: string, bucket: string, query: ExportQuery = {}): Promise<BucketExport> {
    await this.#live(user, bucket)
    const format = query.format ?? 'json'
    const range: TsRange = { min_ts: query.min_ts, max_ts: query.max_ts }
    const snapshot = this.#points.snapshot()
    this.activeExports++
    let released = false
    const release = async () => {
      if (released) return
      released = true
      this.activeExports--
      await snapshot.close().catch(() => {})
    }
    try {
      const columns =
        format === 'csv' ? await csvColumns(this.#points.scan(user, bucket, { ...range, snapshot })) : []
      const cursor = this.#points.scan(user, bucket, { ...range, snapshot })
      const chunks = exportChunks(format, cursor, columns, (n) => {
        this.exportedPoints += n
      })
      const stream = Readable.from(chunks, { objectMode: false, highWaterMark: 64 * 1024 })
      // An export that never started (client gone before the first read) never runs the generator's finally.
      stream.once(
        'close',
        () =>
          void cursor
            .close()
            .catch(() => {})
            .then(release),
      )
      return { stream, contentType: EXPORT_CONTENT_TYPES[format], filename: `${bucket}.${format}` }
    } catch (err) {
      await release()
      throw err
    }
  }

  /** Runs the retention job now: deletes points older than `retention_days` in every bucket that has one. */
  applyRetention(): Promise<{ deleted: number }> {
    this.#retentionRun ??= this.#runRetention().finally(() => {
      this.#retentionRun = undefined
    })
    return this.#retentionRun
  }

  /** Resolves once the points of every bucket deleted so far are gone. */
  async settled(): Promise<void> {
    while (this.#purges.size > 0) await Promise.all(this.#purges.values())
  }

  /** Stops the timer and lets running writes finish; an unfinished purge resumes at the next `open`. */
  async close(): Promise<void> {
    this.#closing = true
    clearInterval(this.#timer)
    await this.#batcher.barrier()
    await this.#retentionRun?.catch(() => {})
    await Promise.all(this.#purges.values())
  }

  async #runRetention(): Promise<{ deleted: number }> {
    const now = this.#now()
    let deleted = 0
    for (const record of await this.#buckets.list()) {
      if (this.#closing) break
      if (record.deleting || record.retention_days === undefined) continue
      const cutoff = now - record.retention_days * DAY_MS
      if (cutoff > 0) deleted += await this.#deleteRange(record.user, record.bucket, { max_ts: cutoff - 1 })
    }
    if (deleted > 0) this.#log.info({ deleted }, 'bucket retention deleted old points')
    return { deleted }
  }

  /** Deletes a range in chunks, a turn of the event loop between chunks, so writes keep flowing. */
  async #deleteRange(user: string, bucket: string, range: TsRange): Promise<number> {
    let total = 0
    let min = range.min_ts ?? 0
    while (!this.#closing) {
      const step = await this.#points.deleteOldest(user, bucket, { ...range, min_ts: min }, this.#deleteChunk)
      total += step.deleted
      if (step.deleted < this.#deleteChunk || step.last_ts === undefined) break
      // Restart at the last deleted ts, not after it: points of one millisecond (ts.seq keys) may straddle two
      // chunks. The deleted keys are gone, so the seek lands on what is left of that millisecond.
      min = step.last_ts
      await nextTurn()
    }
    return total
  }

  /** Deletes the points of a bucket marked `deleting`, then its record. */
  #purge(record: BucketRecord): void {
    const { user, bucket } = record
    const key = keyOf(user, bucket)
    const run = (async () => {
      // Writes accepted before the delete must land before the purge, or they would outlive it.
      await this.#batcher.barrier()
      await this.#deleteRange(user, bucket, {})
      if (this.#closing) return // the record keeps its flag: the next open resumes
      await this.#buckets.del(user, bucket)
      this.#cache.delete(key)
    })()
      .catch((err) => this.#log.error({ err, user, bucket }, 'deleting the points of a bucket failed'))
      .finally(() => this.#purges.delete(key))
    this.#purges.set(key, run)
  }

  async #record(user: string, bucket: string): Promise<BucketRecord | undefined> {
    const key = keyOf(user, bucket)
    const cached = this.#cache.get(key)
    if (cached) return cached
    const record = await this.#buckets.get(user, bucket)
    if (record) this.#cache.set(key, record)
    return record
  }

  /** The bucket, unless absent or being deleted (404). */
  async #live(user: string, bucket: string): Promise<BucketRecord> {
    const record = await this.#record(user, bucket)
    if (!record || record.deleting) throw new RelayErrors.TETHER_ERR_NOT_FOUND(`bucket ${user}/${bucket}`)
    return record
  }

  async #save(record: BucketRecord): Promise<void> {
    await this.#buckets.put(record)
    this.#cache.set(keyOf(record.user, record.bucket), record)
  }

  #exclusive<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(key) ?? Promise.resolve()
    const run = previous.catch(() => {}).then(fn)
    const tail = run.catch(() => {})
    this.#locks.set(key, tail)
    void tail.then(() => {
      if (this.#locks.get(key) === tail) this.#locks.delete(key)
    })
    return run
  }
}
