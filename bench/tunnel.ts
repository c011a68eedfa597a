/**
 * Tunnel benchmark: throughput (iperf3, both directions) and 64-byte round-trip latency on loopback for
 * (a) direct, (b) OpenSSH `ssh -R`, (c) Tether over ws and (d) Tether over wss. Run: `npm run bench`.
 * Writes bench/results/tunnel.json. Knobs: see bench/README.md.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const TETHER_CLI = path.join(ROOT, 'cli', 'tether.mjs')
const RESULTS_FILE = path.join(ROOT, 'bench', 'results', 'tunnel.json')

type PathName = 'direct' | 'ssh' | 'tether-ws' | 'tether-wss'
const ALL_PATHS: PathName[] = ['direct', 'ssh', 'tether-ws', 'tether-wss']
const ONLY_ALIASES: Record<string, PathName> = {
  direct: 'direct',
  ssh: 'ssh',
  ws: 'tether-ws',
  wss: 'tether-wss',
  'tether-ws': 'tether-ws',
  'tether-wss': 'tether-wss',
}

const envInt = (name: string, fallback: number, min = 1): number => {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}, got ${raw}`)
  return n
}

const SECONDS = envInt('BENCH_SECONDS', 5)
const RTT_COUNT = envInt('BENCH_RTT_COUNT', 5000)
const RTT_WARMUP = envInt('BENCH_RTT_WARMUP', 200, 0)
const PAYLOAD = 64
const ONLY: PathName[] = (() => {
  const raw = process.env.BENCH_ONLY
  if (!raw) return ALL_PATHS
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const p = ONLY_ALIASES[s]
      if (!p) throw new Error(`BENCH_ONLY: unknown path "${s}" (use direct, ssh, ws, wss)`)
      return p
    })
})()
/** Whole-run watchdog: setup and teardown allowance plus each measurement's own bound. */
const TOTAL_TIMEOUT_S = envInt('BENCH_TIMEOUT', 240 + ONLY.length * (2 * (SECONDS + 30) + 90))

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`)
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

// ---------------------------------------------------------------------------------------------------------
// Cleanup: every child process and temp dir is registered here and removed on exit, failure or signal.
// ---------------------------------------------------------------------------------------------------------

const children: { name: string; proc: ChildProcess }[] = []
const tempDirs: string[] = []
/** Set once cleanup starts: nothing new is started after that. */
let cleanedUp = false

function makeTempDir(prefix: string): string {
  if (cleanedUp) throw new Error('the bench is stopping')
  const dir = mkdtempSync(path.join(os.tmpdir(), `tether-bench-${prefix}-`))
  tempDirs.push(dir)
  return dir
}

const isRunning = (proc: ChildProcess) => proc.exitCode === null && proc.signalCode === null

async function stopChild(proc: ChildProcess, graceMs = 3000): Promise<void> {
  if (!isRunning(proc) || proc.pid === undefined) return
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  proc.kill('SIGTERM')
  const killed = await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)])
  if (!killed && isRunning(proc)) {
    proc.kill('SIGKILL')
    await Promise.race([exited, sleep(1000)])
  }
}

/** Stops the given children (newest first) and forgets them. */
async function stopChildren(procs: ChildProcess[]): Promise<void> {
  for (const proc of [...procs].reverse()) {
    await stopChild(proc)
    const i = children.findIndex((c) => c.proc === proc)
    if (i >= 0) children.splice(i, 1)
  }
}

async function cleanup(): Promise<void> {
  if (cleanedUp) return
  cleanedUp = true
  await stopChildren(children.map((c) => c.proc))
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true })
}

function cleanupSync(): void {
  for (const { proc } of children) if (isRunning(proc)) proc.kill('SIGKILL')
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true })
}

/** Spawns a long-running child with stdout/stderr going to a log file (plus an optional line watcher). */
function spawnChild(
  name: string,
  cmd: string,
  args: string[],
  opts: { logFile: string; env?: NodeJS.ProcessEnv; onOutput?: (text: string) => void },
): ChildProcess {
  if (cleanedUp) throw new Error(`not starting ${name}: the bench is stopping`)
  const out = createWriteStream(opts.logFile)
  const proc = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
  children.push({ name, proc })
  for (const stream of [proc.stdout, proc.stderr]) {
    stream?.on('data', (chunk: Buffer) => {
      out.write(chunk)
      opts.onOutput?.(chunk.toString())
    })
  }
  proc.on('error', (err) => out.write(`\n[bench] spawn error: ${err.message}\n`))
  proc.on('exit', () => out.end())
  return proc
}

function tailOf(file: string, lines = 25): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

/** Runs a short command to completion; throws with its output on failure. */
function run(cmd: string, args: string[], timeoutMs = 60_000, env?: NodeJS.ProcessEnv): string {
  const res = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, env: env ?? process.env })
  if (res.error) throw new Error(`${cmd} ${args.join(' ')}: ${res.error.message}`)
  if (res.status !== 0) {
    throw new Error(
      `${cmd} ${args.join(' ')} exited ${res.status ?? res.signal}: ${res.stderr || res.stdout}`,
    )
  }
  return res.stdout
}

// ---------------------------------------------------------------------------------------------------------
// Tools: iperf3, ssh, sshd (installed with apt-get when missing), openssl.
// ---------------------------------------------------------------------------------------------------------

function which(cmd: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin', '/sbin', '/bin']
  for (const dir of dirs) {
    if (!dir) continue
    const full = path.join(dir, cmd)
    if (existsSync(full)) return full
  }
  return undefined
}

function ensureTools(
  needSsh: boolean,
  needOpenssl: boolean,
): { iperf3: string; ssh?: string; sshd?: string } {
  const wanted: { cmd: string; pkg: string }[] = [{ cmd: 'iperf3', pkg: 'iperf3' }]
  if (needSsh) {
    wanted.push({ cmd: 'ssh', pkg: 'openssh-client' }, { cmd: 'ssh-keygen', pkg: 'openssh-client' })
    wanted.push({ cmd: 'sshd', pkg: 'openssh-server' })
  }
  if (needOpenssl) wanted.push({ cmd: 'openssl', pkg: 'openssl' })
  const missing = wanted.filter((w) => !which(w.cmd))
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((m) => m.pkg))]
    if (needSsh && pkgs.includes('openssh-server')) pkgs.push('openssh-client')
    const unique = [...new Set(pkgs)]
    log(`missing ${missing.map((m) => m.cmd).join(', ')}: installing ${unique.join(' ')} with apt-get`)
    if (process.getuid?.() !== 0) throw new Error(`not root: install ${unique.join(' ')} yourself`)
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    log('apt-get update')
    run('apt-get', ['update'], 300_000, env)
    log(`apt-get install -y ${unique.join(' ')}`)
    run('apt-get', ['install', '-y', '--no-install-recommends', ...unique], 600_000, env)
    const still = wanted.filter((w) => !which(w.cmd))
    if (still.length > 0)
      throw new Error(`still missing after install: ${still.map((m) => m.cmd).join(', ')}`)
    log(`installed ${unique.join(' ')}`)
  }
  return { iperf3: which('iperf3')!, ssh: which('ssh'), sshd: which('sshd') }
}

// ---------------------------------------------------------------------------------------------------------
// Network helpers.
// ---------------------------------------------------------------------------------------------------------

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

function tryConnect(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port })
    const done = (ok: boolean) => {
      clearTimeout(timer)
      sock.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    sock.once('connect', () => done(true))
    sock.once('error', () => done(false))
  })
}

/** Polls `check` every `intervalMs` until it returns true or `timeoutMs` passes. */
async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  while (Date.now() < deadline) {
    try {
      if (await check()) return
    } catch (err) {
      lastError = err
    }
    await sleep(intervalMs)
  }
  const why = lastError instanceof Error ? ` (last error: ${lastError.message})` : ''
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${why}`)
}

