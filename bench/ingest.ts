/**
 * bench/ingest: wrk POSTs JSON to an HTTP device's callback with store-in-bucket on (64 connections, 30 s by
 * default), then every point of the run is read back through the streamed export and checked: each wrk thread
 * numbers its bodies 1, 2, 3…, so a gap in a thread's numbers is a lost point. The baseline, measured in the
 * same run with the same wrk settings, is the relay's `/healthz` (fastify routing and HTTP, no storage).
 *
 *   node --import tsx bench/ingest.ts      (BENCH_WRK_THREADS, BENCH_WRK_CONNS=64, BENCH_WRK_DURATION=30)
 */
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import { json } from './lib/bucket-client.ts'
import { envInt, envSeconds } from './lib/env.ts'
import { log } from './lib/log.ts'
import { wrkVersion } from './lib/portal-tools.ts'
import { runWrk, type WrkResult, type WrkSettings } from './lib/portal-wrk.ts'
import { makeTempDir, stopChildren } from './lib/processes.ts'
import { runBench } from './lib/run-bench.ts'
import { installMissing, which } from './lib/tools.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const RESULTS_FILE = path.join(ROOT, 'bench', 'results', 'ingest.json')
const PASSWORD = 'bench-admin-password'
const TARGET_PER_SECOND = 10_000
const TARGET_P99_MS = 20
const WRK: WrkSettings = {
  threads: envInt('BENCH_WRK_THREADS', 2),
  connections: envInt('BENCH_WRK_CONNS', 64),
  seconds: envSeconds('BENCH_WRK_DURATION', 30),
  timeoutSeconds: 5,
}

/** wrk script: each thread posts `{"t": thread, "n": 1, 2, 3…}` with the callback token. */
function luaScript(token: string): string {
  return `local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local n = 0
local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer ${token}" }
function request()
  n = n + 1
  return wrk.format("POST", nil, headers, string.format('{"t":%d,"n":%d}', tid, n))
end
`
}

/** Starts the relay child (bench/lib/bucket-relay.ts) and resolves with its URL. */
function startRelay(dataDir: string) {
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'bench/lib/bucket-relay.ts'), dataDir],
    {
      env: { ...process.env, TETHER_ADMIN_PASSWORD: PASSWORD },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  const url = new Promise<string>((resolve, reject) => {
    readline.createInterface({ input: proc.stdout }).once('line', (line) => resolve(JSON.parse(line).url))
    proc.once('exit', (code) => reject(new Error(`relay exited ${code}`)))
  })
  return { proc, url }
}

/**
 * Streams the bucket's ndjson export and checks every thread's numbers are contiguous from 1. A number missing
 * among a thread's last `inFlight` is a request wrk abandoned when it stopped (sent, never answered): counted
 * apart. Any other gap is a lost point.
 */
function verify(
  url: string,
  token: string,
  inFlight: number,
): Promise<{ points: number; missing: number; abandonedAtStop: number; duplicates: number }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers: { authorization: `Bearer ${token}` } }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`export answered ${res.statusCode}`))
        const seen = new Map<number, Set<number>>()
        let points = 0
        let duplicates = 0
        readline.createInterface({ input: res }).on('line', (line) => {
          if (!line) return
          const { val } = JSON.parse(line) as { val: { t: number; n: number } }
          points++
          let set = seen.get(val.t)
          if (!set) {
            set = new Set()
            seen.set(val.t, set)
          }
          if (set.has(val.n)) duplicates++
          set.add(val.n)
        })
        res.on('end', () => {
          let missing = 0
          let abandonedAtStop = 0
          for (const [t, set] of seen) {
            let max = 0
            for (const n of set) if (n > max) max = n
            // wrk calls the first thread's request() once to check the script, and never sends that body.
            for (let n = t === 1 ? 2 : 1; n < max; n++) {
              if (set.has(n)) continue
              if (n > max - inFlight) abandonedAtStop++
              else {
                missing++
                log(`thread ${t}: number ${n} missing (highest ${max})`)
              }
            }
          }
          resolve({ points, missing, abandonedAtStop, duplicates })
        })
        res.on('error', reject)
      })
      .on('error', reject)
  })
}

