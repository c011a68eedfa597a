/**
 * Tunnel benchmark on loopback: TCP throughput (iperf3, both directions) and 64-byte round-trip latency,
 * UDP throughput and loss at fixed offered rates, and new connections per second, for (a) direct, (b) OpenSSH
 * `ssh -R`, (c) Tether over ws and (d) Tether over wss. Run: `npm run bench`. Writes
 * bench/results/tunnel.json. Knobs: see bench/README.md. The parts live in bench/lib/.
 */
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { envInt, envList } from './lib/env.ts'
import { type IperfServer, parseRate, startIperfServer } from './lib/iperf.ts'
import { startEchoServer } from './lib/latency.ts'
import { log } from './lib/log.ts'
import { measurePath } from './lib/measure.ts'
import { makeTempDir } from './lib/processes.ts'
import { computeChecks, computeRatios, writeReport } from './lib/report.ts'
import { runBench } from './lib/run-bench.ts'
import { startSsh } from './lib/ssh-path.ts'
import { printTable } from './lib/table.ts'
import { startTetherPath } from './lib/tether-path.ts'
import { ensureTools, iperfVersion } from './lib/tools.ts'
import {
  ALL_PARTS,
  ALL_PATHS,
  type PartName,
  type PathName,
  type PathResult,
  type PathSetup,
  type Settings,
  type Targets,
} from './lib/types.ts'

const RESULTS_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'results', 'tunnel.json')

const PATH_ALIASES: Record<string, PathName> = {
  direct: 'direct',
  ssh: 'ssh',
  ws: 'tether-ws',
  wss: 'tether-wss',
  'tether-ws': 'tether-ws',
  'tether-wss': 'tether-wss',
}
/** The parts each path can run: no UDP over ssh -R; UDP through Tether on the ws relay only. */
const PATH_PARTS: Record<PathName, PartName[]> = {
  direct: ['tcp', 'udp', 'conn'],
  ssh: ['tcp', 'conn'],
  'tether-ws': ['tcp', 'udp', 'conn'],
  'tether-wss': ['tcp', 'conn'],
}
/** UDP runs per rate on each path: direct once; Tether ws via the relay (udp) and via the agent (udp-iotmp). */
const UDP_WAYS: Record<PathName, number> = { direct: 1, ssh: 0, 'tether-ws': 2, 'tether-wss': 0 }

const udpRates = (process.env.BENCH_UDP_RATES || '50M,200M')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean)
for (const rate of udpRates) parseRate(rate) // throws on a malformed rate
/** iperf3 -w for the UDP runs: big enough that the iperf3 ends themselves do not drop datagrams. */
const udpBuffer = process.env.BENCH_UDP_BUFFER ?? '4M'
if (udpBuffer !== '' && udpBuffer !== '0') parseRate(udpBuffer)
const SETTINGS: Settings = {
  seconds: envInt('BENCH_SECONDS', 5),
  rttCount: envInt('BENCH_RTT_COUNT', 5000),
  rttWarmup: envInt('BENCH_RTT_WARMUP', 200, 0),
  payload: 64,
  udpRates,
  udpDatagramBytes: 1400,
  udpSocketBuffer: udpBuffer === '0' ? '' : udpBuffer,
  connCount: envInt('BENCH_CONN_COUNT', 2000),
  connWarmup: envInt('BENCH_CONN_WARMUP', 100, 0),
  connConcurrency: envInt('BENCH_CONN_CONCURRENCY', 16),
}

/** BENCH_ONLY: path names select paths, part names (tcp, udp, conn) select parts; none of a kind = all. */
const { PATHS, PARTS } = (() => {
  const tokens = envList('BENCH_ONLY')
  const paths: PathName[] = []
  const parts: PartName[] = []
  for (const t of tokens) {
    if (PATH_ALIASES[t]) paths.push(PATH_ALIASES[t])
    else if ((ALL_PARTS as string[]).includes(t)) parts.push(t as PartName)
    else throw new Error(`BENCH_ONLY: unknown "${t}" (paths: direct, ssh, ws, wss; parts: tcp, udp, conn)`)
  }
  const selectedParts = ALL_PARTS.filter((p) => parts.length === 0 || parts.includes(p))
  const selectedPaths = ALL_PATHS.filter((p) => paths.length === 0 || paths.includes(p))
  // A path runs when it can run at least one selected part.
  return {
    PATHS: selectedPaths.filter((p) => PATH_PARTS[p].some((part) => selectedParts.includes(part))),
    PARTS: selectedParts,
  }
})()
const partsOf = (p: PathName) => PATH_PARTS[p].filter((part) => PARTS.includes(part))

