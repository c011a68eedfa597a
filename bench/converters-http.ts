/**
 * bench/converters-http: ThingsBoard-compatible HTTP integration requests/s end to end, with wrk. A relay runs as
 * its own process (`cli/tether.mjs relay`) with ThingsBoard's documented HTTP decoder as an uplink converter and
 * an http integration using it; wrk POSTs realistic JSON uplinks (`{"deviceName":"Thermometer N",…}`, N over
 * BENCH_DEVICES names) to `/api/v1/integrations/http/{routingKey}`. Every answer is 204 once the point is
 * stored. Afterwards every provisioned device's bucket is read back: each wrk thread numbers its uplinks in the
 * decimals of `temperature`, so a gap is a lost point and a repeat a duplicate.
 *
 * Baselines, measured in the same run with the same wrk load and body: the same relay's HTTP device callback
 * (`/v3/…/callback/data` with write_bucket: the body stored as is, no converter, no integration), and a bare
 * node:http server on loopback that parses the JSON and answers 204 (the HTTP stack's ceiling in Node).
 *
 *   node --no-node-snapshot --import tsx bench/converters-http.ts
 *     (BENCH_WRK_THREADS=2, BENCH_WRK_CONNS=64, BENCH_WRK_DURATION=15, BENCH_WRK_WARMUP=3, BENCH_DEVICES=100,
 *      BENCH_ONLY=bare,callback,integration, BENCH_RELAY_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof")
 */
import { type ChildProcess, spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import { TB_HTTP_DECODER } from '../test/relay/integrations/helpers.ts'
import { json, request } from './lib/bucket-client.ts'
import { envInt, envList, envSeconds } from './lib/env.ts'
import { log } from './lib/log.ts'
import { wrkVersion } from './lib/portal-tools.ts'
import { runWrk, type WrkResult, type WrkSettings } from './lib/portal-wrk.ts'
import { freePort } from './lib/ports.ts'
import { isRunning, makeTempDir, ProcWatcher, spawnChild, stopChildren, tailOf } from './lib/processes.ts'
import { runBench } from './lib/run-bench.ts'
import { nodeArgsFrom } from './lib/tether-path.ts'
import { installMissing, which } from './lib/tools.ts'
import { sleep, waitFor } from './lib/wait.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const RESULTS_FILE = path.join(ROOT, 'bench', 'results', 'converters-http.json')
const TETHER_CLI = path.join(ROOT, 'cli', 'tether.mjs')
const COMMAND = 'node --no-node-snapshot --import tsx bench/converters-http.ts'
const PASSWORD = 'bench-admin-password'
const TARGET_PER_SECOND = 8_000
const INTEGRATION = 'tb'
const WRK: WrkSettings = {
  threads: envInt('BENCH_WRK_THREADS', 2),
  connections: envInt('BENCH_WRK_CONNS', 64),
  seconds: envSeconds('BENCH_WRK_DURATION', 15),
  timeoutSeconds: 5,
}
const WARMUP = envInt('BENCH_WRK_WARMUP', 3, 0)
const DEVICES = envInt('BENCH_DEVICES', 100)
const PATHS = ['bare', 'callback', 'integration'] as const
type PathName = (typeof PATHS)[number]
const ONLY = envList('BENCH_ONLY')
const SELECTED = PATHS.filter((p) => ONLY.length === 0 || ONLY.includes(p))
const LABELS: Record<PathName, string> = {
  bare: 'bare node:http (baseline)',
  callback: 'device callback → bucket',
  integration: 'HTTP integration (TB decoder)',
}
/** The measured run's uplinks carry run 3 in `temperature`, the warm-up's run 2 (see luaScript). */
const RUN = { warmup: 2, measured: 3 } as const

/**
 * wrk script: each thread posts ThingsBoard's example uplink for `Thermometer 0…DEVICES-1` in turn. The
 * temperature `RT.nnnnnnn` (R the run, T the thread, n the thread's 1, 2, 3…) is a plausible reading that
 * identifies the request: it is what the decoder keeps as telemetry, so the stored points can be checked.
 */
function luaScript(run: number, headers: Record<string, string>): string {
  const h = Object.entries({ 'Content-Type': 'application/json', ...headers })
    .map(([k, v]) => `["${k}"] = "${v}"`)
    .join(', ')
  return `local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local n = 0
local headers = { ${h} }
function request()
  n = n + 1
  local d = n % ${DEVICES}
  local body = string.format('{"deviceName":"Thermometer %d","deviceType":"thermostat","model":"TH-20","param2":"SN-%05d","temperature":%d.%07d}',
    d, d, ${run * 10} + tid, n)
  return wrk.format("POST", nil, headers, body)
end
`
}

/** The bare node:http server: parses the JSON body and answers 204 (400 when it does not parse). */
const BARE_SERVER = `const http = require('node:http')
http.createServer((req, res) => {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    try { JSON.parse(Buffer.concat(chunks).toString('utf8')); res.writeHead(204) } catch { res.writeHead(400) }
    res.end()
  })
}).listen(0, '127.0.0.1', function () { process.stdout.write(JSON.stringify({ port: this.address().port }) + '\\n') })
`

const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100

/** utime + stime of a /proc …/stat line, in seconds. */
function statSeconds(file: string): number {
  const stat = readFileSync(file, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / TICKS
}

/**
 * CPU seconds of a process's main thread (its JavaScript event loop) and of all its other threads together
 * (converter isolates, LevelDB and libuv workers, GC helpers): node names every thread "node".
 */
function threadCpu(pid: number): { main: number; others: number } {
  let main = 0
  let others = 0
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const s = statSeconds(`/proc/${pid}/task/${tid}/stat`)
      if (Number(tid) === pid) main = s
      else others += s
    } catch {
      // The thread ended meanwhile; its time is in neither sample.
    }
  }
  return { main, others }
}

