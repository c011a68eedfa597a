/**
 * bench/buffer (issue 7): the agent's store-and-forward buffer, end to end, with durable writes (`buffer.sync`
 * true, the default: one fsync per group-committed batch).
 *
 * 1. **Baseline** (the limit): a raw LevelDB loop (`level`, `db.batch(ops, {sync: true})`, one batch at a time
 *    like the agent's single writer) on the same disk, next to the agent's state dir, writing records of the
 *    agent's exact stored size and keys (`r!<seq>` plus the `m!state` record each batch rewrites). Batch sizes
 *    1, 64, 512 and the publishers' whole window (connections × window: the largest group the agent can form);
 *    the last is the one the ratio uses.
 * 2. **Publish**: the agent as its own process (`cli/tether.mjs agent --config FILE`, broker on a free port,
 *    `topics: [{filter: 'bench/+/data', device: '{1}'}]`, buffer defaults), its relay down, so records
 *    accumulate: acceptance is measured, not forwarding. A publisher process (this file, `publisher` mode) opens
 *    BENCH_CONNS MQTT.js connections, each keeping BENCH_WINDOW QoS 1 publishes in flight on its own topic
 *    `bench/dNN/data` with BENCH_PAYLOAD_BYTES-byte JSON payloads numbered 0, 1, 2… per connection. Accepted/s =
 *    PUBACKs received in the measured BENCH_SECONDS (after BENCH_WARMUP) / duration; PUBACK latency is from
 *    `publish()` to its PUBACK.
 * 3. **Drain**: the same publishers top the buffer up to BENCH_DRAIN_RECORDS (1,000,000) in all (the fill rate
 *    is a second, longer acceptance figure); then the relay starts (`cli/tether.mjs relay`, its own process, the
 *    data dir where the agent device `bench-gw` was created through the API before the outage) and the drain is
 *    timed from the agent's link coming up (agent `/metrics`) until the relay has stored every record (relay
 *    `/metrics` `tether_data_records_total{result="stored"}`) and the agent's buffer is empty. Agent and relay
 *    stop; a relay started again on the same data dir exports every bucket (ndjson): each connection's numbers
 *    must be there exactly once, in order.
 *
 *   node --no-node-snapshot --import tsx bench/buffer.ts        (npm run bench:buffer)
 *     BENCH_CONNS=16 BENCH_WINDOW=128 BENCH_PAYLOAD_BYTES=150 BENCH_SECONDS=10 BENCH_WARMUP=2 BENCH_PUBLISHERS=1
 *     BENCH_DRAIN_RECORDS=1000000 BENCH_RAW_SECONDS=4 BENCH_ONLY=baseline,publish,drain BENCH_TIMEOUT=1800
 *     BENCH_AGENT_NODE_ARGS / BENCH_RELAY_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof")
 */
import { type ChildProcess, spawnSync } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Level } from 'level'
import mqtt, { type MqttClient } from 'mqtt'
import { recordKey } from '../agent/buffer/front-reader.ts'
import { encodeRecord } from '../agent/buffer/records.ts'
import { json, request } from './lib/bucket-client.ts'
import { envInt, envList, envSeconds } from './lib/env.ts'
import { errorMessage, log } from './lib/log.ts'
import { freePort, tryConnect } from './lib/ports.ts'
import { isRunning, makeTempDir, spawnChild, stopChildren, tailOf } from './lib/processes.ts'
import { runBench } from './lib/run-bench.ts'
import { nodeArgsFrom } from './lib/tether-path.ts'
import { sleep, waitFor } from './lib/wait.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const SELF = fileURLToPath(import.meta.url)
const RESULTS_FILE = path.join(ROOT, 'bench', 'results', 'buffer.json')
const TETHER_CLI = path.join(ROOT, 'cli', 'tether.mjs')
const COMMAND = 'node --no-node-snapshot --import tsx bench/buffer.ts'
const PASSWORD = 'bench-admin-password'
const AGENT_DEVICE = 'bench-gw'
const TOPIC_FILTER = 'bench/+/data'

const TARGET_ACCEPTED_PER_SECOND = 20_000
const TARGET_RATIO_TO_RAW = 0.5
const TARGET_DRAIN_PER_SECOND = 30_000

// ---------------------------------------------------------------------------------------------------------
// Shared by both modes: payloads, topics and the PUBACK latency histogram.
// ---------------------------------------------------------------------------------------------------------

const topicOf = (conn: number) => `bench/${deviceOf(conn)}/data`
const deviceOf = (conn: number) => `d${String(conn).padStart(2, '0')}`

const pads = new Map<number, string>()
/** `{"c":conn,"n":n,"temp":…,"hum":…,"pad":"xxx"}`, padded to `bytes` (a realistic sensor reading). */
function payloadFor(conn: number, n: number, bytes: number): Buffer {
  const head = `{"c":${conn},"n":${n},"temp":${(18 + (n % 80) / 10).toFixed(1)},"hum":${35 + (n % 40)},"pad":"`
  const padLength = Math.max(0, bytes - head.length - 2)
  let pad = pads.get(padLength)
  if (pad === undefined) {
    pad = 'x'.repeat(padLength)
    pads.set(padLength, pad)
  }
  return Buffer.from(`${head}${pad}"}`)
}

/** Log-spaced latency buckets, 2 % wide, in µs: a histogram merges by adding and needs no samples kept. */
const HIST_STEP = Math.log(1.02)
const HIST_BUCKETS = 1000
const bucketOf = (us: number) =>
  us <= 1 ? 0 : Math.min(HIST_BUCKETS - 1, Math.ceil(Math.log(us) / HIST_STEP))
/** The upper bound of bucket `i` in µs. */
const bucketUs = (i: number) => Math.exp(i * HIST_STEP)

function percentileMs(hist: number[], p: number): number {
  const total = hist.reduce((a, b) => a + b, 0)
  if (total === 0) return Number.NaN
  const rank = Math.ceil((p / 100) * total)
  let seen = 0
  for (let i = 0; i < hist.length; i++) {
    seen += hist[i] ?? 0
    if (seen >= rank) return bucketUs(i) / 1000
  }
  return bucketUs(hist.length - 1) / 1000
}