/** Races a promise against a timeout. */
async function withTimeout<T>(what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms / 1000}s`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

interface HttpResponse {
  status: number
  body: unknown
  text: string
}

/** JSON request over http or https (https with a private CA); bounded by a timeout. */
function request(
  method: string,
  url: string,
  opts: { body?: unknown; token?: string; ca?: string; timeoutMs?: number } = {},
): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body)
    const headers: Record<string, string> = { accept: 'application/json' }
    if (payload !== undefined) {
      headers['content-type'] = 'application/json'
      headers['content-length'] = String(Buffer.byteLength(payload))
    }
    if (opts.token) headers.authorization = `Bearer ${opts.token}`
    const reqOpts: https.RequestOptions = { method, headers, timeout: opts.timeoutMs ?? 10_000 }
    const onResponse = (res: http.IncomingMessage) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let body: unknown
        try {
          body = text ? JSON.parse(text) : undefined
        } catch {
          body = undefined
        }
        resolve({ status: res.statusCode ?? 0, body, text })
      })
      res.on('error', reject)
    }
    const req =
      u.protocol === 'https:'
        ? https.request(u, { ...reqOpts, ca: opts.ca }, onResponse)
        : http.request(u, reqOpts, onResponse)
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timed out`)))
    req.on('error', reject)
    if (payload !== undefined) req.write(payload)
    req.end()
  })
}

// ---------------------------------------------------------------------------------------------------------
// Targets: iperf3 server and a Node echo server, both child processes.
// ---------------------------------------------------------------------------------------------------------

