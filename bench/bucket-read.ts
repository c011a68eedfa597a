/**
 * Bucket read benchmark: writes BENCH_POINTS points (default 1,000,000) into a bucket of a relay running as a
 * child process, then measures range reads over all of them through the HTTP API (pages of 1000 via `…/data`:
 * one client oldest first, one newest first, and BENCH_PAGERS clients each paging through its own slice of the
 * range; the streamed ndjson and csv exports), each as points/s and as a ratio against
 * a baseline measured in the same run: raw LevelDB iteration (the `level` package, no HTTP) over the very same
 * keys, once the relay has stopped. Run: `node --import tsx bench/bucket-read.ts`. Writes
 * bench/results/bucket-read.json. Knobs: BENCH_POINTS, BENCH_ROUNDS (runs of each read, median reported),
 * BENCH_PAGERS (clients of pagesAscParallel, default 4), BENCH_ONLY (some of pagesAsc, pagesDesc,
 * pagesAscParallel, exportNdjson, exportCsv), BENCH_CPU_PROFILE (a dir: the relay child writes its CPU
 * profile there on exit).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Level } from 'level'
import { agent, countLines, json, request } from './lib/bucket-client.ts'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const RESULTS_FILE = path.join(HERE, 'results', 'bucket-read.json')
const TARGET_POINTS_PER_SEC = 500_000

/** A positive integer from the environment, or the fallback. */
function envInt(name: string, fallback: number): number {
  const raw = process.env[name]
  if (!raw) return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${raw}`)
  return n
}

const SETTINGS = {
  points: envInt('BENCH_POINTS', 1_000_000),
  rounds: envInt('BENCH_ROUNDS', 3),
  pageItems: 1000,
  /** pagesAscParallel: clients paging at once, each through its own slice of the range. */
  parallelPagers: envInt('BENCH_PAGERS', 4),
  writeBatch: 1000,
  writeConcurrency: 4,
  /** Bytes the raw baseline's iterator reads ahead per step: the relay's setting (LevelDB's default is 16 KiB). */
  baselineReadAheadBytes: 256 * 1024,
}
const READS = ['pagesAsc', 'pagesDesc', 'pagesAscParallel', 'exportNdjson', 'exportCsv'] as const
type ReadName = (typeof READS)[number]
/** BENCH_ONLY: a comma list of the reads to run (default all). */
const ONLY: ReadName[] = (() => {
  const names = (process.env.BENCH_ONLY ?? '').split(',').filter(Boolean)
  for (const n of names)
    if (!(READS as readonly string[]).includes(n)) throw new Error(`BENCH_ONLY: unknown ${n}`)
  return names.length > 0 ? (names as ReadName[]) : [...READS]
})()
const T0 = 1_700_000_000_000
const USER = 'admin'
const BUCKET = 'bench'

const log = (msg: string) => process.stderr.write(`[bucket-read] ${msg}\n`)
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
const rate = (n: number, ms: number) => Math.round((n / ms) * 1000)

/** The i-th point: a typical sensor reading, ~80 bytes stored. */
const pointOf = (i: number) => ({
  ts: T0 + i * 1000,
  temp: 20 + (i % 100) / 10,
  hum: 40 + (i % 37),
  site: i % 2 ? 'north' : 'south',
  ok: i % 3 !== 0,
})

let child: ChildProcess | undefined
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'tether-bench-buckets-'))
const cleanup = () => {
  if (child && child.exitCode === null) child.kill('SIGKILL')
  rmSync(dataDir, { recursive: true, force: true })
}
process.on('exit', cleanup)
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130))
// The whole run stops by itself: a hung relay must not hang the bench.
setTimeout(() => {
  log('watchdog: the bench took more than 20 minutes; stopping')
  process.exit(2)
}, 20 * 60_000).unref()

/** Starts the relay child over `dataDir` and answers its URL. */
async function startRelayChild(password: string): Promise<string> {
  const entry = path.join(HERE, 'lib', 'bucket-relay.ts')
  // BENCH_CPU_PROFILE=DIR: the relay writes a V8 CPU profile there on exit (see bench/cpuprofile-top.ts).
  const profile = process.env.BENCH_CPU_PROFILE
    ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROFILE}`]
    : []
  child = spawn(process.execPath, [...profile, '--import', 'tsx', entry, dataDir], {
    env: { ...process.env, TETHER_ADMIN_PASSWORD: password },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve)
    child?.once('exit', (code) => reject(new Error(`relay exited (${code}) before listening`)))
  })
  return (JSON.parse(first) as { url: string }).url
}