/**
 * Samples the CPU time of the bench's running `wrk` child every 200 ms while `fn` runs; answers the last sample
 * (it misses at most wrk's final 200 ms).
 */
async function wrkCpuDuring<T>(fn: () => Promise<T>): Promise<{ result: T; wrkCpuSeconds: number }> {
  let last = 0
  const sample = () => {
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
        const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
        if (comm === 'wrk' && ppid === process.pid) last = Math.max(last, statSeconds(`/proc/${pid}/stat`))
      } catch {
        // Gone meanwhile.
      }
    }
  }
  const timer = setInterval(sample, 200)
  try {
    const result = await fn()
    return { result, wrkCpuSeconds: last }
  } finally {
    clearInterval(timer)
  }
}

/** Busy and total jiffies of the whole machine (every process, other users' included), from /proc/stat. */
function machineCpu(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  const total = f.reduce((a, b) => a + b, 0)
  return { busy: total - f[3] - f[4], total }
}

interface Numbers {
  /** Per run and thread, the numbers read back. */
  seen: Map<string, Set<number>>
  points: number
  duplicates: number
  /** Points whose temperature does not decode (must be 0). */
  foreign: number
}

/** Streams one bucket's ndjson export into `acc`. */
function readBucket(url: string, token: string, acc: Numbers): Promise<void> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers: { authorization: `Bearer ${token}` } }, (res) => {
        if (res.statusCode !== 200) {
          res.resume()
          return reject(new Error(`${url} answered ${res.statusCode}`))
        }
        readline
          .createInterface({ input: res })
          .on('line', (line) => {
            if (!line) return
            const t = (JSON.parse(line) as { val: { temperature?: number } }).val.temperature
            if (typeof t !== 'number') {
              acc.foreign++
              return
            }
            const whole = Math.floor(t)
            const n = Math.round((t - whole) * 1e7)
            const key = `${Math.floor(whole / 10)}:${whole % 10}`
            let set = acc.seen.get(key)
            if (!set) {
              set = new Set()
              acc.seen.set(key, set)
            }
            acc.points++
            if (set.has(n)) acc.duplicates++
            set.add(n)
          })
          .on('close', resolve)
        res.on('error', reject)
      })
      .on('error', reject)
  })
}

interface ReadBack {
  buckets: number
  /** Points of the measured run. */
  points: number
  /** Numbers missing before a thread's last `inFlight` ones: lost. */
  missing: number
  /** Numbers missing among a thread's last `inFlight`: requests wrk abandoned when it stopped. */
  abandonedAtStop: number
  duplicates: number
  foreign: number
  /** Points of the warm-up run (checked the same way). */
  warmupPoints: number
  warmupMissing: number
}

