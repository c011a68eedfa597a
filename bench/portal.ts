/**
 * HTTP portal benchmark on loopback: keep-alive HTTP load (wrk) on a small device page served by nginx, for
 * (a) direct, (b) the DIY alternative nginx reverse proxy → `ssh -R` → device and (c) a Tether portal
 * (relay → agent → device, relay and agent as separate child processes). Run: `npm run bench:portal`.
 * Writes bench/results/portal.json. Paths, knobs (BENCH_WRK_*, BENCH_NGINX_WORKERS, BENCH_ONLY with the opt-in
 * `ssh-tty` path, BENCH_*NODE_ARGS, BENCH_TIMEOUT) and the ssh -N Nagle caveat: bench/README.md.
 */
import { readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { envInt, envList, envSeconds } from './lib/env.ts'
import { errorMessage, log } from './lib/log.ts'
import { devicePageHtml, type NginxHandle, startDeviceNginx, startProxyNginx } from './lib/portal-nginx.ts'
import { childrenNamed, descendantsOf } from './lib/portal-procs.ts'
import {
  ALL_PORTAL_PATHS,
  computePortalRatios,
  DEFAULT_PORTAL_PATHS,
  PORTAL_LABELS,
  type PortalPathName,
  type PortalPathResult,
  printPortalTables,
  writePortalReport,
} from './lib/portal-report.ts'
import { startSshTtyForward } from './lib/portal-ssh.ts'
import { getWithHost, startTetherPortal } from './lib/portal-tether.ts'
import { ensurePortalTools, nginxVersion, wrkVersion } from './lib/portal-tools.ts'
import { runWrk, type WrkResult, type WrkSettings } from './lib/portal-wrk.ts'
import { ProcWatcher } from './lib/processes.ts'
import { runBench } from './lib/run-bench.ts'
import { startSsh } from './lib/ssh-path.ts'
import { sshVersion } from './lib/tools.ts'
import { withTimeout } from './lib/wait.ts'

const RESULTS_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'results', 'portal.json')

const WRK: WrkSettings = {
  threads: envInt('BENCH_WRK_THREADS', 2),
  connections: envInt('BENCH_WRK_CONNS', 32),
  seconds: envSeconds('BENCH_WRK_DURATION', 10),
  timeoutSeconds: envSeconds('BENCH_WRK_TIMEOUT', 5),
}
if (WRK.connections < WRK.threads) throw new Error('BENCH_WRK_CONNS must be >= BENCH_WRK_THREADS')
/** An unmeasured wrk run first, so the relay's JIT, the pools and the caches are warm. */
const WARMUP_SECONDS = envSeconds('BENCH_WRK_WARMUP', 3, 0)
/** Worker processes of each nginx: one, like the one relay process and the one agent process. */
const NGINX_WORKERS = envInt('BENCH_NGINX_WORKERS', 1)
/** Idle upstream connections the proxy nginx keeps to the ssh -R forward. */
const UPSTREAM_KEEPALIVE = Math.max(WRK.connections, 16)

const PATHS: PortalPathName[] = (() => {
  const tokens = envList('BENCH_ONLY')
  for (const t of tokens)
    if (!(ALL_PORTAL_PATHS as string[]).includes(t))
      throw new Error(`BENCH_ONLY: unknown "${t}" (paths: ${ALL_PORTAL_PATHS.join(', ')})`)
  if (tokens.length === 0) return DEFAULT_PORTAL_PATHS
  return ALL_PORTAL_PATHS.filter((p) => tokens.includes(p))
})()

const TOTAL_TIMEOUT_S = envInt(
  'BENCH_TIMEOUT',
  120 + PATHS.length * (90 + 2 * (WRK.timeoutSeconds + 30) + WARMUP_SECONDS + WRK.seconds),
)

/** Set on a signal or the watchdog: no further path runs and no report is written. */
let stopping = false

/** A path set up: where wrk goes, with which headers, which processes to watch, and how to stop it. */
interface PathRun {
  port: number
  /** Request headers, Host included, with wrk's spelling (`Host`, `Cookie`). */
  headers: Record<string, string>
  pids: Record<string, number>
  info: Record<string, unknown>
  /** Extra checks and figures after the measured run (e.g. the relay's counters and log warnings). */
  after?: (result: PortalPathResult) => Promise<void>
  stop: () => Promise<void>
}

/** Named pids of the nginx worker processes (the master only supervises). */
function nginxPids(prefix: string, nginx: NginxHandle): Record<string, number> {
  const workers = nginx.workerPids.length > 0 ? nginx.workerPids : [nginx.pid]
  return Object.fromEntries(
    workers.map((pid, i) => [workers.length > 1 ? `${prefix} ${i + 1}` : prefix, pid]),
  )
}