/** Whole-run watchdog: setup and teardown allowance plus each measurement's own bound. */
const TOTAL_TIMEOUT_S = envInt(
  'BENCH_TIMEOUT',
  240 +
    PATHS.reduce((sum, p) => {
      const parts = partsOf(p)
      const s = SETTINGS
      let bound = parts.includes('tcp') ? 2 * (s.seconds + 30) + 90 : 90
      if (parts.includes('udp')) bound += UDP_WAYS[p] * s.udpRates.length * (s.seconds + 35)
      if (parts.includes('conn')) bound += 30 + Math.ceil((s.connCount + s.connWarmup) * 0.02)
      return sum + bound
    }, 0),
)

async function main(): Promise<number> {
  const started = new Date()
  const s = SETTINGS
  if (PATHS.length === 0) throw new Error('BENCH_ONLY selects no path that can run the selected parts')
  let what = `paths: ${PATHS.join(', ')}; ${s.seconds}s per iperf3 run, ${s.rttCount} round trips (+${s.rttWarmup} warm-up)`
  if (PARTS.length < ALL_PARTS.length) what += `; parts: ${PARTS.join(', ')}`
  if (PARTS.includes('udp')) what += `; UDP at ${s.udpRates.join(', ')}`
  if (PARTS.includes('conn')) what += `; ${s.connCount} connections, ${s.connConcurrency} at a time`
  log(what)
  const tools = ensureTools(PATHS.includes('ssh'), PATHS.includes('tether-wss'))
  const dir = makeTempDir('targets')
  const iperfServer = await startIperfServer(tools.iperf3, dir)
  const echo = await startEchoServer(dir)
  const targets: Targets = { iperfPort: iperfServer.port, echoPort: echo.port }
  let udpServer: IperfServer | undefined
  // A separate iperf3 server for UDP, so a failed UDP run cannot leave the TCP one busy.
  if (PATHS.some((p) => partsOf(p).includes('udp'))) {
    udpServer = await startIperfServer(tools.iperf3, dir, 'iperf3-udp-server')
    targets.iperfUdpPort = udpServer.port
  }
  const udpNote = udpServer ? `, iperf3 UDP server :${udpServer.port}` : ''
  log(`targets: iperf3 server :${targets.iperfPort}, echo server :${targets.echoPort}${udpNote}`)

  const results: PathResult[] = []
  for (const p of PATHS) {
    const parts = partsOf(p)
    const udp = parts.includes('udp')
    const setup = (): Promise<PathSetup> => {
      switch (p) {
        case 'direct': {
          const ways =
            udp && targets.iperfUdpPort ? [{ via: 'direct' as const, port: targets.iperfUdpPort }] : []
          const direct: PathSetup = {
            iperfPort: targets.iperfPort,
            echoPort: targets.echoPort,
            pids: {},
            stop: async () => {},
          }
          if (ways.length > 0) direct.udp = ways
          return Promise.resolve(direct)
        }
        case 'ssh':
          return startSsh(tools, targets)
        case 'tether-ws':
          return startTetherPath(false, targets, udp)
        case 'tether-wss':
          return startTetherPath(true, targets, false)
      }
    }
    results.push(await measurePath({ name: p, iperf3: tools.iperf3, setup, settings: s, parts, udpServer }))
  }

  const ratios = computeRatios(results, PARTS)
  const checks = computeChecks(results)
  printTable(results, PARTS, ratios, checks)
  writeReport(RESULTS_FILE, {
    started,
    iperfVersion: iperfVersion(tools.iperf3),
    settings: s,
    parts: PARTS,
    paths: PATHS,
    results,
    ratios,
    checks,
  })
  return results.some((r) => r.errors.length > 0) ? 1 : 0
}

await runBench(main, TOTAL_TIMEOUT_S)
