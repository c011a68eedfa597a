/** Results of the portal bench: ratios and targets, the printed tables and bench/results/portal.json. */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { log } from './log.ts'
import type { WrkResult, WrkSettings } from './portal-wrk.ts'
import type { ProcStats } from './processes.ts'

export type PortalPathName = 'direct' | 'ssh' | 'ssh-tty' | 'tether'
/** Every path, in run order; `ssh-tty` runs only when BENCH_ONLY names it. */
export const ALL_PORTAL_PATHS: PortalPathName[] = ['direct', 'ssh', 'ssh-tty', 'tether']
export const DEFAULT_PORTAL_PATHS: PortalPathName[] = ['direct', 'ssh', 'tether']
export const PORTAL_LABELS: Record<PortalPathName, string> = {
  direct: 'direct',
  ssh: 'nginx + ssh -R',
  'ssh-tty': 'nginx + ssh -tt -R',
  tether: 'Tether portal',
}

/** Tether ≥ this × nginx + ssh -R requests/s. */
export const MIN_RPS_RATIO = 1.0
/** Tether p99 ≤ this × nginx + ssh -R p99. */
export const MAX_P99_RATIO = 1.5

export interface PortalPathResult {
  path: PortalPathName
  label: string
  /** wrk's figures for the measured run (its raw report included). */
  wrk?: WrkResult
  warmup?: { requestsPerSecond: number; non2xx: number; requests: number }
  /** CPU seconds each process used during the measured run, and its RSS. */
  processes?: Record<string, ProcStats>
  info?: Record<string, unknown>
  /** Things that did not fail the path but deserve a look (socket errors, log warnings). */
  warnings: string[]
  errors: string[]
}

export interface PortalRatio {
  name: string
  value: number | null
  target?: string
  pass?: boolean
}

/** What Tether is compared with, in print order; only `ssh` carries targets. */
const COMPARED: { path: PortalPathName; name: string; targets?: boolean }[] = [
  { path: 'ssh', name: 'nginx+ssh -R', targets: true },
  { path: 'ssh-tty', name: 'nginx+ssh -tt -R' },
  { path: 'direct', name: 'direct' },
]

/** Tether's req/s and p99 over each other path that ran (null when either side has no figure). */
export function computePortalRatios(results: PortalPathResult[]): PortalRatio[] {
  const get = (p: PortalPathName) => results.find((r) => r.path === p)?.wrk
  const ratio = (a?: number, b?: number) => (a !== undefined && b !== undefined && b > 0 ? a / b : null)
  if (!results.some((r) => r.path === 'tether')) return []
  const t = get('tether')
  const out: PortalRatio[] = []
  for (const c of COMPARED) {
    if (!results.some((r) => r.path === c.path)) continue
    const other = get(c.path)
    const rps: PortalRatio = {
      name: `Tether / ${c.name}  req/s`,
      value: ratio(t?.requestsPerSecond, other?.requestsPerSecond),
    }
    const p99: PortalRatio = {
      name: `Tether / ${c.name}  p99`,
      value: ratio(t?.latency.p99Ms, other?.latency.p99Ms),
    }
    if (c.targets) {
      rps.target = `≥ ${MIN_RPS_RATIO.toFixed(1)}`
      rps.pass = rps.value === null ? undefined : rps.value >= MIN_RPS_RATIO
      p99.target = `≤ ${MAX_P99_RATIO.toFixed(1)}`
      p99.pass = p99.value === null ? undefined : p99.value <= MAX_P99_RATIO
    }
    out.push(rps, p99)
  }
  return out
}

const pad = (s: string, n: number) => s.padEnd(n)
const lpad = (s: string, n: number) => s.padStart(n)