async function startIperfServer(iperf3: string, dir: string): Promise<{ port: number; proc: ChildProcess }> {
  const port = await freePort()
  let output = ''
  const proc = spawnChild(
    'iperf3-server',
    iperf3,
    ['-s', '-B', '127.0.0.1', '-p', String(port), '--forceflush'],
    {
      logFile: path.join(dir, 'iperf3-server.log'),
      onOutput: (t) => {
        output += t
      },
    },
  )
  await waitFor('iperf3 server', async () => {
    if (!isRunning(proc)) throw new Error(`iperf3 server exited: ${output}`)
    return output.includes('Server listening')
  })
  return { port, proc }
}

const ECHO_SERVER = `
const net = require('node:net')
const srv = net.createServer((c) => { c.setNoDelay(true); c.on('error', () => {}); c.pipe(c) })
srv.listen(0, '127.0.0.1', () => process.stdout.write('listening ' + srv.address().port + '\\n'))
`

async function startEchoServer(dir: string): Promise<{ port: number; proc: ChildProcess }> {
  let output = ''
  const proc = spawnChild('echo-server', process.execPath, ['-e', ECHO_SERVER], {
    logFile: path.join(dir, 'echo-server.log'),
    onOutput: (t) => {
      output += t
    },
  })
  let port = 0
  await waitFor('echo server', async () => {
    if (!isRunning(proc)) throw new Error(`echo server exited: ${output}`)
    const m = /listening (\d+)/.exec(output)
    if (m) port = Number(m[1])
    return port > 0
  })
  return { port, proc }
}

// ---------------------------------------------------------------------------------------------------------
// Measurements.
// ---------------------------------------------------------------------------------------------------------

interface Throughput {
  bitsPerSecond: number
  gbps: number
  retransmits?: number
}

/** One iperf3 run: single stream, JSON output, `-R` for server→client. */
async function iperf(iperf3: string, port: number, reverse: boolean): Promise<Throughput> {
  const args = ['-c', '127.0.0.1', '-p', String(port), '-t', String(SECONDS), '-J']
  if (reverse) args.push('-R')
  if (cleanedUp) throw new Error('the bench is stopping')
  const proc = spawn(iperf3, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push({ name: 'iperf3-client', proc })
  let out = ''
  let err = ''
  proc.stdout.on('data', (c: Buffer) => {
    out += c.toString()
  })
  proc.stderr.on('data', (c: Buffer) => {
    err += c.toString()
  })
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  let code: number | null
  try {
    code = await withTimeout(`iperf3 -c :${port}${reverse ? ' -R' : ''}`, (SECONDS + 30) * 1000, exited)
  } finally {
    await stopChildren([proc])
  }
  let json: {
    error?: string
    end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } }
  }
  try {
    json = JSON.parse(out)
  } catch {
    throw new Error(`iperf3 exited ${code} without JSON: ${err || out}`.trim())
  }
  if (json.error) throw new Error(`iperf3: ${json.error}`)
  const bps = json.end?.sum_received?.bits_per_second
  if (typeof bps !== 'number') throw new Error('iperf3 JSON has no end.sum_received.bits_per_second')
  return { bitsPerSecond: bps, gbps: bps / 1e9, retransmits: json.end?.sum_sent?.retransmits }
}

interface Latency {
  count: number
  warmup: number
  payloadBytes: number
  p50Us: number
  p90Us: number
  p99Us: number
  p999Us: number
  minUs: number
  maxUs: number
  meanUs: number
}

const percentile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]

/** Ping-pong of 64-byte messages over one TCP connection, timed with hrtime. */
async function latency(port: number): Promise<Latency> {
  const sock = net.connect({ host: '127.0.0.1', port })
  sock.setNoDelay(true)
  try {
    await withTimeout(
      `connect :${port}`,
      10_000,
      new Promise<void>((resolve, reject) => {
        sock.once('connect', resolve)
        sock.once('error', reject)
      }),
    )
    let received = 0
    let wake: (() => void) | undefined
    let failure: Error | undefined
    sock.on('data', (chunk: Buffer) => {
      received += chunk.length
      if (received >= PAYLOAD && wake) {
        const w = wake
        wake = undefined
        w()
      }
    })
    const fail = (err: Error) => {
      failure = err
      if (wake) {
        const w = wake
        wake = undefined
        w()
      }
    }
    sock.on('error', fail)
    sock.on('close', () => fail(new Error('connection closed during the latency test')))
    const message = randomBytes(PAYLOAD)
    const samples: number[] = []
    const total = RTT_WARMUP + RTT_COUNT
    const roundTrips = async () => {
      for (let i = 0; i < total; i++) {
        const arrived = new Promise<void>((resolve) => {
          wake = resolve
        })
        const t0 = process.hrtime.bigint()
        sock.write(message)
        await arrived
        const t1 = process.hrtime.bigint()
        if (failure) throw failure
        if (received !== PAYLOAD) throw new Error(`expected ${PAYLOAD} echoed bytes, got ${received}`)
        received = 0
        if (i >= RTT_WARMUP) samples.push(Number(t1 - t0) / 1000)
      }
    }
    await withTimeout(`latency test on :${port}`, 30_000 + total * 10, roundTrips())
    const sorted = [...samples].sort((a, b) => a - b)
    const round = (n: number) => Math.round(n * 10) / 10
    return {
      count: samples.length,
      warmup: RTT_WARMUP,
      payloadBytes: PAYLOAD,
      p50Us: round(percentile(sorted, 0.5)),
      p90Us: round(percentile(sorted, 0.9)),
      p99Us: round(percentile(sorted, 0.99)),
      p999Us: round(percentile(sorted, 0.999)),
      minUs: round(sorted[0]),
      maxUs: round(sorted[sorted.length - 1]),
      meanUs: round(samples.reduce((a, b) => a + b, 0) / samples.length),
    }
  } finally {
    sock.destroy()
  }
}