function maxMs(hist: number[]): number {
  for (let i = hist.length - 1; i >= 0; i--) if ((hist[i] ?? 0) > 0) return bucketUs(i) / 1000
  return Number.NaN
}

const mergeHist = (a: number[], b: number[]) => a.map((v, i) => v + (b[i] ?? 0))

// ---------------------------------------------------------------------------------------------------------
// Publisher mode: `bench/buffer.ts publisher JOB_JSON`, a child process of the bench.
// ---------------------------------------------------------------------------------------------------------

interface PublisherJob {
  url: string
  /** Connection ids (each its own topic and device). */
  conns: number[]
  /** Per connection: the first number to publish. */
  startN: number[]
  window: number
  payloadBytes: number
  /** `timed`: publish for warmupS + seconds, measure the last `seconds`; `count`: exactly counts[i] each. */
  mode: { kind: 'timed'; warmupS: number; seconds: number } | { kind: 'count'; counts: number[] }
}

interface PublisherResult {
  /** Per connection: PUBACKs received in all, and the next number it would publish. */
  acked: number[]
  nextN: number[]
  /** PUBACKs in the measured part, its length in seconds, and their latencies. */
  measuredAcks: number
  measuredSeconds: number
  hist: number[]
  failed: number
  /** Connections that closed before their run was done. */
  connectionsLost: number
  firstError?: string
  cpuSeconds: number
}