async function stopRelayChild(): Promise<void> {
  if (!child || child.exitCode !== null) return
  const exited = new Promise((resolve) => child?.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
}

/** Writes every point through the API, arrays of 1000, a few requests in flight; answers points/s. */
async function writeAll(base: string, token: string): Promise<number> {
  const started = performance.now()
  let next = 0
  const worker = async () => {
    while (next < SETTINGS.points) {
      const from = next
      next += SETTINGS.writeBatch
      const batch = []
      for (let i = from; i < Math.min(from + SETTINGS.writeBatch, SETTINGS.points); i++)
        batch.push(pointOf(i))
      const res = await json<{ written: number }>(`${base}/data`, 'POST', token, batch)
      if (res.written !== batch.length) throw new Error(`wrote ${res.written} of ${batch.length}`)
    }
  }
  await Promise.all(Array.from({ length: SETTINGS.writeConcurrency }, worker))
  return rate(SETTINGS.points, performance.now() - started)
}

/** The ts of a page's last point, read from the end of its text (the bench's points have no nested `ts`). */
function lastTs(text: string): number | undefined {
  const at = text.lastIndexOf('{"ts":')
  return at < 0 ? undefined : Number.parseInt(text.slice(at + 6, at + 30), 10)
}

/**
 * Pages through a ts range (inclusive bounds), asking again past the last ts, as a client would; answers the
 * number of points seen. Like a client that cares about speed, it asks for the next page as soon as it knows
 * the last ts, and parses the page (every point, checked) while the relay works on the next one.
 */
async function pageRange(base: string, token: string, sort: 'asc' | 'desc', min: number, max: number) {
  const url = (lo: number, hi: number) =>
    `${base}/data?items=${SETTINGS.pageItems}&sort=${sort}&min_ts=${lo}&max_ts=${hi}`
  let seen = 0
  let pending = request(url(min, max), 'GET', token)
  for (;;) {
    const res = await pending
    if (res.status !== 200) throw new Error(`page read: ${res.status} ${res.text.slice(0, 200)}`)
    const last = lastTs(res.text)
    if (last !== undefined) {
      pending = request(sort === 'asc' ? url(last + 1, max) : url(min, last - 1), 'GET', token)
    }
    const page = JSON.parse(res.text) as Array<{ ts: number }>
    if (page.length === 0) return seen
    if (page[page.length - 1]?.ts !== last) throw new Error(`last ts ${last} misread: ${page.at(-1)?.ts}`)
    seen += page.length
  }
}

/** The bucket's first and last ts, asked from the API as a client would. */
async function tsBounds(base: string, token: string): Promise<[number, number]> {
  const first = await json<Array<{ ts: number }>>(`${base}/data?items=1&sort=asc`, 'GET', token)
  const last = await json<Array<{ ts: number }>>(`${base}/data?items=1&sort=desc`, 'GET', token)
  return [first[0]?.ts ?? 0, last[0]?.ts ?? 0]
}

/** Reads every point with `pagers` clients, each paging through its own slice of the ts range; points/s. */
async function readPages(base: string, token: string, sort: 'asc' | 'desc', pagers = 1): Promise<number> {
  const started = performance.now()
  const [min, max] = await tsBounds(base, token)
  const step = Math.ceil((max - min + 1) / pagers)
  const slices = Array.from({ length: pagers }, (_, i) => [
    min + i * step,
    Math.min(max, min + (i + 1) * step - 1),
  ])
  const counts = await Promise.all(
    slices.map(([lo, hi]) => pageRange(base, token, sort, lo as number, hi as number)),
  )
  const seen = counts.reduce((a, b) => a + b, 0)
  if (seen !== SETTINGS.points) throw new Error(`paging saw ${seen} of ${SETTINGS.points} points`)
  return rate(seen, performance.now() - started)
}

/** Streams an export and counts its lines; answers points/s. */
async function readExport(base: string, token: string, format: 'ndjson' | 'csv'): Promise<number> {
  const started = performance.now()
  const { lines } = await countLines(`${base}/export?format=${format}`, token)
  const points = format === 'csv' ? lines - 1 : lines
  if (points !== SETTINGS.points)
    throw new Error(`${format} export gave ${points} of ${SETTINGS.points} points`)
  return rate(points, performance.now() - started)
}

/** Raw iteration over the bucket's keys in the relay's LevelDB (relay stopped); answers points/s. */
async function rawIteration(readAheadBytes: number | undefined): Promise<number> {
  const db = new Level<string, string>(path.join(dataDir, 'relay.db'), { valueEncoding: 'utf8' })
  await db.open()
  try {
    const prefix = `!bucket-points!${USER}!${BUCKET}!`
    const started = performance.now()
    const it = db.iterator({
      gte: prefix,
      lt: `${prefix.slice(0, -1)}"`,
      ...(readAheadBytes ? { highWaterMarkBytes: readAheadBytes } : {}),
    })
    let n = 0
    for (let batch = await it.nextv(1000); batch.length > 0; batch = await it.nextv(1000)) n += batch.length
    await it.close()
    if (n !== SETTINGS.points) throw new Error(`raw iteration saw ${n} of ${SETTINGS.points} points`)
    return rate(n, performance.now() - started)
  } finally {
    await db.close()
  }
}

/** Runs `fn` BENCH_ROUNDS times; answers all figures and their median. */
async function rounds(name: string, fn: () => Promise<number>): Promise<{ median: number; runs: number[] }> {
  const runs: number[] = []
  for (let r = 0; r < SETTINGS.rounds; r++) {
    runs.push(await fn())
    log(`${name}: ${runs.at(-1)?.toLocaleString('en')} points/s`)
  }
  return { median: median(runs), runs }
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg()
  log(`settings ${JSON.stringify(SETTINGS)}; data dir ${dataDir}`)
  const password = randomBytes(12).toString('hex')
  const url = await startRelayChild(password)
  const { access_token: token } = await json<{ access_token: string }>(`${url}/oauth/token`, 'POST', '', {
    grant_type: 'password',
    username: USER,
    password,
  })
  await json(`${url}/v1/users/${USER}/buckets`, 'POST', token, { bucket: BUCKET }, 201)
  const base = `${url}/v1/users/${USER}/buckets/${BUCKET}`

  const writePointsPerSec = await writeAll(base, token)
  log(`write: ${writePointsPerSec.toLocaleString('en')} points/s (arrays of ${SETTINGS.writeBatch})`)
  const reads: Record<ReadName, () => Promise<number>> = {
    pagesAsc: () => readPages(base, token, 'asc'),
    pagesDesc: () => readPages(base, token, 'desc'),
    pagesAscParallel: () => readPages(base, token, 'asc', SETTINGS.parallelPagers),
    exportNdjson: () => readExport(base, token, 'ndjson'),
    exportCsv: () => readExport(base, token, 'csv'),
  }
  const http: Partial<Record<ReadName, { median: number; runs: number[] }>> = {}
  for (const name of ONLY) http[name] = await rounds(name, reads[name])
  agent.destroy()
  await stopRelayChild()

  const baseline = await rounds('raw LevelDB iteration', () => rawIteration(SETTINGS.baselineReadAheadBytes))
  const baselineDefault = await rounds('raw LevelDB iteration, default read-ahead', () =>
    rawIteration(undefined),
  )

  const figures = Object.fromEntries(
    Object.entries(http).map(([name, r]) => [
      name,
      {
        pointsPerSec: r.median,
        runs: r.runs,
        ratioToBaseline: Number((r.median / baseline.median).toFixed(3)),
        meetsTarget: r.median >= TARGET_POINTS_PER_SEC,
      },
    ]),
  )
  const report = {
    bench: 'bucket-read',
    date: new Date().toISOString(),
    machine: {
      nproc: os.availableParallelism(),
      cpu: os.cpus()[0]?.model ?? 'unknown',
      memGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
      loadavgBefore: loadBefore.map((l) => Number(l.toFixed(2))),
      loadavgAfter: os.loadavg().map((l) => Number(l.toFixed(2))),
    },
    settings: { ...SETTINGS, reads: ONLY, targetPointsPerSec: TARGET_POINTS_PER_SEC },
    write: { pointsPerSec: writePointsPerSec },
    baseline: {
      what: 'raw LevelDB iteration (level, nextv(1000), keys and values) over the same keys, relay stopped',
      pointsPerSec: baseline.median,
      runs: baseline.runs,
      defaultReadAheadPointsPerSec: baselineDefault.median,
    },
    http: figures,
    notes: [
      'pages*: each page is parsed with JSON.parse and its last ts checked; a pager sends its next request as soon as it has read the last ts from the end of the text, then parses the page',
      'pagesAsc/pagesDesc: one pager, so one page in flight at a time: the figure is bounded by the round trip of one page',
      'exportCsv: two passes over the range (columns first, then rows), each point parsed once per pass',
    ],
  }
  mkdirSync(path.dirname(RESULTS_FILE), { recursive: true })
  writeFileSync(RESULTS_FILE, `${JSON.stringify(report, null, 2)}\n`)

  const rows: Array<[string, number, number]> = [
    ['raw LevelDB (baseline)', baseline.median, 1],
    ...Object.entries(figures).map(([name, f]): [string, number, number] => [
      name,
      f.pointsPerSec,
      f.ratioToBaseline,
    ]),
  ]
  console.log(`\n${SETTINGS.points.toLocaleString('en')} points, median of ${SETTINGS.rounds} runs`)
  console.log(`${'read'.padEnd(24)}${'points/s'.padStart(12)}${'× baseline'.padStart(12)}`)
  for (const [name, pps, ratio] of rows) {
    console.log(`${name.padEnd(24)}${pps.toLocaleString('en').padStart(12)}${ratio.toFixed(2).padStart(12)}`)
  }
  console.log(`write (arrays of ${SETTINGS.writeBatch}): ${writePointsPerSec.toLocaleString('en')} points/s`)
  console.log(`results: ${path.relative(process.cwd(), RESULTS_FILE)}`)
}

main().then(
  () => process.exit(0),
  (err) => {
    log(`failed: ${(err as Error).stack ?? err}`)
    process.exit(1)
  },
)