// ---------------------------------------------------------------------------------------------------------
// Process statistics from /proc.
// ---------------------------------------------------------------------------------------------------------

interface ProcStats {
  pid: number
  /** VmRSS once set up, before any traffic. */
  startRssBytes: number
  peakRssBytes: number
  cpuSeconds: number
}

function readStatusKb(pid: number, field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : undefined
  } catch {
    return undefined
  }
}

let ticksPerSecond: number | undefined
const clockTicks = () => {
  ticksPerSecond ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100
  return ticksPerSecond
}

function readCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // After "pid (comm) ": state is field 3, utime 14, stime 15 → indices 11 and 12 here.
    return (Number(fields[11]) + Number(fields[12])) / clockTicks()
  } catch {
    return undefined
  }
}

/** Samples VmRSS periodically and reads VmHWM at the end; the peak is the larger of the two. */
class ProcWatcher {
  private peakKb = new Map<number, number>()
  private startKb = new Map<number, number>()
  private timer: NodeJS.Timeout

  constructor(private readonly pids: Record<string, number>) {
    for (const pid of Object.values(pids)) this.startKb.set(pid, readStatusKb(pid, 'VmRSS') ?? 0)
    this.timer = setInterval(() => this.sample(), 250)
    this.timer.unref()
  }

  private sample(): void {
    for (const pid of Object.values(this.pids)) {
      const kb = readStatusKb(pid, 'VmRSS')
      if (kb !== undefined) this.peakKb.set(pid, Math.max(this.peakKb.get(pid) ?? 0, kb))
    }
  }

  /** Call before the processes are stopped. */
  finish(): Record<string, ProcStats> {
    clearInterval(this.timer)
    this.sample()
    const result: Record<string, ProcStats> = {}
    for (const [name, pid] of Object.entries(this.pids)) {
      const hwm = readStatusKb(pid, 'VmHWM') ?? 0
      const peakKb = Math.max(hwm, this.peakKb.get(pid) ?? 0)
      result[name] = {
        pid,
        startRssBytes: (this.startKb.get(pid) ?? 0) * 1024,
        peakRssBytes: peakKb * 1024,
        cpuSeconds: readCpuSeconds(pid) ?? Number.NaN,
      }
    }
    return result
  }
}

// ---------------------------------------------------------------------------------------------------------
// Paths under test. Each returns the ports to point iperf3 and the latency client at, and a stop function.
// ---------------------------------------------------------------------------------------------------------

interface Targets {
  iperfPort: number
  echoPort: number
}

interface PathSetup {
  iperfPort: number
  echoPort: number
  pids: Record<string, number>
  info?: Record<string, unknown>
  stop: () => Promise<void>
}