/** Child stdout lines: `{"event":"measuring"}`, `{"event":"measured"}`, then `{"event":"result",…}`. */
const emit = (obj: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(obj)}\n`)

async function publisherMain(job: PublisherJob): Promise<void> {
  const cpu0 = process.cpuUsage()
  const clients: MqttClient[] = []
  for (const conn of job.conns) {
    const client = await mqtt.connectAsync(job.url, {
      clientId: `bench-pub-${conn}`,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      keepalive: 60,
    })
    client.on('error', () => {})
    clients.push(client)
  }
  const hist = new Array<number>(HIST_BUCKETS).fill(0)
  const acked = job.conns.map(() => 0)
  const nextN = [...job.startN]
  let measuring = false
  let measuredAcks = 0
  let failed = 0
  let connectionsLost = 0
  let firstError: string | undefined
  let stopped = false
  const limits =
    job.mode.kind === 'count' ? job.mode.counts.map((c, i) => (job.startN[i] ?? 0) + c) : undefined

  const pumps: Array<() => void> = []
  const runs = clients.map(
    (client, i) =>
      new Promise<void>((resolve) => {
        const conn = job.conns[i] as number
        const topic = topicOf(conn)
        const limit = limits?.[i] ?? Number.POSITIVE_INFINITY
        let inflight = 0
        const pump = () => {
          while (!stopped && inflight < job.window && (nextN[i] as number) < limit) {
            const n = nextN[i] as number
            nextN[i] = n + 1
            inflight++
            const t0 = performance.now()
            client.publish(topic, payloadFor(conn, n, job.payloadBytes), { qos: 1 }, (err) => {
              inflight--
              if (err) {
                failed++
                firstError ??= err.message
              } else {
                acked[i] = (acked[i] as number) + 1
                if (measuring) {
                  measuredAcks++
                  const k = bucketOf((performance.now() - t0) * 1000)
                  hist[k] = (hist[k] as number) + 1
                }
              }
              pump()
            })
          }
          if (inflight === 0 && (stopped || (nextN[i] as number) >= limit)) resolve()
        }
        // Our own end() comes after every run settled; an earlier close cuts the run short (the callbacks of the
        // publishes in flight, if MQTT.js calls them, count as failed).
        client.once('close', () => {
          if (inflight > 0 || (!stopped && (nextN[i] as number) < limit)) {
            connectionsLost++
            firstError ??= 'connection closed'
          }
          resolve()
        })
        pumps.push(pump)
        pump()
      }),
  )

  let measuredSeconds = 0
  if (job.mode.kind === 'timed') {
    const { warmupS, seconds } = job.mode
    await sleep(warmupS * 1000)
    const t0 = performance.now()
    measuring = true
    emit({ event: 'measuring' })
    await sleep(seconds * 1000)
    measuring = false
    measuredSeconds = (performance.now() - t0) / 1000
    emit({ event: 'measured' })
    stopped = true
    // Every publish in flight still gets its PUBACK (it is durable in the buffer): wait for them. A pump
    // resolves its run at its last PUBACK, or now if it has none in flight.
    for (const pump of pumps) pump()
    await Promise.all(runs)
  } else {
    const t0 = performance.now()
    measuring = true
    emit({ event: 'measuring' })
    await Promise.all(runs)
    measuring = false
    measuredSeconds = (performance.now() - t0) / 1000
    emit({ event: 'measured' })
  }
  await Promise.all(clients.map((c) => c.endAsync().catch(() => {})))
  const cpu = process.cpuUsage(cpu0)
  const result: PublisherResult = {
    acked,
    nextN,
    measuredAcks,
    measuredSeconds,
    hist,
    failed,
    connectionsLost,
    ...(firstError === undefined ? {} : { firstError }),
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  }
  emit({ event: 'result', ...result })
}

// ---------------------------------------------------------------------------------------------------------
// Bench mode.
// ---------------------------------------------------------------------------------------------------------

const S = {
  conns: envInt('BENCH_CONNS', 16),
  window: envInt('BENCH_WINDOW', 128),
  payloadBytes: envInt('BENCH_PAYLOAD_BYTES', 150, 60),
  seconds: envSeconds('BENCH_SECONDS', 10),
  warmupS: envSeconds('BENCH_WARMUP', 2, 0),
  publishers: envInt('BENCH_PUBLISHERS', 1),
  drainRecords: envInt('BENCH_DRAIN_RECORDS', 1_000_000),
  rawSeconds: envSeconds('BENCH_RAW_SECONDS', 4),
}
const PARTS = ['baseline', 'publish', 'drain'] as const
type Part = (typeof PARTS)[number]
const ONLY = envList('BENCH_ONLY')
const RUN: Record<Part, boolean> = {
  baseline: ONLY.length === 0 || ONLY.includes('baseline'),
  publish: ONLY.length === 0 || ONLY.includes('publish'),
  drain: ONLY.length === 0 || ONLY.includes('drain'),
}

const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100

/** utime + stime of a /proc …/stat file, in seconds (0 when gone). */
function statSeconds(file: string): number {
  try {
    const stat = readFileSync(file, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / TICKS
  } catch {
    return 0
  }
}

/** CPU seconds of a process's main thread (the event loop) and of its other threads (LevelDB, libuv, GC). */
function threadCpu(pid: number): { main: number; others: number } {
  let main = 0
  let others = 0
  let tids: string[] = []
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return { main, others }
  }
  for (const tid of tids) {
    const s = statSeconds(`/proc/${pid}/task/${tid}/stat`)
    if (Number(tid) === pid) main = s
    else others += s
  }
  return { main, others }
}

/** Busy and total jiffies of the whole machine (everyone's processes), from /proc/stat. */
function machineJiffies(): { busy: number; total: number } {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] as string)
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number)
  const total = f.reduce((a, b) => a + b, 0)
  return { busy: total - (f[3] ?? 0) - (f[4] ?? 0), total }
}

/** utime + stime of every process now, by pid. */
function everyProcessCpu(): Map<number, number> {
  const out = new Map<number, number>()
  for (const name of readdirSync('/proc'))
    if (/^\d+$/.test(name)) out.set(Number(name), statSeconds(`/proc/${name}/stat`))
  return out
}

/** The command line of a process, shortened (its name in brackets for a kernel thread). */
function commandOf(pid: number): string {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim()
    if (cmd) return cmd.length > 100 ? `${cmd.slice(0, 97)}...` : cmd
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return `[${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))}]`
  } catch {
    return '(gone)'
  }
}

/** CPU used by our processes (by name) and by the whole machine between `start()` and `stop()`. */
function cpuMeter(pids: Record<string, number | undefined>) {
  const read = () => {
    const per: Record<string, { main: number; others: number }> = {}
    for (const [name, pid] of Object.entries(pids)) if (pid) per[name] = threadCpu(pid)
    const self = process.cpuUsage()
    return {
      per,
      self: (self.user + self.system) / 1e6,
      machine: machineJiffies(),
      all: everyProcessCpu(),
      t: performance.now(),
    }
  }
  let first: ReturnType<typeof read> | undefined
  return {
    start: () => {
      first = read()
    },
    stop: () => {
      const a = first ?? read()
      const b = read()
      const seconds = (b.t - a.t) / 1000
      const processes: Record<string, { mainCpuSeconds: number; otherThreadsCpuSeconds: number }> = {}
      let ours = b.self - a.self
      for (const [name, v] of Object.entries(b.per)) {
        const before = a.per[name] ?? { main: 0, others: 0 }
        const mainCpu = round2(v.main - before.main)
        const otherCpu = round2(v.others - before.others)
        processes[name] = { mainCpuSeconds: mainCpu, otherThreadsCpuSeconds: otherCpu }
        ours += mainCpu + otherCpu
      }
      // Other processes that used the most CPU meanwhile (ones that ended before stop() are not seen).
      const ourPids = new Set([process.pid, ...Object.values(pids)])
      const topOthers: Array<{ pid: number; cpuSeconds: number; command: string }> = []
      for (const [pid, cpuNow] of b.all) {
        const used = cpuNow - (a.all.get(pid) ?? 0)
        if (!ourPids.has(pid) && used >= 0.5)
          topOthers.push({ pid, cpuSeconds: round2(used), command: commandOf(pid) })
      }
      topOthers.sort((x, y) => y.cpuSeconds - x.cpuSeconds)
      const busy = (b.machine.busy - a.machine.busy) / TICKS
      const total = (b.machine.total - a.machine.total) / TICKS
      return {
        seconds: round2(seconds),
        processes,
        benchMainCpuSeconds: round2(b.self - a.self),
        machineBusyPercent: total > 0 ? Math.round((100 * busy) / total) : 0,
        /** Busy CPU-seconds of the machine not spent by this bench's processes: other users of the box. */
        othersCpuSeconds: round2(Math.max(0, busy - ours)),
        topOthers: topOthers.slice(0, 4),
      }
    },
  }
}
type CpuReport = ReturnType<ReturnType<typeof cpuMeter>['stop']>

/** CPU µs per message of each process: its main thread and its other threads. */
function usPerMessage(cpu: CpuReport, messages: number): Record<string, { main: number; others: number }> {
  const out: Record<string, { main: number; others: number }> = {}
  for (const [name, p] of Object.entries(cpu.processes)) {
    out[name] = {
      main: Math.round((10 * 1e6 * p.mainCpuSeconds) / messages) / 10,
      others: Math.round((10 * 1e6 * p.otherThreadsCpuSeconds) / messages) / 10,
    }
  }
  return out
}

/** `agent 12.3 + 4.5 µs` for each process. */
const usLine = (us: Record<string, { main: number; others: number }>) =>
  Object.entries(us)
    .map(([name, u]) => `${name} ${u.main} + ${u.others}`)
    .join(', ')

const round2 = (x: number) => Math.round(x * 100) / 100
const fmt = (x: number) => Math.round(x).toLocaleString('en-US')

/** One value of a Prometheus text exposition (`name` or `name{labels}` exactly), or undefined. */
function promValue(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(series) && line[series.length] === ' ') return Number(line.slice(series.length + 1))
  }
  return undefined
}

async function scrape(url: string): Promise<string> {
  const res = await request(url, 'GET', '')
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status}`)
  return res.text
}

// ---------------------------------------------------------------------------------------------------------
// 1. The raw LevelDB baseline.
// ---------------------------------------------------------------------------------------------------------

