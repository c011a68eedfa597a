/** Ratios between paths, absolute target checks, and the JSON report (bench/results/tunnel.json). */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseRate } from './iperf.ts'
import { log } from './log.ts'
import { LABELS, type PartName, type PathName, type PathResult, type Settings, UDP_LABELS } from './types.ts'

export interface Ratio {
  name: string
  value: number | null
  target?: string
  pass?: boolean
}

/** An absolute target: a measured value (with its unit) against a bound. */
export interface Check {
  name: string
  value: number | null
  unit: string
  target: string
  pass?: boolean
}

const TETHER_PATHS = ['tether-ws', 'tether-wss'] as const
/** Tether/ssh throughput minimum by transport. */
const THROUGHPUT_MIN = { 'tether-ws': 1.5, 'tether-wss': 1.0 }
export const UDP_TARGET_RATE = '200M'
export const UDP_MAX_LOSS_PERCENT = 1
export const CONN_MIN_PER_SECOND = 2000

/** Tether/ssh and Tether/direct ratios (throughput, p99 latency, conns/s) for the parts that ran. */
export function computeRatios(results: PathResult[], parts: PartName[]): Ratio[] {
  const get = (p: PathName) => results.find((r) => r.path === p)
  const ratio = (a?: number, b?: number) => (a !== undefined && b !== undefined && b > 0 ? a / b : null)
  const out: Ratio[] = []
  const tput = (p: PathName, dir: 'normal' | 'reverse') => get(p)?.throughput[dir]?.bitsPerSecond
  const p99 = (p: PathName) => get(p)?.latency?.p99Us
  const conns = (p: PathName) => get(p)?.conn?.connsPerSecond
  const dirLabel = { normal: 'throughput c→s', reverse: 'throughput s→c (-R)' }
  for (const tether of TETHER_PATHS) {
    if (!get(tether)) continue
    const min = THROUGHPUT_MIN[tether]
    if (parts.includes('tcp')) {
      for (const dir of ['normal', 'reverse'] as const) {
        if (get('ssh')) {
          const value = ratio(tput(tether, dir), tput('ssh', dir))
          const pass = value === null ? undefined : value >= min
          const name = `${LABELS[tether]}/ssh ${dirLabel[dir]}`
          out.push({ name, value, target: `≥ ${min.toFixed(1)}`, pass })
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
    if (parts.includes('conn')) {
      if (get('ssh'))
        out.push({ name: `${LABELS[tether]}/ssh conns/s`, value: ratio(conns(tether), conns('ssh')) })
      if (get('direct'))
        out.push({ name: `${LABELS[tether]}/direct conns/s`, value: ratio(conns(tether), conns('direct')) })
    }
  }
  return out
}

/** UDP loss at 200 Mbit/s offered (udp, udp-iotmp) and new tunnelled connections per second. */
export function computeChecks(results: PathResult[]): Check[] {
  const out: Check[] = []
  const targetBps = parseRate(UDP_TARGET_RATE)
  for (const r of results) {
    if (!r.path.startsWith('tether-')) continue
    for (const via of ['udp', 'udp-iotmp'] as const) {
      const runs = r.udp?.filter((u) => u.via === via)
      if (!runs || runs.length === 0) continue
      const run = runs.find((u) => parseRate(u.offered) === targetBps)
      const value = run?.lostPercent ?? null
      out.push({
        name: `${UDP_LABELS[via]} (${r.label}) loss at ${UDP_TARGET_RATE}`,
        value,
        unit: '%',
        target: `≤ ${UDP_MAX_LOSS_PERCENT} %`,
        pass: value === null ? undefined : value <= UDP_MAX_LOSS_PERCENT,
      })
    }
    if (r.conn || r.errors.some((e) => e.startsWith('conn:'))) {
      const value = r.conn?.connsPerSecond ?? null
      out.push({
        name: `${r.label} new connections`,
        value,
        unit: 'conns/s',
        target: `≥ ${CONN_MIN_PER_SECOND}`,
        pass: value === null ? undefined : value >= CONN_MIN_PER_SECOND,
      })
    }
  }
  return out
}

export interface ReportInput {
  started: Date
  iperfVersion: string
  settings: Settings
  parts: PartName[]
  paths: PathName[]
  results: PathResult[]
  ratios: Ratio[]
  checks: Check[]
}

/** Writes the JSON report atomically to `file`. */
export function writeReport(file: string, input: ReportInput): void {
  const { started, settings: s } = input
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
      iperf3: input.iperfVersion,
    },
    date: started.toISOString(),
    durationSeconds: Math.round((Date.now() - started.getTime()) / 100) / 10,
    settings: {
      iperfSeconds: s.seconds,
      iperfStreams: 1,
      rttCount: s.rttCount,
      rttWarmup: s.rttWarmup,
      rttPayloadBytes: s.payload,
      paths: input.paths,
      parts: input.parts,
      udpRates: s.udpRates,
      udpDatagramBytes: s.udpDatagramBytes,
      udpSocketBuffer: s.udpSocketBuffer || 'iperf3 default',
      connCount: s.connCount,
      connWarmup: s.connWarmup,
      connConcurrency: s.connConcurrency,
      connPayloadBytes: s.payload,
    },
    results: input.results,
    ratios: input.ratios,
    checks: input.checks,
    targets: {
      'Tether ws/ssh throughput (both directions)': '≥ 1.5',
      'Tether wss/ssh throughput (both directions)': '≥ 1.0',
      'Tether/ssh p99 latency': '≤ 1.5',
      [`Tether udp and udp-iotmp loss at ${UDP_TARGET_RATE} offered`]: `≤ ${UDP_MAX_LOSS_PERCENT} %`,
      'Tether new tunnelled connections per second': `≥ ${CONN_MIN_PER_SECOND}`,
    },
  }
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(`${file}.tmp`, `${JSON.stringify(report, null, 2)}\n`)
  renameSync(`${file}.tmp`, file)
  log(`wrote ${path.relative(process.cwd(), file)}`)
}