/** OpenSSH: a private sshd on a free loopback port, and `ssh -N -R` forwarding to both targets. */
async function startSsh(tools: { ssh?: string; sshd?: string }, targets: Targets): Promise<PathSetup> {
  const ssh = tools.ssh
  const sshd = tools.sshd
  if (!ssh || !sshd) throw new Error('ssh/sshd not found')
  const dir = makeTempDir('ssh')
  const hostKey = path.join(dir, 'host_ed25519')
  const clientKey = path.join(dir, 'client_ed25519')
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench-host', '-f', hostKey])
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench-client', '-f', clientKey])
  const authorizedKeys = path.join(dir, 'authorized_keys')
  writeFileSync(authorizedKeys, readFileSync(`${clientKey}.pub`))
  // sshd refuses to start without its privilege-separation directory (normally made by the service unit).
  if (process.getuid?.() === 0 && !existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755 })
  const sshPort = await freePort()
  const config = path.join(dir, 'sshd_config')
  writeFileSync(
    config,
    [
      'ListenAddress 127.0.0.1',
      `Port ${sshPort}`,
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      'StrictModes no',
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      'UsePAM no',
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'AllowTcpForwarding yes',
      'GatewayPorts no',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  )
  const sshdLog = path.join(dir, 'sshd.log')
  const sshdProc = spawnChild('sshd', sshd, ['-D', '-e', '-f', config], { logFile: sshdLog })
  await waitFor('sshd to listen', async () => {
    if (!isRunning(sshdProc)) throw new Error(`sshd exited: ${tailOf(sshdLog)}`)
    return tryConnect(sshPort)
  })

  const iperfFwd = await freePort()
  const echoFwd = await freePort()
  const user = os.userInfo().username
  const sshLog = path.join(dir, 'ssh.log')
  // biome-ignore format: one option per line
  const sshArgs = [
    '-N', '-F', '/dev/null',
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'ExitOnForwardFailure=yes',
    '-o', 'BatchMode=yes',
    '-o', 'IdentitiesOnly=yes',
    '-o', 'LogLevel=ERROR',
    '-i', clientKey,
    '-p', String(sshPort),
    '-R', `${iperfFwd}:127.0.0.1:${targets.iperfPort}`,
    '-R', `${echoFwd}:127.0.0.1:${targets.echoPort}`,
    `${user}@127.0.0.1`,
  ]
  const sshProc = spawnChild('ssh', ssh, sshArgs, { logFile: sshLog })
  // Poll only the echo forward: a bare connect/close through the iperf3 forward upsets the iperf3 server's
  // next test. sshd handles the session's global requests in order and the iperf3 -R comes first, so once
  // the echo forward accepts, the iperf3 one listens too (ExitOnForwardFailure ends ssh if either fails).
  await waitFor(`ssh -R forward on :${echoFwd}`, async () => {
    if (!isRunning(sshProc)) throw new Error(`ssh exited: ${tailOf(sshLog)}`)
    return tryConnect(echoFwd)
  })
  const version = spawnSync(ssh, ['-V'], { encoding: 'utf8' }).stderr.trim()
  return {
    iperfPort: iperfFwd,
    echoPort: echoFwd,
    pids: { ssh: sshProc.pid! },
    info: { version, command: `ssh ${sshArgs.join(' ')}` },
    stop: () => stopChildren([sshdProc, sshProc]),
  }
}

/** Handle on a running relay + agent pair with one tcp-iotmp proxy. */
export interface TetherHandle {
  /** Relay port the `bench` proxy listens on (tunnelled to `targetPort`). */
  proxyPort: number
  /** Creates another proxy to `targetPort` on the same device; returns its listening port. */
  addProxy: (id: string, targetPort: number) => Promise<number>
  relayPid: number
  agentPid: number
  info: Record<string, unknown>
  stop: () => Promise<void>
}

/**
 * Starts a Tether relay and agent as child processes, registers the device, and creates proxy `bench` to
 * `targetPort` on the agent's side. All Tether-specific commands and API calls are here.
 */