interface RawRun {
  batchRecords: number
  records: number
  batches: number
  seconds: number
  recordsPerSecond: number
  batchesPerSecond: number
  /** CPU of this process (all threads: JavaScript, LevelDB's writer and compaction) per record, µs. */
  cpuUsPerRecord: number
}

/**
 * `seconds` of sequential `db.batch(ops, {sync: true})` of `batchRecords` records plus the state record, on a
 * fresh LevelDB in `dir`, cycling through `values` (the agent's stored bytes for distinct readings).
 */
async function rawLevelRun(
  dir: string,
  batchRecords: number,
  seconds: number,
  values: Buffer[],
): Promise<RawRun> {
  const db = new Level<string, Buffer>(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' })
  await db.open()
  const state = Buffer.from(
    JSON.stringify({ seq: 0, depth: 0, bytes: 0, appended: 0, dropped: 0, expired: 0, rejected: 0 }),
  )
  let seq = 0
  let batches = 0
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const end = t0 + seconds * 1000
  try {
    while (performance.now() < end) {
      const ops: Array<{ type: 'put'; key: string; value: Buffer }> = []
      for (let i = 0; i < batchRecords; i++) {
        seq++
        ops.push({ type: 'put', key: recordKey(seq), value: values[seq % values.length] as Buffer })
      }
      ops.push({ type: 'put', key: 'm!state', value: state })
      await db.batch(ops, { sync: true } as object)
      batches++
    }
  } finally {
    await db.close()
  }
  const elapsed = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  return {
    batchRecords,
    records: seq,
    batches,
    seconds: round2(elapsed),
    recordsPerSecond: Math.round(seq / elapsed),
    batchesPerSecond: Math.round(batches / elapsed),
    cpuUsPerRecord: Math.round((10 * (cpu.user + cpu.system)) / seq) / 10,
  }
}

/** The stored bytes of `count` readings, as the agent encodes them (same fields, sizes and ts). */
function agentRecordValues(count: number): Buffer[] {
  const now = Date.now()
  return Array.from({ length: count }, (_, k) => {
    const conn = k % S.conns
    return encodeRecord({
      seq: 1_000_000 + k,
      ts: now + k,
      source: 'mqtt',
      device: deviceOf(conn),
      topic: topicOf(conn),
      payload: payloadFor(conn, 100_000 + k, S.payloadBytes),
    })
  })
}

// ---------------------------------------------------------------------------------------------------------
// Processes: relay, agent, publishers.
// ---------------------------------------------------------------------------------------------------------

/** SIGTERM and wait up to `ms` for a clean exit (a --cpu-prof profile is written then), then stopChildren. */
async function stopGracefully(proc: ChildProcess, ms = 30_000): Promise<void> {
  if (isRunning(proc)) {
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
    proc.kill('SIGTERM')
    await Promise.race([exited, sleep(ms)])
  }
  await stopChildren([proc])
}

interface Relay {
  proc: ChildProcess
  base: string
  logFile: string
}

async function startRelay(dir: string, port: number, logName: string, nodeArgs: string[]): Promise<Relay> {
  const base = `http://127.0.0.1:${port}`
  const logFile = path.join(dir, logName)
  // biome-ignore format: one option per line
  const proc = spawnChild('tether-relay', process.execPath, [
    '--no-node-snapshot', ...nodeArgs, TETHER_CLI, 'relay',
    '--host', '127.0.0.1',
    '--port', String(port),
    '--data-dir', path.join(dir, 'relay-data'),
  ], { logFile, env: { ...process.env, TETHER_ADMIN_PASSWORD: PASSWORD } })
  try {
    await waitFor(
      'relay /healthz',
      async () => {
        if (!isRunning(proc)) throw new Error(`relay exited with ${proc.exitCode ?? proc.signalCode}`)
        return (await request(`${base}/healthz`, 'GET', '')).status === 200
      },
      60_000,
    )
  } catch (err) {
    throw new Error(`${errorMessage(err)}\n--- ${logName} ---\n${tailOf(logFile)}`)
  }
  return { proc, base, logFile }
}

async function adminToken(base: string): Promise<string> {
  const { access_token } = await json<{ access_token: string }>(`${base}/oauth/token`, 'POST', '', {
    grant_type: 'password',
    username: 'admin',
    password: PASSWORD,
  })
  return access_token
}

interface AgentProc {
  proc: ChildProcess
  brokerPort: number
  metricsUrl: string
  stateDir: string
  logFile: string
}

async function startAgentProc(dir: string, relayPort: number, credential: string): Promise<AgentProc> {
  const brokerPort = await freePort()
  const metricsPort = await freePort()
  const stateDir = path.join(dir, 'agent-state')
  const config = {
    relay: `ws://127.0.0.1:${relayPort}`,
    user: 'admin',
    device: AGENT_DEVICE,
    credential,
    stateDir,
    broker: { port: brokerPort },
    topics: [{ filter: TOPIC_FILTER, device: '{1}' }],
    metrics: { port: metricsPort },
  }
  const configFile = path.join(dir, 'agent.json')
  writeFileSync(configFile, JSON.stringify(config, null, 2))
  const logFile = path.join(dir, 'agent.log')
  const nodeArgs = nodeArgsFrom('BENCH_AGENT_NODE_ARGS')
  const proc = spawnChild(
    'tether-agent',
    process.execPath,
    ['--no-node-snapshot', ...nodeArgs, TETHER_CLI, 'agent', '--config', configFile],
    { logFile },
  )
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`
  try {
    await waitFor(
      'agent broker and /metrics',
      async () => {
        if (!isRunning(proc)) throw new Error(`agent exited with ${proc.exitCode ?? proc.signalCode}`)
        return (await tryConnect(brokerPort)) && (await request(metricsUrl, 'GET', '')).status === 200
      },
      60_000,
    )
  } catch (err) {
    throw new Error(`${errorMessage(err)}\n--- agent.log ---\n${tailOf(logFile)}`)
  }
  return { proc, brokerPort, metricsUrl, stateDir, logFile }
}

interface AgentFigures {
  depth: number
  bytes: number
  appended: number
  dropped: number
  rejected: number
  forwarded: number
  linkConnected: number
  brokerAppended: number
  brokerRefusedFull: number
}

async function agentFigures(metricsUrl: string): Promise<AgentFigures> {
  const text = await scrape(metricsUrl)
  const v = (name: string) => promValue(text, name) ?? Number.NaN
  return {
    depth: v('tether_agent_buffer_depth_records'),
    bytes: v('tether_agent_buffer_bytes'),
    appended: v('tether_agent_buffer_appended_records_total'),
    dropped: v('tether_agent_buffer_dropped_records_total'),
    rejected: v('tether_agent_buffer_rejected_records_total'),
    forwarded: v('tether_agent_buffer_forwarded_records_total'),
    linkConnected: v('tether_agent_link_connected'),
    brokerAppended: v('tether_agent_broker_appended_messages_total'),
    brokerRefusedFull: v('tether_agent_broker_refused_full_messages_total'),
  }
}

async function relayStored(base: string): Promise<{ stored: number; duplicates: number; rejected: number }> {
  const text = await scrape(`${base}/metrics`)
  const v = (result: string) => promValue(text, `tether_data_records_total{result="${result}"}`) ?? 0
  return { stored: v('stored'), duplicates: v('duplicate'), rejected: v('rejected') }
}

interface PublishRun {
  acked: number[]
  nextN: number[]
  accepted: number
  measuredAcks: number
  measuredSeconds: number
  acceptedPerSecond: number
  latencyMs: { p50: number; p90: number; p99: number; max: number }
  /** Publishes that failed, plus connections lost before their run was done. */
  failed: number
  firstError?: string
  publisherCpuSeconds: number
  cpu: CpuReport
  /** CPU µs per accepted message in the measured part, per process (main thread + other threads). */
  cpuUsPerMessage: Record<string, { main: number; others: number }>
}

/**
 * Runs BENCH_PUBLISHERS publisher processes over the connections (round robin) with `mode`; CPU is measured
 * between the first publisher's `measuring` and `measured` events.
 */
async function publish(
  dir: string,
  agent: AgentProc,
  startN: number[],
  mode: PublisherJob['mode'],
  label: string,
): Promise<PublishRun> {
  const n = Math.min(S.publishers, S.conns)
  const groups = Array.from({ length: n }, (_, p) => range(S.conns).filter((c) => c % n === p))
  const pids: Record<string, number | undefined> = { agent: agent.proc.pid }
  const procs: ChildProcess[] = []
  const results: Array<Promise<PublisherResult>> = []
  let meter: ReturnType<typeof cpuMeter> | undefined
  let cpu: CpuReport | undefined
  const onEvent = (p: number, event: string) => {
    if (p !== 0) return
    if (event === 'measuring') meter?.start()
    if (event === 'measured') cpu = meter?.stop()
  }
  groups.forEach((conns, p) => {
    const job: PublisherJob = {
      url: `mqtt://127.0.0.1:${agent.brokerPort}`,
      conns,
      startN: conns.map((c) => startN[c] ?? 0),
      window: S.window,
      payloadBytes: S.payloadBytes,
      mode: mode.kind === 'count' ? { kind: 'count', counts: conns.map((c) => mode.counts[c] ?? 0) } : mode,
    }
    results.push(
      new Promise<PublisherResult>((resolve, reject) => {
        let pending = ''
        const logFile = path.join(dir, `publisher-${label}-${p}.log`)
        const proc = spawnChild(
          `publisher-${p}`,
          process.execPath,
          ['--no-node-snapshot', '--import', 'tsx', SELF, 'publisher', JSON.stringify(job)],
          {
            logFile,
            onOutput: (text) => {
              pending += text
              for (let i = pending.indexOf('\n'); i >= 0; i = pending.indexOf('\n')) {
                const line = pending.slice(0, i)
                pending = pending.slice(i + 1)
                if (!line.startsWith('{"event"')) continue
                const msg = JSON.parse(line) as { event: string } & PublisherResult
                if (msg.event === 'result') resolve(msg)
                else onEvent(p, msg.event)
              }
            },
          },
        )
        procs.push(proc)
        pids[`publisher${n > 1 ? p : ''}`] = proc.pid
        proc.once('exit', (code) =>
          reject(new Error(`publisher ${p} exited with ${code}\n${tailOf(logFile)}`)),
        )
      }),
    )
  })
  meter = cpuMeter(pids)
  const all = await Promise.all(results)
  await stopChildren(procs)
  const acked = new Array<number>(S.conns).fill(0)
  const nextN = [...startN]
  let hist = new Array<number>(HIST_BUCKETS).fill(0)
  let measuredAcks = 0
  let perSecond = 0
  let failed = 0
  let firstError: string | undefined
  let publisherCpuSeconds = 0
  all.forEach((r, p) => {
    const conns = groups[p] as number[]
    conns.forEach((c, i) => {
      acked[c] = r.acked[i] as number
      nextN[c] = r.nextN[i] as number
    })
    hist = mergeHist(hist, r.hist)
    measuredAcks += r.measuredAcks
    perSecond += r.measuredAcks / r.measuredSeconds
    failed += r.failed + r.connectionsLost
    firstError ??= r.firstError
    publisherCpuSeconds += r.cpuSeconds
  })
  const measuredSeconds = (all[0] as PublisherResult).measuredSeconds
  const cpuReport = cpu ?? meter.stop()
  return {
    acked,
    nextN,
    accepted: acked.reduce((a, b) => a + b, 0),
    measuredAcks,
    measuredSeconds: round2(measuredSeconds),
    acceptedPerSecond: Math.round(perSecond),
    latencyMs: {
      p50: round2(percentileMs(hist, 50)),
      p90: round2(percentileMs(hist, 90)),
      p99: round2(percentileMs(hist, 99)),
      max: round2(maxMs(hist)),
    },
    failed,
    ...(firstError === undefined ? {} : { firstError }),
    publisherCpuSeconds: round2(publisherCpuSeconds),
    cpu: cpuReport,
    cpuUsPerMessage: usPerMessage(cpuReport, measuredAcks),
  }
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i)