async function main(): Promise<number> {
  installMissing([{ cmd: 'wrk', pkg: 'wrk' }])
  const wrk = which('wrk') as string
  const dir = makeTempDir('ingest')
  const relay = startRelay(path.join(dir, 'data'))
  const base = await relay.url
  const { access_token: admin } = await json<{ access_token: string }>(`${base}/oauth/token`, 'POST', '', {
    grant_type: 'password',
    username: 'admin',
    password: PASSWORD,
  })
  await json(`${base}/v1/users/admin/devices`, 'POST', admin, { device: 'ingest', type: 'http' }, 201)
  await json(`${base}/v1/users/admin/buckets`, 'POST', admin, { bucket: 'ingest' }, 201)
  const dev = `${base}/v3/users/admin/devices/ingest`
  await json(`${dev}/callback`, 'PUT', admin, { actions: { write_bucket: 'ingest' } })
  const { token, url } = await json<{ token: string; url: string }>(`${dev}/callback`, 'GET', admin)
  const script = path.join(dir, 'post.lua')
  writeFileSync(script, luaScript(token))

  log(`baseline: wrk GET /healthz, ${WRK.connections} connections, ${WRK.seconds}s`)
  const healthz = await runWrk(wrk, WRK, WRK.seconds, `${base}/healthz`)
  log(`ingest: wrk POST callback/data with write_bucket, ${WRK.connections} connections, ${WRK.seconds}s`)
  const ingest = await runWrk(wrk, WRK, WRK.seconds, url, {}, ['-s', script])
  const perThread = Math.ceil(WRK.connections / WRK.threads)
  const check = await verify(`${base}/v1/users/admin/buckets/ingest/export?format=ndjson`, admin, perThread)
  // What the relay itself answered: every callback it processed must be a stored point.
  const stats = await json<{ total: { messages: number } }>(`${dev}/stats`, 'GET', admin)
  const processed = stats.total.messages
  relay.proc.kill('SIGTERM')
  await stopChildren([relay.proc])

  const row = (name: string, r: WrkResult) =>
    `${name.padEnd(28)}${r.requestsPerSecond.toFixed(0).padStart(10)}${r.latency.p50Ms.toFixed(2).padStart(9)}${r.latency.p99Ms.toFixed(2).padStart(9)}${String(r.non2xx).padStart(9)}`
  const lines = [
    `${'path'.padEnd(28)}${'req/s'.padStart(10)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'non-2xx'.padStart(9)}`,
    row('GET /healthz (baseline)', healthz),
    row('POST callback → bucket', ingest),
    '',
    `callbacks/s ${ingest.requestsPerSecond.toFixed(0)} (target ≥ ${TARGET_PER_SECOND}: ${ingest.requestsPerSecond >= TARGET_PER_SECOND ? 'met' : 'missed'}), ratio to /healthz ${(ingest.requestsPerSecond / healthz.requestsPerSecond).toFixed(2)}`,
    `p99 ${ingest.latency.p99Ms.toFixed(2)} ms (target ≤ ${TARGET_P99_MS}: ${ingest.latency.p99Ms <= TARGET_P99_MS ? 'met' : 'missed'})`,
    `read back: ${check.points} points for ${ingest.requests} completed callbacks; lost ${check.missing}, duplicates ${check.duplicates}` +
      ` (${check.abandonedAtStop} requests abandoned in flight when wrk stopped; the relay processed ${processed} callbacks)`,
  ]
  process.stdout.write(`${lines.join('\n')}\n`)
  writeFileSync(
    RESULTS_FILE,
    `${JSON.stringify(
      {
        command: 'node --import tsx bench/ingest.ts',
        date: new Date().toISOString(),
        machine: {
          cpu: os.cpus()[0]?.model,
          nproc: os.availableParallelism(),
          node: process.version,
          wrk: wrkVersion(wrk),
        },
        settings: WRK,
        baseline: {
          path: 'GET /healthz',
          requestsPerSecond: healthz.requestsPerSecond,
          p99Ms: healthz.latency.p99Ms,
        },
        ingest: {
          requests: ingest.requests,
          requestsPerSecond: ingest.requestsPerSecond,
          p50Ms: ingest.latency.p50Ms,
          p99Ms: ingest.latency.p99Ms,
          non2xx: ingest.non2xx,
          socketErrors: ingest.socketErrors,
        },
        readBack: { ...check, processedByRelay: processed },
        ratioToBaseline: ingest.requestsPerSecond / healthz.requestsPerSecond,
        targets: { perSecond: TARGET_PER_SECOND, p99Ms: TARGET_P99_MS },
      },
      null,
      2,
    )}\n`,
  )
  log(`wrote ${path.relative(ROOT, RESULTS_FILE)}`)
  const ok =
    ingest.non2xx === 0 && check.missing === 0 && check.duplicates === 0 && check.points >= ingest.requests
  return ok ? 0 : 1
}

await runBench(main, envInt('BENCH_TIMEOUT', 600))