export async function startTether(opts: { tls: boolean; targetPort: number }): Promise<TetherHandle> {
  const dir = makeTempDir(opts.tls ? 'wss' : 'ws')
  const procs: ChildProcess[] = []
  const stop = () => stopChildren(procs)
  try {
    const password = randomBytes(18).toString('base64url')
    const port = await freePort()
    // BENCH_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") goes to the relay and agent processes.
    const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)
    const relayArgs = [...nodeArgs, TETHER_CLI, 'relay', '--host', '127.0.0.1', '--port', String(port)]
    relayArgs.push('--data-dir', path.join(dir, 'relay-data'))
    let ca: string | undefined
    const certFile = path.join(dir, 'cert.pem')
    if (opts.tls) {
      const keyFile = path.join(dir, 'key.pem')
      // biome-ignore format: one option per line
      run('openssl', [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
        '-keyout', keyFile, '-out', certFile,
        '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      ])
      ca = readFileSync(certFile, 'utf8')
      relayArgs.push('--tls-cert', certFile, '--tls-key', keyFile)
    }
    const api = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`
    const relayLog = path.join(dir, 'relay.log')
    const relay = spawnChild('tether-relay', process.execPath, relayArgs, {
      logFile: relayLog,
      env: { ...process.env, TETHER_ADMIN_PASSWORD: password },
    })
    procs.push(relay)
    /** An error carrying the tail of the process's log (the temp dir is removed at the end). */
    const explain = (what: string, err: unknown, logFile: string) => {
      const why = err === undefined ? '' : `: ${err instanceof Error ? err.message : String(err)}`
      return new Error(`${what}${why}\n--- ${path.basename(logFile)} ---\n${tailOf(logFile)}`)
    }
    try {
      await waitFor('relay /healthz', async () => {
        if (!isRunning(relay)) throw new Error(`relay exited with ${relay.exitCode ?? relay.signalCode}`)
        return (await request('GET', `${api}/healthz`, { ca, timeoutMs: 2000 })).status === 200
      })
    } catch (err) {
      throw explain('relay did not become healthy', err, relayLog)
    }

    const expect = (res: HttpResponse, ok: number[], what: string) => {
      if (!ok.includes(res.status))
        throw explain(`${what} answered ${res.status} ${res.text}`, undefined, relayLog)
      return res.body as Record<string, unknown>
    }
    const tokenRes = await request('POST', `${api}/oauth/token`, {
      ca,
      body: { grant_type: 'password', username: 'admin', password },
    })
    const token = String(expect(tokenRes, [200], 'POST /oauth/token').access_token)
    const call = (method: string, route: string, body?: unknown) =>
      request(method, `${api}${route}`, { ca, token, body })

    const deviceRes = await call('POST', '/v1/users/admin/devices', { device: 'bench-gw', type: 'agent' })
    const credential = String(expect(deviceRes, [200, 201], 'POST /v1/users/admin/devices').credential)

    const relayUrl = opts.tls ? `wss://localhost:${port}` : `ws://127.0.0.1:${port}`
    // biome-ignore format: one option per line
    const agentArgs = [
      ...nodeArgs, TETHER_CLI, 'agent',
      '--relay', relayUrl,
      '--user', 'admin',
      '--device', 'bench-gw',
      '--credential', credential,
      '--allow', '127.0.0.1:*',
      '--state-dir', path.join(dir, 'agent-state'),
    ]
    if (opts.tls) agentArgs.push('--ca', certFile)
    const agentLog = path.join(dir, 'agent.log')
    const agent = spawnChild('tether-agent', process.execPath, agentArgs, { logFile: agentLog })
    procs.push(agent)
    try {
      await waitFor('agent connection.active', async () => {
        if (!isRunning(agent)) throw new Error(`agent exited with ${agent.exitCode ?? agent.signalCode}`)
        const res = await call('GET', '/v1/users/admin/devices/bench-gw')
        const connection = (res.body as { connection?: { active?: boolean } } | undefined)?.connection
        return res.status === 200 && connection?.active === true
      })
    } catch (err) {
      throw explain('agent did not connect', err, agentLog)
    }

    const addProxy = async (id: string, targetPort: number): Promise<number> => {
      const sourcePort = await freePort()
      const res = await call('POST', '/v1/server/proxies', {
        id,
        protocol: 'tcp-iotmp',
        enabled: true,
        source: { port: sourcePort, address: '127.0.0.1' },
        target: {
          type: 'device',
          user: 'admin',
          device: 'bench-gw',
          address: '127.0.0.1',
          port: targetPort,
          tls: false,
        },
      })
      expect(res, [200, 201], `POST /v1/server/proxies (${id})`)
      return sourcePort
    }
    const proxyPort = await addProxy('bench', opts.targetPort)
    return {
      proxyPort,
      addProxy,
      relayPid: relay.pid!,
      agentPid: agent.pid!,
      info: { relayUrl, api, logs: { relay: relayLog, agent: agentLog } },
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}

async function startTetherPath(tls: boolean, targets: Targets): Promise<PathSetup> {
  const tether = await startTether({ tls, targetPort: targets.iperfPort })
  try {
    const echoPort = await tether.addProxy('bench-echo', targets.echoPort)
    await waitFor(`proxy bench-echo on :${echoPort}`, () => tryConnect(echoPort))
    return {
      iperfPort: tether.proxyPort,
      echoPort,
      pids: { relay: tether.relayPid, agent: tether.agentPid },
      info: { relayUrl: tether.info.relayUrl },
      stop: tether.stop,
    }
  } catch (err) {
    await tether.stop()
    throw err
  }
}

// ---------------------------------------------------------------------------------------------------------
// Main.
// ---------------------------------------------------------------------------------------------------------

interface PathResult {
  path: PathName
  label: string
  throughput: { normal?: Throughput; reverse?: Throughput }
  latency?: Latency
  processes?: Record<string, ProcStats>
  info?: Record<string, unknown>
  errors: string[]
}

const LABELS: Record<PathName, string> = {
  direct: 'direct',
  ssh: 'ssh -R',
  'tether-ws': 'Tether ws',
  'tether-wss': 'Tether wss',
}

async function measurePath(
  name: PathName,
  iperf3: string,
  setup: () => Promise<PathSetup>,
  results: PathResult[],
): Promise<void> {
  const result: PathResult = { path: name, label: LABELS[name], throughput: {}, errors: [] }
  results.push(result)
  log(`${LABELS[name]}: starting`)
  let ready: PathSetup
  try {
    ready = await withTimeout(`${name} setup`, 90_000, setup())
  } catch (err) {
    result.errors.push(`setup: ${err instanceof Error ? err.message : String(err)}`)
    log(`${LABELS[name]}: ${result.errors[0].split('\n')[0]} (details at the end)`)
    return
  }
  result.info = ready.info
  const watcher = Object.keys(ready.pids).length > 0 ? new ProcWatcher(ready.pids) : undefined
  const attempt = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn()
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err)
      result.errors.push(`${what}: ${msg}`)
      log(`${LABELS[name]}: ${what} FAILED: ${msg}`)
    }
  }
  try {
    await attempt('throughput', async () => {
      log(`${LABELS[name]}: iperf3 ${SECONDS}s client→server`)
      result.throughput.normal = await iperf(iperf3, ready.iperfPort, false)
      log(`${LABELS[name]}: ${result.throughput.normal.gbps.toFixed(2)} Gbit/s`)
    })
    await attempt('throughput -R', async () => {
      log(`${LABELS[name]}: iperf3 ${SECONDS}s server→client (-R)`)
      result.throughput.reverse = await iperf(iperf3, ready.iperfPort, true)
      log(`${LABELS[name]}: ${result.throughput.reverse.gbps.toFixed(2)} Gbit/s`)
    })
    await attempt('latency', async () => {
      log(`${LABELS[name]}: ${RTT_COUNT} × ${PAYLOAD}-byte round trips`)
      result.latency = await latency(ready.echoPort)
      log(`${LABELS[name]}: p50 ${result.latency.p50Us} µs, p99 ${result.latency.p99Us} µs`)
    })
  } finally {
    if (watcher) result.processes = watcher.finish()
    await ready.stop()
  }
}