// ---------------------------------------------------------------------------------------------------------
// 3. Drain and read-back.
// ---------------------------------------------------------------------------------------------------------

interface ReadBack {
  points: number
  missing: number
  duplicates: number
  outOfOrder: number
  foreign: number
}

/** Streams every device bucket's ndjson export: connection c's numbers must be 0…expected[c]-1, once, in order. */
async function readBack(base: string, token: string, expected: number[]): Promise<ReadBack> {
  const out: ReadBack = { points: 0, missing: 0, duplicates: 0, outOfOrder: 0, foreign: 0 }
  for (const conn of range(S.conns)) {
    const want = expected[conn] ?? 0
    const seen = new Uint8Array(want)
    let last = -1
    const url = `${base}/v1/users/admin/buckets/${deviceOf(conn)}/export?format=ndjson`
    await new Promise<void>((resolve, reject) => {
      http
        .get(url, { headers: { authorization: `Bearer ${token}` } }, (res) => {
          if (res.statusCode === 404 && want === 0) {
            res.resume()
            return resolve()
          }
          if (res.statusCode !== 200) return reject(new Error(`GET ${url}: ${res.statusCode}`))
          readline
            .createInterface({ input: res })
            .on('line', (line) => {
              if (!line) return
              out.points++
              const { val } = JSON.parse(line) as { val: { c?: number; n?: number } }
              const n = val.n
              if (val.c !== conn || typeof n !== 'number' || n < 0 || n >= want) {
                out.foreign++
                return
              }
              if (seen[n]) out.duplicates++
              seen[n] = 1
              if (n < last) out.outOfOrder++
              last = n
            })
            .on('close', resolve)
          res.on('error', reject)
        })
        .on('error', reject)
    })
    for (let n = 0; n < want; n++) if (!seen[n]) out.missing++
  }
  return out
}