/** Prints the results, ratios, process CPU and errors on stdout. */
export function printPortalTables(
  results: PortalPathResult[],
  ratios: PortalRatio[],
  settings: WrkSettings,
): void {
  const lines: string[] = ['']
  lines.push(
    `wrk -t${settings.threads} -c${settings.connections} -d${settings.seconds}s --latency (keep-alive), GET /`,
  )
  const header = `${pad('path', 20)}${lpad('req/s', 10)}${lpad('p50 ms', 9)}${lpad('p99 ms', 9)}${lpad('max ms', 9)}${lpad('B/req', 7)}${lpad('non-2xx', 9)}${lpad('sock err', 10)}`
  lines.push(header, '-'.repeat(header.length))
  for (const r of results) {
    const w = r.wrk
    if (!w) {
      lines.push(`${pad(r.label, 20)}${lpad('FAIL', 10)}`)
      continue
    }
    const e = w.socketErrors
    const sock = e.connect + e.read + e.write + e.timeout
    lines.push(
      pad(r.label, 20) +
        lpad(w.requestsPerSecond.toFixed(0), 10) +
        lpad(w.latency.p50Ms.toFixed(2), 9) +
        lpad(w.latency.p99Ms.toFixed(2), 9) +
        lpad(w.latency.maxMs.toFixed(1), 9) +
        lpad(String(w.bytesPerRequest), 7) +
        lpad(String(w.non2xx), 9) +
        lpad(String(sock), 10),
    )
  }
  if (ratios.length > 0) {
    lines.push('', `${pad('ratio', 36)}${lpad('value', 8)}  target`)
    lines.push('-'.repeat(60))
    for (const q of ratios) {
      const value = lpad(q.value === null ? 'n/a' : q.value.toFixed(2), 8)
      const verdict = q.target
        ? `${q.target}  ${q.pass === undefined ? 'n/a' : q.pass ? 'met' : 'MISSED'}`
        : ''
      lines.push(`${pad(q.name, 36)}${value}  ${verdict}`)
    }
  }
  const procs = results.filter((r) => r.processes && Object.keys(r.processes).length > 0)
  if (procs.length > 0) {
    lines.push(
      '',
      `${pad('process (measured run)', 38)}${lpad('CPU s', 8)}${lpad('CPU %', 8)}${lpad('peak RSS MiB', 14)}`,
    )
    for (const r of procs) {
      for (const [name, s] of Object.entries(r.processes ?? {})) {
        const cpu = s.cpuSecondsByPart.wrk
        const share =
          cpu === undefined ? '-' : ((100 * cpu) / (r.wrk?.seconds ?? settings.seconds)).toFixed(0)
        lines.push(
          pad(`${r.label}: ${name}`, 38) +
            lpad(cpu === undefined ? '-' : cpu.toFixed(2), 8) +
            lpad(share, 8) +
            lpad((s.peakRssBytes / 1048576).toFixed(1), 14),
        )
      }
    }
  }
  const warned = results.filter((r) => r.warnings.length > 0)
  if (warned.length > 0) {
    lines.push('', 'warnings:')
    for (const r of warned) for (const w of r.warnings) lines.push(`  ${r.label}: ${w}`)
  }
  const failed = results.filter((r) => r.errors.length > 0)
  if (failed.length > 0) {
    lines.push('', 'errors:')
    for (const r of failed) for (const e of r.errors) lines.push(`  ${r.label}: ${e}`)
  }
  process.stdout.write(`${lines.join('\n')}\n\n`)
}

export interface PortalReportInput {
  started: Date
  /** Tool versions and anything else about the machine (load average at start). */
  machine: Record<string, unknown>
  settings: Record<string, unknown>
  paths: PortalPathName[]
  results: PortalPathResult[]
  ratios: PortalRatio[]
}

/** Writes the JSON report atomically to `file`. */
export function writePortalReport(file: string, input: PortalReportInput): void {
  const cpus = os.cpus()
  const report = {
    command: 'node --import tsx bench/portal.ts',
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('BENCH_'))),
    machine: {
      cpu: cpus[0]?.model ?? 'unknown',
      cores: cpus.length,
      nproc: os.availableParallelism(),
      memoryBytes: os.totalmem(),
      os: `${os.type()} ${os.release()} ${os.arch()}`,
      node: process.version,
      ...input.machine,
    },
    date: input.started.toISOString(),
    durationSeconds: Math.round((Date.now() - input.started.getTime()) / 100) / 10,
    settings: { ...input.settings, paths: input.paths },
    results: input.results,
    ratios: input.ratios,
    targets: {
      'Tether / nginx+ssh -R requests/s': `≥ ${MIN_RPS_RATIO.toFixed(1)}`,
      'Tether / nginx+ssh -R p99 latency': `≤ ${MAX_P99_RATIO.toFixed(1)}`,
    },
  }
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(`${file}.tmp`, `${JSON.stringify(report, null, 2)}\n`)
  renameSync(`${file}.tmp`, file)
  log(`wrote ${path.relative(process.cwd(), file)}`)
}