/** The DIY portal: nginx reverse proxy in front of an ssh -R forward (stopped with it on failure). */
async function behindNginxProxy(
  nginx: string,
  forward: { port: number; sshPid?: number; info?: Record<string, unknown>; stop: () => Promise<void> },
  devicePids: Record<string, number>,
): Promise<PathRun> {
  try {
    const proxy = await startProxyNginx(nginx, forward.port, NGINX_WORKERS, UPSTREAM_KEEPALIVE)
    // sshd's master forks per connection: the ssh -R session's processes do the forwarding.
    const sshd = childrenNamed(process.pid, 'sshd')
      .flatMap((pid) => descendantsOf(pid))
      .filter((p) => p.comm === 'sshd')
    const sshdPids = Object.fromEntries(sshd.map((p, i) => [`sshd ${i + 1}`, p.pid]))
    const sshPid: Record<string, number> = forward.sshPid === undefined ? {} : { ssh: forward.sshPid }
    return {
      port: proxy.port,
      headers: { Host: `127.0.0.1:${proxy.port}` },
      pids: { ...devicePids, ...nginxPids('proxy nginx', proxy), ...sshPid, ...sshdPids },
      info: {
        ...forward.info,
        forwardPort: forward.port,
        proxyPort: proxy.port,
        upstreamKeepalive: UPSTREAM_KEEPALIVE,
      },
      stop: async () => {
        await proxy.stop()
        await forward.stop()
      },
    }
  } catch (err) {
    await forward.stop()
    throw err
  }
}

/** Lines of a log that pino (JSON or pretty) wrote at warn level or above. */
function logWarnings(file: string): string[] {
  let text = ''
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return []
  }
  return text
    .split('\n')
    .filter((line) => /"level":(40|50|60)\b/.test(line) || /\b(WARN|ERROR|FATAL)\b/.test(line))
}

/** One GET of the page through the path: it must be 200 with exactly the device's page. */
async function probe(run: PathRun, page: string, what: string): Promise<void> {
  const res = await getWithHost(run.port, '/', run.headers)
  const body = res.body.toString('utf8')
  if (res.status !== 200)
    throw new Error(`${what}: GET / answered ${res.status} instead of 200: ${body.slice(0, 400)}`)
  if (body !== page)
    throw new Error(`${what}: GET / answered 200 but not the device page (${res.body.length} bytes)`)
}

/** Checks a wrk run: no non-2xx, some requests, and each response at least as large as the page. */
function wrkProblem(w: WrkResult, pageBytes: number): string | undefined {
  if (w.requests === 0) return 'wrk completed no request'
  if (w.non2xx > 0)
    return `${w.non2xx} of ${w.requests} responses had a status ≥ 400 ("Non-2xx or 3xx responses")`
  if (w.bytesPerRequest < pageBytes)
    return `${w.bytesPerRequest} bytes read per response, less than the ${pageBytes}-byte page: not the page`
  return undefined
}

async function measure(
  name: PortalPathName,
  wrk: string,
  page: string,
  setup: () => Promise<PathRun>,
): Promise<PortalPathResult> {
  const label = PORTAL_LABELS[name]
  const result: PortalPathResult = { path: name, label, warnings: [], errors: [] }
  let run: PathRun | undefined
  try {
    log(`${label}: setting up`)
    run = await withTimeout(`${label} setup`, 90_000, setup())
    result.info = run.info
    await probe(run, page, label)
    const url = `http://127.0.0.1:${run.port}/`
    // wrk sets Host from the URL unless a header named exactly "Host" is given (its check is
    // case-sensitive: "host" would go out as a second Host line); pass it only when it differs.
    const headers = Object.fromEntries(
      Object.entries(run.headers).filter(([k, v]) => !(k === 'Host' && v === `127.0.0.1:${run!.port}`)),
    )
    result.info = { ...result.info, url, wrkHeaders: Object.keys(headers) }
    if (WARMUP_SECONDS > 0) {
      log(`${label}: warm-up ${WARMUP_SECONDS}s`)
      const w = await runWrk(wrk, WRK, WARMUP_SECONDS, url, headers)
      result.warmup = { requests: w.requests, requestsPerSecond: w.requestsPerSecond, non2xx: w.non2xx }
      const problem = wrkProblem(w, Buffer.byteLength(page))
      if (problem) throw new Error(`warm-up: ${problem}`)
    }
    log(`${label}: wrk -t${WRK.threads} -c${WRK.connections} -d${WRK.seconds}s --latency ${url}`)
    const watcher = new ProcWatcher(run.pids)
    let measured: WrkResult
    try {
      measured = await watcher.during('wrk', () => runWrk(wrk, WRK, WRK.seconds, url, headers))
    } finally {
      result.processes = watcher.finish()
    }
    const problem = wrkProblem(measured, Buffer.byteLength(page))
    if (problem) {
      // Keep wrk's report for the record, but no figure: a rate of error pages is not a result.
      result.info = { ...result.info, rejectedWrk: measured }
      let now = ''
      try {
        await probe(run, page, 'after the run')
        now = '; a single GET / now answers 200'
      } catch (err) {
        now = `; ${errorMessage(err)}`
      }
      throw new Error(`${problem}${now}`)
    }
    result.wrk = measured
    const e = measured.socketErrors
    if (e.connect + e.read + e.write + e.timeout > 0)
      result.warnings.push(
        `socket errors: connect ${e.connect}, read ${e.read}, write ${e.write}, timeout ${e.timeout}`,
      )
    log(
      `${label}: ${measured.requestsPerSecond.toFixed(0)} req/s, p50 ${measured.latency.p50Ms.toFixed(2)} ms, p99 ${measured.latency.p99Ms.toFixed(2)} ms`,
    )
    await run.after?.(result)
  } catch (err) {
    const msg = errorMessage(err)
    result.errors.push(msg)
    log(`${label}: FAILED: ${msg}`)
  } finally {
    if (run) await run.stop()
  }
  return result
}