interface DrainRun {
  records: number
  /** From the relay's start to the agent's link coming up (the agent's reconnect backoff). */
  reconnectSeconds: number
  /** From the link coming up to the last record stored by the relay. */
  seconds: number
  recordsPerSecond: number
  /** Until the agent's buffer was empty (the last acknowledgement applied). */
  emptySeconds: number
  /** Stored/s in each whole second of the drain. */
  perSecond: number[]
  relay: { stored: number; duplicates: number; rejected: number }
  agentAfter: AgentFigures
  cpu: CpuReport
  cpuUsPerMessage: Record<string, { main: number; others: number }>
  readBack: ReadBack
}

async function drain(
  dir: string,
  relayPort: number,
  agent: AgentProc,
  expected: number[],
  logLine: (s: string) => void,
): Promise<DrainRun> {
  const records = expected.reduce((a, b) => a + b, 0)
  const tStart = performance.now()
  const relay = await startRelay(dir, relayPort, 'relay-drain.log', nodeArgsFrom('BENCH_RELAY_NODE_ARGS'))
  const meter = cpuMeter({ agent: agent.proc.pid, relay: relay.proc.pid })
  // The link comes up after the agent's reconnect backoff (full jitter, up to 60 s after a long outage).
  let t0 = 0
  await waitFor(
    'the agent to reconnect',
    async () => {
      const f = await agentFigures(agent.metricsUrl)
      if (f.linkConnected !== 1 && f.forwarded === 0) return false
      t0 = performance.now()
      return true
    },
    120_000,
    100,
  )
  meter.start()
  const reconnectSeconds = (t0 - tStart) / 1000
  logLine(`drain: agent connected ${reconnectSeconds.toFixed(1)} s after the relay started; draining`)
  const samples: Array<[number, number]> = [[t0, 0]]
  let tStored = 0
  let tEmpty = 0
  let stored = { stored: 0, duplicates: 0, rejected: 0 }
  let lastLog = t0
  const deadline = t0 + 1_800_000
  for (;;) {
    const now = performance.now()
    if (now > deadline) throw new Error(`drain not done after 30 min: ${JSON.stringify(stored)}`)
    stored = await relayStored(relay.base)
    const t = performance.now()
    samples.push([t, stored.stored])
    if (!tStored && stored.stored >= records) tStored = t
    if (tStored) {
      const f = await agentFigures(agent.metricsUrl)
      if (f.depth === 0) {
        tEmpty = performance.now()
        break
      }
    }
    if (t - lastLog > 5000) {
      lastLog = t
      logLine(`drain: ${fmt(stored.stored)} stored after ${((t - t0) / 1000).toFixed(0)} s`)
    }
    await sleep(100) // a scrape costs the relay ~1 ms of CPU (prom-client default metrics)
  }
  const cpu = meter.stop()
  const agentAfter = await agentFigures(agent.metricsUrl)
  // Stored/s per whole second, from the samples.
  const perSecond: number[] = []
  for (let s = 1; t0 + s * 1000 <= tStored + 1000; s++) {
    const at = (ms: number) => {
      let v = 0
      for (const [t, n] of samples) if (t <= ms) v = n
      return v
    }
    perSecond.push(at(t0 + s * 1000) - at(t0 + (s - 1) * 1000))
  }
  const seconds = (tStored - t0) / 1000
  // Both stop right after the drain (a --cpu-prof profile then ends with it), and the buckets are read back
  // from a relay started again on the same data dir: what was acknowledged is on disk.
  await stopGracefully(agent.proc)
  await stopGracefully(relay.proc)
  const reader = await startRelay(dir, relayPort, 'relay-readback.log', [])
  logLine('drain: reading every bucket back from a restarted relay')
  const check = await readBack(reader.base, await adminToken(reader.base), expected)
  await stopGracefully(reader.proc)
  return {
    records,
    reconnectSeconds: round2(reconnectSeconds),
    seconds: round2(seconds),
    recordsPerSecond: Math.round(records / seconds),
    emptySeconds: round2((tEmpty - t0) / 1000),
    perSecond,
    relay: stored,
    agentAfter,
    cpu,
    cpuUsPerMessage: usPerMessage(cpu, records),
    readBack: check,
  }
}