interface Ratio {
  name: string
  value: number | null
  target?: string
  pass?: boolean
}

function computeRatios(results: PathResult[]): Ratio[] {
  const get = (p: PathName) => results.find((r) => r.path === p)
  const ratio = (a?: number, b?: number) => (a !== undefined && b !== undefined && b > 0 ? a / b : null)
  const out: Ratio[] = []
  const tput = (p: PathName, dir: 'normal' | 'reverse') => get(p)?.throughput[dir]?.bitsPerSecond
  const p99 = (p: PathName) => get(p)?.latency?.p99Us
  const dirLabel = { normal: 'throughput c→s', reverse: 'throughput s→c (-R)' }
  for (const [tether, min] of [
    ['tether-ws', 1.5],
    ['tether-wss', 1.0],
  ] as const) {
    if (!get(tether)) continue
    for (const dir of ['normal', 'reverse'] as const) {
      if (get('ssh')) {
        const value = ratio(tput(tether, dir), tput('ssh', dir))
        const pass = value === null ? undefined : value >= min
        out.push({
          name: `${LABELS[tether]}/ssh ${dirLabel[dir]}`,
          value,
          target: `≥ ${min.toFixed(1)}`,
          pass,
        })
      }
      if (get('direct')) {
        out.push({
          name: `${LABELS[tether]}/direct ${dirLabel[dir]}`,
          value: ratio(tput(tether, dir), tput('direct', dir)),
        })
      }
    }
    if (get('ssh')) {
      const value = ratio(p99(tether), p99('ssh'))
      const pass = value === null ? undefined : value <= 1.5
      out.push({ name: `${LABELS[tether]}/ssh p99 latency`, value, target: '≤ 1.5', pass })
    }
    if (get('direct'))
      out.push({ name: `${LABELS[tether]}/direct p99 latency`, value: ratio(p99(tether), p99('direct')) })
  }
  return out
}

const pad = (s: string, n: number) => s.padEnd(n)
const lpad = (s: string, n: number) => s.padStart(n)