/** Checks the numbers of `run`: every thread's 1…max present once (bar the in-flight tail). */
function gaps(acc: Numbers, run: number, inFlight: number) {
  let points = 0
  let missing = 0
  let abandonedAtStop = 0
  for (const [key, set] of acc.seen) {
    const [r, t] = key.split(':').map(Number)
    if (r !== run) continue
    points += set.size
    let max = 0
    for (const n of set) if (n > max) max = n
    // wrk calls the first thread's request() once to check the script, and never sends that body.
    for (let n = t === 1 ? 2 : 1; n < max; n++) {
      if (set.has(n)) continue
      if (n > max - inFlight) abandonedAtStop++
      else {
        missing++
        if (missing <= 10) log(`run ${r} thread ${t}: number ${n} missing (highest ${max})`)
      }
    }
  }
  return { points, missing, abandonedAtStop }
}

async function readBack(base: string, token: string, buckets: string[]): Promise<ReadBack> {
  const acc: Numbers = { seen: new Map(), points: 0, duplicates: 0, foreign: 0 }
  for (const b of buckets) {
    await readBucket(`${base}/v1/users/admin/buckets/${b}/export?format=ndjson`, token, acc)
  }
  const inFlight = Math.ceil(WRK.connections / WRK.threads)
  const measured = gaps(acc, RUN.measured, inFlight)
  const warmup = gaps(acc, RUN.warmup, inFlight)
  return {
    buckets: buckets.length,
    ...measured,
    duplicates: acc.duplicates,
    foreign: acc.foreign,
    warmupPoints: warmup.points,
    warmupMissing: warmup.missing,
  }
}

interface PathResult {
  path: PathName
  label: string
  warmup?: { requests: number; requestsPerSecond: number; non2xx: number }
  wrk: WrkResult
  /** CPU seconds of the server process (relay or bare server, all its threads) during the measured run. */
  serverCpuSeconds: number
  serverCpuUsPerRequest: number
  /** The server's main thread and its other threads, CPU µs per request (relay paths). */
  threadCpuUsPerRequest?: { main: number; others: number }
  /** Share of the machine's cores busy during the measured run (wrk, servers, and anything else running). */
  machineBusyPercent: number
  /** Cores wrk itself used during the measured run. */
  wrkCores: number
  /** 1 s / the server's main-thread CPU per request: the requests/s one event loop could serve at most. */
  mainThreadCeilingPerSecond: number
  readBack?: ReadBack
  /** What the relay itself counted during the measured run (integration uplinks or device callbacks). */
  relayCounted?: number
  /** Stored points of the measured run per second of wrk's run; for `bare`, completed 2xx per second. */
  storedPerSecond: number
  /** min(stored points, completed 2xx) per second: the headline figure. */
  perSecond: number
}

function summary(r: WrkResult) {
  return { requests: r.requests, requestsPerSecond: r.requestsPerSecond, non2xx: r.non2xx }
}