// ---------------------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const started = new Date()
  const loadAtStart = os.loadavg()
  const dir = makeTempDir('buffer')
  const window = S.conns * S.window
  const values = agentRecordValues(4096)
  const recordBytes = Math.round(values.reduce((a, v) => a + v.length, 0) / values.length)
  log(
    `settings: ${S.conns} connections × ${S.window} in flight, ${S.payloadBytes}-byte payloads (${recordBytes}-byte` +
      ` stored records), ${S.seconds} s measured after ${S.warmupS} s; drain ${fmt(S.drainRecords)}; dir ${dir}`,
  )
  const result: Record<string, unknown> = {
    command: COMMAND,
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('BENCH_'))),
    date: started.toISOString(),
    machine: {
      cpu: os.cpus()[0]?.model,
      nproc: os.availableParallelism(),
      memoryBytes: os.totalmem(),
      os: `${os.type()} ${os.release()} ${os.arch()}`,
      node: process.version,
      loadAverageAtStart: loadAtStart.map(round2),
      disk: spawnSync('df', ['-h', '--output=source,fstype', dir], { encoding: 'utf8' })
        .stdout.trim()
        .split('\n')
        .pop(),
    },
    settings: { ...S, totalWindow: window, storedRecordBytes: recordBytes, topicFilter: TOPIC_FILTER },
  }
  const lines: string[] = []
  const say = (s: string) => {
    lines.push(s)
    log(s)
  }
  let ok = true

  // 1. Baseline.
  let rawLimit: RawRun | undefined
  if (RUN.baseline) {
    const sizes = [...new Set([1, 64, 512, window])].sort((a, b) => a - b)
    const runs: RawRun[] = []
    for (const size of sizes) {
      const r = await rawLevelRun(path.join(dir, `raw-${size}`), size, S.rawSeconds, values)
      runs.push(r)
      say(
        `raw LevelDB, batches of ${size} + state, sync: ${fmt(r.recordsPerSecond)} records/s (${fmt(r.batchesPerSecond)} batches/s), ${r.cpuUsPerRecord} µs CPU per record`,
      )
    }
    rawLimit = runs.find((r) => r.batchRecords === window)
    result.baseline = {
      what: 'level db.batch(ops, {sync: true}), one batch at a time',
      runs,
      limit: rawLimit,
    }
  }

  if (!RUN.publish && !RUN.drain) {
    writeResults(result)
    return 0
  }

  // The relay exists first: the agent device and its credential are made through its API, then it stops.
  const relayPort = await freePort()
  const setupRelay = await startRelay(dir, relayPort, 'relay-setup.log', [])
  const token = await adminToken(setupRelay.base)
  const device = await json<{ credential: string }>(
    `${setupRelay.base}/v1/users/admin/devices`,
    'POST',
    token,
    { device: AGENT_DEVICE, type: 'agent' },
    201,
  )
  await stopGracefully(setupRelay.proc)
  log(`relay stopped (device ${AGENT_DEVICE} created); starting the agent with its relay down`)
  const agent = await startAgentProc(dir, relayPort, device.credential)
  let startN = new Array<number>(S.conns).fill(0)

  // 2. Publish.
  if (RUN.publish) {
    log(
      `publish: ${S.conns} connections × ${S.window} QoS 1 in flight, ${S.warmupS} s warm-up + ${S.seconds} s`,
    )
    const run = await publish(
      dir,
      agent,
      startN,
      { kind: 'timed', warmupS: S.warmupS, seconds: S.seconds },
      'timed',
    )
    startN = run.nextN
    const f = await agentFigures(agent.metricsUrl)
    const ratio = rawLimit ? run.acceptedPerSecond / rawLimit.recordsPerSecond : undefined
    say(
      `publish: ${fmt(run.acceptedPerSecond)} QoS 1 messages/s accepted, PUBACK p50 ${run.latencyMs.p50} ms, p99 ${run.latencyMs.p99} ms` +
        (ratio === undefined
          ? ''
          : `, ${ratio.toFixed(2)} × raw LevelDB (${fmt(rawLimit?.recordsPerSecond ?? 0)}/s)`),
    )
    say(
      `publish: agent main thread ${run.cpu.processes.agent?.mainCpuSeconds} CPU-s, other threads ${run.cpu.processes.agent?.otherThreadsCpuSeconds},` +
        ` publisher ${run.cpu.processes.publisher?.mainCpuSeconds} + ${run.cpu.processes.publisher?.otherThreadsCpuSeconds}` +
        ` in ${run.cpu.seconds} s; machine ${run.cpu.machineBusyPercent} % busy, others ${run.cpu.othersCpuSeconds} CPU-s`,
    )
    say(`publish: CPU µs per message (main + other threads): ${usLine(run.cpuUsPerMessage)}`)
    const consistent = f.appended === run.accepted && f.depth === run.accepted && f.dropped === 0
    say(
      `publish: ${fmt(run.accepted)} acknowledged in all; agent buffer depth ${fmt(f.depth)}, appended ${fmt(f.appended)},` +
        ` dropped ${f.dropped}; failed publishes ${run.failed}${consistent ? '' : ' — MISMATCH'}`,
    )
    if (!consistent || run.failed > 0) ok = false
    result.publish = {
      ...run,
      agentAfter: f,
      ratioToRaw: ratio,
      targets: {
        acceptedPerSecond: {
          target: TARGET_ACCEPTED_PER_SECOND,
          met: run.acceptedPerSecond >= TARGET_ACCEPTED_PER_SECOND,
        },
        ratioToRaw: {
          target: TARGET_RATIO_TO_RAW,
          met: ratio === undefined ? null : ratio >= TARGET_RATIO_TO_RAW,
        },
      },
    }
  }

  // 3. Fill to BENCH_DRAIN_RECORDS, then drain.
  if (RUN.drain) {
    const have = startN.reduce((a, b) => a + b, 0)
    const missing = Math.max(0, S.drainRecords - have)
    const counts = range(S.conns).map((c) => Math.floor(missing / S.conns) + (c < missing % S.conns ? 1 : 0))
    if (missing > 0) {
      log(`fill: ${fmt(missing)} more QoS 1 messages, to ${fmt(have + missing)} buffered`)
      const fill = await publish(dir, agent, startN, { kind: 'count', counts }, 'fill')
      startN = fill.nextN
      say(
        `fill: ${fmt(fill.accepted)} messages in ${fill.measuredSeconds} s = ${fmt(fill.accepted / fill.measuredSeconds)}/s accepted,` +
          ` PUBACK p50 ${fill.latencyMs.p50} ms, p99 ${fill.latencyMs.p99} ms; machine ${fill.cpu.machineBusyPercent} % busy,` +
          ` others ${fill.cpu.othersCpuSeconds} CPU-s; CPU µs per message ${usLine(fill.cpuUsPerMessage)}`,
      )
      if (fill.failed > 0) ok = false
      result.fill = { ...fill, acceptedPerSecond: Math.round(fill.accepted / fill.measuredSeconds) }
    }
    const before = await agentFigures(agent.metricsUrl)
    const expected = startN
    const records = expected.reduce((a, b) => a + b, 0)
    say(
      `drain: ${fmt(before.depth)} records buffered (${(before.bytes / 1048576).toFixed(1)} MiB), dropped ${before.dropped}; starting the relay`,
    )
    if (before.depth !== records || before.dropped !== 0) ok = false
    const d = await drain(dir, relayPort, agent, expected, log)
    const rb = d.readBack
    const exact = rb.points === records && rb.missing === 0 && rb.duplicates === 0 && rb.foreign === 0
    say(
      `drain: ${fmt(d.records)} records in ${d.seconds} s = ${fmt(d.recordsPerSecond)} messages/s into the buckets` +
        ` (agent buffer empty at ${d.emptySeconds} s; reconnect took ${d.reconnectSeconds} s, not counted)`,
    )
    say(
      `drain: relay main ${d.cpu.processes.relay?.mainCpuSeconds} CPU-s + ${d.cpu.processes.relay?.otherThreadsCpuSeconds} other threads,` +
        ` agent ${d.cpu.processes.agent?.mainCpuSeconds} + ${d.cpu.processes.agent?.otherThreadsCpuSeconds} in ${d.cpu.seconds} s;` +
        ` machine ${d.cpu.machineBusyPercent} % busy, others ${d.cpu.othersCpuSeconds} CPU-s`,
    )
    say(`drain: CPU µs per message (main + other threads): ${usLine(d.cpuUsPerMessage)}`)
    say(
      `read back: ${fmt(rb.points)} points in ${S.conns} buckets (expected ${fmt(records)}); missing ${rb.missing},` +
        ` duplicates ${rb.duplicates}, out of order ${rb.outOfOrder}, foreign ${rb.foreign}; relay stored ${fmt(d.relay.stored)},` +
        ` duplicates ${d.relay.duplicates}, rejected ${d.relay.rejected}${exact ? '' : ' — MISMATCH'}`,
    )
    if (!exact || rb.outOfOrder > 0) ok = false
    result.drain = {
      ...d,
      agentBefore: before,
      exactlyOnce: exact,
      targets: {
        recordsPerSecond: {
          target: TARGET_DRAIN_PER_SECOND,
          met: d.recordsPerSecond >= TARGET_DRAIN_PER_SECOND,
        },
      },
    }
  }
  await stopGracefully(agent.proc) // a no-op after a drain, which stops it
  // The targets, met or missed, in one place.
  const verdicts: Array<{ target: string; value: number | null; met: boolean | null }> = []
  const pub = result.publish as { acceptedPerSecond: number; ratioToRaw?: number } | undefined
  const dr = result.drain as { recordsPerSecond: number } | undefined
  if (pub) {
    const rate = pub.acceptedPerSecond
    verdicts.push({
      target: `QoS 1 messages/s accepted ≥ ${fmt(TARGET_ACCEPTED_PER_SECOND)}`,
      value: rate,
      met: rate >= TARGET_ACCEPTED_PER_SECOND,
    })
    const ratio = pub.ratioToRaw
    verdicts.push({
      target: `accepted / raw LevelDB ≥ ${TARGET_RATIO_TO_RAW}`,
      value: ratio === undefined ? null : round2(ratio),
      met: ratio === undefined ? null : ratio >= TARGET_RATIO_TO_RAW,
    })
  }
  if (dr) {
    verdicts.push({
      target: `drain messages/s ≥ ${fmt(TARGET_DRAIN_PER_SECOND)}`,
      value: dr.recordsPerSecond,
      met: dr.recordsPerSecond >= TARGET_DRAIN_PER_SECOND,
    })
  }
  for (const v of verdicts) {
    const verdict = v.met === null ? 'n/a (no baseline run)' : v.met ? 'met' : 'MISSED'
    say(`target ${v.target}: ${v.value === null ? '–' : v.value.toLocaleString('en-US')} ${verdict}`)
  }
  result.targets = verdicts
  result.durationSeconds = Math.round((Date.now() - started.getTime()) / 1000)
  result.ok = ok
  process.stdout.write(`\n${lines.join('\n')}\n\n`)
  writeResults(result)
  return ok ? 0 : 1
}

function writeResults(result: Record<string, unknown>): void {
  mkdirSync(path.dirname(RESULTS_FILE), { recursive: true })
  writeFileSync(`${RESULTS_FILE}.tmp`, `${JSON.stringify(result, null, 2)}\n`)
  renameSync(`${RESULTS_FILE}.tmp`, RESULTS_FILE)
  log(`wrote ${path.relative(ROOT, RESULTS_FILE)}`)
}

if (process.argv[2] === 'publisher') {
  await publisherMain(JSON.parse(process.argv[3] as string) as PublisherJob)
  process.exit(0)
} else {
  await runBench(main, envInt('BENCH_TIMEOUT', 1800))
}