async function main(): Promise<number> {
  const started = new Date()
  const loadAverage = os.loadavg().map((l) => Math.round(l * 100) / 100)
  log(
    `paths: ${PATHS.join(', ')}; wrk -t${WRK.threads} -c${WRK.connections} -d${WRK.seconds}s (+${WARMUP_SECONDS}s warm-up); nginx workers: ${NGINX_WORKERS}; load average ${loadAverage.join(' ')}`,
  )
  const tools = ensurePortalTools(PATHS.includes('ssh') || PATHS.includes('ssh-tty'))
  const page = devicePageHtml()
  const device = await startDeviceNginx(tools.nginx, NGINX_WORKERS)
  log(`device: nginx on :${device.port} serving a ${device.page.bytes}-byte page at /`)
  const devicePids = nginxPids('device nginx', device)

  const results: PortalPathResult[] = []
  for (const p of PATHS) {
    if (stopping) break
    const setup = async (): Promise<PathRun> => {
      switch (p) {
        case 'direct':
          return {
            port: device.port,
            headers: { Host: `127.0.0.1:${device.port}` },
            pids: devicePids,
            info: {},
            stop: async () => {},
          }
        case 'ssh': {
          // Both forwards startSsh makes go to the device; the proxy uses the first.
          const ssh = await startSsh(tools, { iperfPort: device.port, echoPort: device.port })
          const forward = { port: ssh.iperfPort, sshPid: ssh.pids.ssh, info: ssh.info, stop: ssh.stop }
          return behindNginxProxy(tools.nginx, forward, devicePids)
        }
        case 'ssh-tty': {
          const tty = await startSshTtyForward(tools, device.port)
          const forward = { port: tty.port, sshPid: tty.sshPid, info: tty.info, stop: tty.stop }
          return behindNginxProxy(tools.nginx, forward, devicePids)
        }
        case 'tether': {
          const portal = await startTetherPortal(device.port)
          log(
            `Tether portal: relay pid ${portal.relayPid} on :${portal.relayPort}, agent pid ${portal.agentPid}`,
          )
          return {
            port: portal.relayPort,
            headers: { Host: portal.host, Cookie: portal.cookie },
            pids: { ...devicePids, relay: portal.relayPid, agent: portal.agentPid },
            info: { host: portal.host, label: portal.label, relayPort: portal.relayPort },
            after: async (result) => {
              const status = await portal.profileStatus()
              result.info = { ...result.info, profileStatus: status }
              const lastError = (status?.last_error as { message?: string } | undefined)?.message
              if (lastError) result.warnings.push(`profile last_error: ${lastError}`)
              for (const [who, file] of Object.entries(portal.logs)) {
                const lines = logWarnings(file)
                if (lines.length === 0) continue
                result.warnings.push(
                  `${who} log: ${lines.length} warn/error lines, first: ${lines[0].slice(0, 300)}`,
                )
                result.info = { ...result.info, [`${who}LogWarnings`]: lines.slice(0, 20) }
              }
            },
            stop: portal.stop,
          }
        }
      }
    }
    results.push(await measure(p, tools.wrk, page, setup))
  }
  await device.stop()
  if (stopping) throw new Error('stopped before the end: no tables, no report')

  const ratios = computePortalRatios(results)
  printPortalTables(results, ratios, WRK)
  writePortalReport(RESULTS_FILE, {
    started,
    machine: {
      loadAverageAtStart: loadAverage,
      wrk: wrkVersion(tools.wrk),
      nginx: nginxVersion(tools.nginx),
      ...(tools.ssh && PATHS.some((p) => p.startsWith('ssh')) ? { ssh: sshVersion(tools.ssh) } : {}),
    },
    settings: {
      wrkThreads: WRK.threads,
      wrkConnections: WRK.connections,
      wrkSeconds: WRK.seconds,
      wrkWarmupSeconds: WARMUP_SECONDS,
      wrkTimeoutSeconds: WRK.timeoutSeconds,
      keepAlive: true,
      request: 'GET /',
      pageBytes: device.page.bytes,
      nginxWorkers: NGINX_WORKERS,
      upstreamKeepalive: UPSTREAM_KEEPALIVE,
      deviceNginxKeepaliveRequests: 1000,
    },
    paths: PATHS,
    results,
    ratios,
  })
  return results.some((r) => r.errors.length > 0) ? 1 : 0
}

await runBench(main, TOTAL_TIMEOUT_S, () => {
  stopping = true
})