async function main(): Promise<number> {
  if (WRK.threads > 9) throw new Error('BENCH_WRK_THREADS must be at most 9 (one digit in the temperature)')
  if (SELECTED.length === 0) throw new Error(`BENCH_ONLY names none of ${PATHS.join(', ')}`)
  installMissing([{ cmd: 'wrk', pkg: 'wrk' }])
  const wrk = which('wrk') as string
  const dir = makeTempDir('converters-http')
  const loadAtStart = os.loadavg()
  const procs: ChildProcess[] = []

  // The relay, as deployed: its own process, from the CLI.
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const relayNodeArgs = nodeArgsFrom('BENCH_RELAY_NODE_ARGS')
  const relayLog = path.join(dir, 'relay.log')
  // biome-ignore format: one option per line
  const relay = spawnChild('tether-relay', process.execPath, [
    '--no-node-snapshot', ...relayNodeArgs, TETHER_CLI, 'relay',
    '--host', '127.0.0.1',
    '--port', String(port),
    '--data-dir', path.join(dir, 'relay-data'),
  ], { logFile: relayLog, env: { ...process.env, TETHER_ADMIN_PASSWORD: PASSWORD } })
  procs.push(relay)
  await waitFor('relay /healthz', async () => {
    if (!isRunning(relay)) throw new Error(`relay exited with ${relay.exitCode ?? relay.signalCode}`)
    return (await request(`${base}/healthz`, 'GET', '')).status === 200
  })

  // The bare server, also its own process.
  let bareUrl = ''
  let barePid = 0
  if (SELECTED.includes('bare')) {
    let out = ''
    const portLine = new Promise<number>((resolve) => {
      const bare = spawnChild('bare-http', process.execPath, ['-e', BARE_SERVER], {
        logFile: path.join(dir, 'bare.log'),
        onOutput: (text) => {
          out += text
          if (out.includes('\n')) resolve((JSON.parse(out.split('\n')[0]) as { port: number }).port)
        },
      })
      procs.push(bare)
      barePid = bare.pid as number
    })
    bareUrl = `http://127.0.0.1:${await portLine}/`
  }

  const { access_token: admin } = await json<{ access_token: string }>(`${base}/oauth/token`, 'POST', '', {
    grant_type: 'password',
    username: 'admin',
    password: PASSWORD,
  })
  const api = <T>(method: string, route: string, body?: unknown, expect = 200) =>
    json<T>(`${base}${route}`, method, admin, body, expect)

  // The callback baseline: an HTTP device whose callback stores the body in a bucket.
  await api('POST', '/v1/users/admin/devices', { device: 'cb', type: 'http' }, 201)
  await api('POST', '/v1/users/admin/buckets', { bucket: 'cb' }, 201)
  await api('PUT', '/v3/users/admin/devices/cb/callback', { actions: { write_bucket: 'cb' } })
  const callback = await api<{ token: string; url: string }>('GET', '/v3/users/admin/devices/cb/callback')

  // The integration: ThingsBoard's documented decoder and an http integration.
  await api(
    'POST',
    '/v1/users/admin/converters',
    { id: 'tb-http', dialect: 'thingsboard', direction: 'uplink', script: TB_HTTP_DECODER },
    201,
  )
  const view = await api<{ http?: { routingKey: string }; status: { state: string } }>(
    'POST',
    '/v1/users/admin/integrations',
    { id: INTEGRATION, name: 'TB HTTP', type: 'http', uplinkConverter: 'tb-http' },
    201,
  )
  if (view.status.state !== 'running' || !view.http) throw new Error(`integration: ${JSON.stringify(view)}`)
  const integrationUrl = `${base}/api/v1/integrations/http/${view.http.routingKey}`
  // One uplink by hand: the route answers 204 and the device appears.
  const probe = await request(
    integrationUrl,
    'POST',
    '',
    '{"deviceName":"Probe","deviceType":"thermostat","model":"TH-20","param2":"SN-P","temperature":0.5}',
  )
  if (probe.status !== 204) throw new Error(`integration uplink answered ${probe.status} ${probe.text}`)
  const status = () =>
    api<{ status: { uplinks: number; errors: number; last_error?: unknown } }>(
      'GET',
      `/v1/users/admin/integrations/${INTEGRATION}`,
    ).then((v) => v.status)
  const callbacks = () =>
    api<{ total: { messages: number } }>('GET', '/v3/users/admin/devices/cb/stats').then(
      (s) => s.total.messages,
    )

  const targets: Record<PathName, { url: string; headers: Record<string, string> }> = {
    bare: { url: bareUrl, headers: {} },
    callback: { url: callback.url, headers: { Authorization: `Bearer ${callback.token}` } },
    integration: { url: integrationUrl, headers: {} },
  }
  // Peak RSS; CPU is read per thread around each measured run (threadCpu).
  const watcher = new ProcWatcher({ relay: relay.pid as number, ...(barePid ? { bare: barePid } : {}) })
  const results: PathResult[] = []
  for (const name of SELECTED) {
    const t = targets[name]
    const scripts = {
      warmup: path.join(dir, `${name}-warmup.lua`),
      measured: path.join(dir, `${name}.lua`),
    }
    writeFileSync(scripts.warmup, luaScript(RUN.warmup, t.headers))
    writeFileSync(scripts.measured, luaScript(RUN.measured, t.headers))
    let warmup: WrkResult | undefined
    if (WARMUP > 0) {
      log(`${name}: warm-up ${WARMUP}s`)
      warmup = await runWrk(wrk, WRK, WARMUP, t.url, {}, ['-s', scripts.warmup])
      await sleep(500)
    }
    const counted0 =
      name === 'integration' ? (await status()).uplinks : name === 'callback' ? await callbacks() : 0
    log(`${name}: wrk ${WRK.threads} threads, ${WRK.connections} connections, ${WRK.seconds}s`)
    const serverPid = name === 'bare' ? barePid : (relay.pid as number)
    const threads0 = threadCpu(serverPid)
    const machine0 = machineCpu()
    const { result: r, wrkCpuSeconds } = await wrkCpuDuring(() =>
      runWrk(wrk, WRK, WRK.seconds, t.url, {}, ['-s', scripts.measured]),
    )
    const machine1 = machineCpu()
    const threads1 = threadCpu(serverPid)
    const perRequest = (s: number) => Math.round((s * 1e6) / Math.max(1, r.requests))
    // Requests wrk abandoned at its stop may still be finishing.
    await sleep(1000)
    const counted1 =
      name === 'integration' ? (await status()).uplinks : name === 'callback' ? await callbacks() : 0
    const result: PathResult = {
      path: name,
      label: LABELS[name],
      ...(warmup ? { warmup: summary(warmup) } : {}),
      wrk: r,
      serverCpuSeconds: Number(
        (threads1.main + threads1.others - threads0.main - threads0.others).toFixed(2),
      ),
      serverCpuUsPerRequest: perRequest(threads1.main + threads1.others - threads0.main - threads0.others),
      threadCpuUsPerRequest: {
        main: perRequest(threads1.main - threads0.main),
        others: perRequest(threads1.others - threads0.others),
      },
      machineBusyPercent: Math.round(
        (100 * (machine1.busy - machine0.busy)) / Math.max(1, machine1.total - machine0.total),
      ),
      wrkCores: Number((wrkCpuSeconds / r.seconds).toFixed(2)),
      mainThreadCeilingPerSecond: Math.round(r.requests / Math.max(1e-6, threads1.main - threads0.main)),
      storedPerSecond: (r.requests - r.non2xx) / r.seconds,
      perSecond: (r.requests - r.non2xx) / r.seconds,
    }
    if (name !== 'bare') {
      result.relayCounted = counted1 - counted0
      let buckets = ['cb']
      if (name === 'integration') {
        const devices = await api<Array<{ device: string; integration?: { id: string } }>>(
          'GET',
          '/v1/users/admin/devices',
        )
        buckets = devices.filter((d) => d.integration?.id === INTEGRATION).map((d) => d.device)
      }
      const back = await readBack(base, admin, buckets)
      result.readBack = back
      result.storedPerSecond = back.points / r.seconds
      result.perSecond = Math.min(back.points, r.requests - r.non2xx) / r.seconds
    }
    results.push(result)
  }
  const intStatus = SELECTED.includes('integration') ? await status() : undefined
  const procStats = watcher.finish()
  const peakRssMiB = Object.fromEntries(
    Object.entries(procStats).map(([k, v]) => [k, Math.round(v.peakRssBytes / 2 ** 20)]),
  )
  // Stopped here with time to spare: a relay under --cpu-prof writes its profile on the way out.
  relay.kill('SIGTERM')
  await Promise.race([new Promise((resolve) => relay.once('exit', resolve)), sleep(20_000)])
  await stopChildren(procs)
  const warnings = tailOf(relayLog, 10_000)
    .split('\n')
    .filter((l) => /"level":(40|50|60)|\b(WARN|ERROR|FATAL)\b/.test(l))

  const by = (p: PathName) => results.find((r) => r.path === p)
  const ratio = (a?: PathResult, b?: PathResult) =>
    a && b ? Number((a.perSecond / b.perSecond).toFixed(3)) : undefined
  const ratios = {
    integrationToCallback: ratio(by('integration'), by('callback')),
    integrationToBare: ratio(by('integration'), by('bare')),
    callbackToBare: ratio(by('callback'), by('bare')),
  }
  const pad = (s: string | number, n: number) => String(s).padStart(n)
  const f0 = (n: number) => Math.round(n).toLocaleString('en-US')
  const cpuCell = (r: PathResult) =>
    r.threadCpuUsPerRequest
      ? `${r.serverCpuUsPerRequest} (${r.threadCpuUsPerRequest.main} + ${r.threadCpuUsPerRequest.others})`
      : String(r.serverCpuUsPerRequest)
  const lines = [
    `${'path'.padEnd(32)}${pad('req/s', 9)}${pad('stored/s', 10)}${pad('p50 ms', 8)}${pad('p99 ms', 8)}${pad('non-2xx', 8)}  ${'server CPU µs/req'.padEnd(18)}${pad('main-thread ceiling/s', 22)}${pad('wrk cores', 10)}${pad('machine busy', 13)}`,
    `${''.padEnd(32)}${''.padStart(43)}  ${'(main + others)'.padEnd(18)}`,
    ...results.map(
      (r) =>
        `${r.label.padEnd(32)}${pad(f0(r.wrk.requestsPerSecond), 9)}${pad(r.readBack ? f0(r.storedPerSecond) : '–', 10)}${pad(r.wrk.latency.p50Ms.toFixed(2), 8)}${pad(r.wrk.latency.p99Ms.toFixed(2), 8)}${pad(r.wrk.non2xx, 8)}  ${cpuCell(r).padEnd(18)}${pad(f0(r.mainThreadCeilingPerSecond), 22)}${pad(r.wrkCores.toFixed(2), 10)}${pad(`${r.machineBusyPercent} %`, 13)}`,
    ),
    '',
    ...results
      .filter((r) => r.readBack)
      .map((r) => {
        const b = r.readBack as ReadBack
        return (
          `${r.label}: read back ${b.points} points of the run in ${b.buckets} bucket(s) for ${r.wrk.requests - r.wrk.non2xx} answers; ` +
          `lost ${b.missing}, duplicates ${b.duplicates}, abandoned at stop ${b.abandonedAtStop}; the relay counted ${r.relayCounted}`
        )
      }),
    `ratios (stored/s): integration / callback ${ratios.integrationToCallback ?? '–'}, integration / bare ${ratios.integrationToBare ?? '–'}, callback / bare ${ratios.callbackToBare ?? '–'}`,
  ]
  const integ = by('integration')
  if (integ) {
    lines.push(
      `HTTP integration: ${f0(integ.perSecond)} requests/s stored (target ≥ ${f0(TARGET_PER_SECOND)}: ${integ.perSecond >= TARGET_PER_SECOND ? 'met' : 'MISSED'})`,
    )
    if (intStatus) lines.push(`integration status: ${JSON.stringify(intStatus)}`)
  }
  lines.push(`peak RSS MiB: ${JSON.stringify(peakRssMiB)}`)
  if (warnings.length > 0) lines.push(`relay log: ${warnings.length} warn/error lines, e.g. ${warnings[0]}`)
  process.stdout.write(`${lines.join('\n')}\n`)

  writeFileSync(
    RESULTS_FILE,
    `${JSON.stringify(
      {
        command: COMMAND,
        date: new Date().toISOString(),
        machine: {
          cpu: os.cpus()[0]?.model,
          nproc: os.availableParallelism(),
          node: process.version,
          wrk: wrkVersion(wrk),
          loadAverageAtStart: loadAtStart.map((l) => Number(l.toFixed(2))),
        },
        settings: { ...WRK, warmupSeconds: WARMUP, devices: DEVICES, paths: SELECTED, relayNodeArgs },
        results: results.map(({ wrk: w, ...r }) => ({
          ...r,
          wrk: {
            requests: w.requests,
            seconds: w.seconds,
            requestsPerSecond: w.requestsPerSecond,
            latency: w.latency,
            non2xx: w.non2xx,
            socketErrors: w.socketErrors,
          },
        })),
        integrationStatus: intStatus,
        peakRssMiB,
        ratios,
        targets: { integrationStoredPerSecond: TARGET_PER_SECOND },
        relayLogWarnings: warnings.slice(0, 20),
      },
      null,
      2,
    )}\n`,
  )
  log(`wrote ${path.relative(ROOT, RESULTS_FILE)}`)
  const bad = results.filter((r) => {
    const s = r.wrk.socketErrors
    const b = r.readBack
    return (
      r.wrk.non2xx > 0 ||
      s.connect + s.read + s.write + s.timeout > 0 ||
      (b &&
        (b.missing > 0 ||
          b.duplicates > 0 ||
          b.foreign > 0 ||
          b.warmupMissing > 0 ||
          b.points < r.wrk.requests))
    )
  })
  for (const r of bad) log(`${r.label}: errors, lost or duplicated points (see above)`)
  return bad.length === 0 ? 0 : 1
}

await runBench(main, envInt('BENCH_TIMEOUT', 600))