function printTable(results: PathResult[], ratios: Ratio[]): void {
  const lines: string[] = []
  const header = `${pad('path', 12)}${pad('direction', 18)}${lpad('Gbit/s', 9)}${lpad('p50 µs', 10)}${lpad('p99 µs', 10)}`
  lines.push('', header, '-'.repeat(header.length))
  const g = (t?: Throughput) => (t ? t.gbps.toFixed(2) : 'FAIL')
  for (const r of results) {
    const lat = r.latency
    const p50 = lat ? lat.p50Us.toFixed(1) : 'FAIL'
    const p99 = lat ? lat.p99Us.toFixed(1) : 'FAIL'
    lines.push(
      `${pad(r.label, 12)}${pad('c→s', 18)}${lpad(g(r.throughput.normal), 9)}${lpad(p50, 10)}${lpad(p99, 10)}`,
    )
    lines.push(`${pad('', 12)}${pad('s→c (-R)', 18)}${lpad(g(r.throughput.reverse), 9)}`)
  }
  if (ratios.length > 0) {
    lines.push('', `${pad('ratio', 44)}${lpad('value', 8)}  target`)
    lines.push('-'.repeat(66))
    for (const q of ratios) {
      const verdict = q.target
        ? `${q.target}  ${q.pass === undefined ? 'n/a' : q.pass ? 'PASS' : 'MISS'}`
        : ''
      lines.push(`${pad(q.name, 44)}${lpad(q.value === null ? 'n/a' : q.value.toFixed(2), 8)}  ${verdict}`)
    }
  }
  const procs = results.filter((r) => r.processes)
  if (procs.length > 0) {
    lines.push(
      '',
      `${pad('process', 24)}${lpad('idle RSS MiB', 14)}${lpad('peak RSS MiB', 14)}${lpad('CPU s', 9)}`,
    )
    for (const r of procs) {
      for (const [name, s] of Object.entries(r.processes ?? {})) {
        const mib = (bytes: number) => lpad((bytes / 1048576).toFixed(1), 14)
        const cpu = lpad(s.cpuSeconds.toFixed(2), 9)
        lines.push(`${pad(`${r.label} ${name}`, 24)}${mib(s.startRssBytes)}${mib(s.peakRssBytes)}${cpu}`)
      }
    }
  }
  const failed = results.filter((r) => r.errors.length > 0)
  if (failed.length > 0) {
    lines.push('', 'errors:')
    for (const r of failed) for (const e of r.errors) lines.push(`  ${r.label}: ${e}`)
  }
  process.stdout.write(`${lines.join('\n')}\n\n`)
}

async function main(): Promise<number> {
  const started = new Date()
  const wantSsh = ONLY.includes('ssh')
  const wantTls = ONLY.includes('tether-wss')
  log(
    `paths: ${ONLY.join(', ')}; ${SECONDS}s per iperf3 run, ${RTT_COUNT} round trips (+${RTT_WARMUP} warm-up)`,
  )
  const tools = ensureTools(wantSsh, wantTls)
  const iperfVersion = spawnSync(tools.iperf3, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0]
  const dir = makeTempDir('targets')
  const iperfServer = await startIperfServer(tools.iperf3, dir)
  const echo = await startEchoServer(dir)
  const targets: Targets = { iperfPort: iperfServer.port, echoPort: echo.port }
  log(`targets: iperf3 server :${targets.iperfPort}, echo server :${targets.echoPort}`)

  const results: PathResult[] = []
  for (const p of ONLY) {
    const setup = (): Promise<PathSetup> => {
      switch (p) {
        case 'direct':
          return Promise.resolve({ ...targets, pids: {}, stop: async () => {} })
        case 'ssh':
          return startSsh(tools, targets)
        case 'tether-ws':
          return startTetherPath(false, targets)
        case 'tether-wss':
          return startTetherPath(true, targets)
      }
    }
    await measurePath(p, tools.iperf3, setup, results)
  }

  const ratios = computeRatios(results)
  printTable(results, ratios)
  const cpus = os.cpus()
  const report = {
    command: `node --import tsx bench/tunnel.ts`,
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('BENCH_'))),
    machine: {
      cpu: cpus[0]?.model ?? 'unknown',
      cores: cpus.length,
      memoryBytes: os.totalmem(),
      os: `${os.type()} ${os.release()} ${os.arch()}`,
      node: process.version,
      iperf3: iperfVersion,
    },
    date: started.toISOString(),
    durationSeconds: Math.round((Date.now() - started.getTime()) / 100) / 10,
    settings: {
      iperfSeconds: SECONDS,
      iperfStreams: 1,
      rttCount: RTT_COUNT,
      rttWarmup: RTT_WARMUP,
      rttPayloadBytes: PAYLOAD,
      paths: ONLY,
    },
    results,
    ratios,
    targets: {
      'Tether ws/ssh throughput (both directions)': '≥ 1.5',
      'Tether wss/ssh throughput (both directions)': '≥ 1.0',
      'Tether/ssh p99 latency': '≤ 1.5',
    },
  }
  mkdirSync(path.dirname(RESULTS_FILE), { recursive: true })
  writeFileSync(`${RESULTS_FILE}.tmp`, `${JSON.stringify(report, null, 2)}\n`)
  renameSync(`${RESULTS_FILE}.tmp`, RESULTS_FILE)
  log(`wrote ${path.relative(process.cwd(), RESULTS_FILE)}`)
  return results.some((r) => r.errors.length > 0) ? 1 : 0
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping`)
    cleanup().finally(() => process.exit(130))
  })
}
process.on('exit', cleanupSync)

const watchdog = setTimeout(() => {
  log(`whole run exceeded BENCH_TIMEOUT=${TOTAL_TIMEOUT_S}s: stopping`)
  cleanup().finally(() => process.exit(124))
}, TOTAL_TIMEOUT_S * 1000)
watchdog.unref()

let exitCode = 1
try {
  exitCode = await main()
} catch (err) {
  log(`FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
} finally {
  await cleanup()
}
process.exit(exitCode)
