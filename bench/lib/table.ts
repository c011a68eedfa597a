/** The human-readable result tables printed on stdout at the end of a run. */
import type { Throughput } from './iperf.ts'
import type { Check, Ratio } from './report.ts'
import type { PartName, PathResult } from './types.ts'

const pad = (s: string, n: number) => s.padEnd(n)
const lpad = (s: string, n: number) => s.padStart(n)
const verdict = (target: string | undefined, pass: boolean | undefined) =>
  target ? `${target}  ${pass === undefined ? 'n/a' : pass ? 'PASS' : 'MISS'}` : ''

function tcpTable(results: PathResult[], lines: string[]): void {
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
}

function udpTable(results: PathResult[], lines: string[]): void {
  const runs = results.flatMap((r) => r.udp ?? [])
  if (runs.length === 0) return
  const header = `${pad('UDP path', 18)}${lpad('offered', 9)}${lpad('recv Gbit/s', 13)}${lpad('loss %', 9)}${lpad('jitter ms', 11)}`
  lines.push('', header, '-'.repeat(header.length))
  for (const u of runs) {
    const ok = u.error === undefined && u.receivedGbps !== undefined
    const recv = ok ? u.receivedGbps!.toFixed(3) : 'FAIL'
    const loss = ok ? u.lostPercent!.toFixed(2) : ''
    const jitter = ok ? u.jitterMs!.toFixed(3) : ''
    lines.push(`${pad(u.label, 18)}${lpad(u.offered, 9)}${lpad(recv, 13)}${lpad(loss, 9)}${lpad(jitter, 11)}`)
  }
}

function connTable(results: PathResult[], lines: string[]): void {
  const header = `${pad('new connections', 18)}${lpad('conns/s', 9)}${lpad('p50 ms', 9)}${lpad('p99 ms', 9)}${lpad('failed', 8)}`
  lines.push('', header, '-'.repeat(header.length))
  for (const r of results) {
    const c = r.conn
    if (!c) {
      lines.push(`${pad(r.label, 18)}${lpad('FAIL', 9)}`)
      continue
    }
    const row = [lpad(String(c.connsPerSecond), 9), lpad(c.p50Ms.toFixed(2), 9), lpad(c.p99Ms.toFixed(2), 9)]
    lines.push(`${pad(r.label, 18)}${row.join('')}${lpad(String(c.failed), 8)}`)
  }
}

function processTable(results: PathResult[], parts: PartName[], lines: string[]): void {
  const procs = results.filter((r) => r.processes)
  if (procs.length === 0) return
  const partCols = parts.map((p) => lpad(`${p} s`, 8)).join('')
  lines.push(
    '',
    `${pad('process', 24)}${lpad('idle RSS MiB', 14)}${lpad('peak RSS MiB', 14)}${lpad('CPU s', 9)}${partCols}`,
  )
  for (const r of procs) {
    for (const [name, s] of Object.entries(r.processes ?? {})) {
      const mib = (bytes: number) => lpad((bytes / 1048576).toFixed(1), 14)
      const cpu = lpad(s.cpuSeconds.toFixed(2), 9)
      const byPart = parts
        .map((p) => lpad(s.cpuSecondsByPart[p] === undefined ? '-' : s.cpuSecondsByPart[p].toFixed(2), 8))
        .join('')
      lines.push(
        `${pad(`${r.label} ${name}`, 24)}${mib(s.startRssBytes)}${mib(s.peakRssBytes)}${cpu}${byPart}`,
      )
    }
  }
}

/** Prints the TCP, UDP and connection tables, ratios, target checks, process figures and errors. */
export function printTable(results: PathResult[], parts: PartName[], ratios: Ratio[], checks: Check[]): void {
  const lines: string[] = []
  const ran = (p: PartName) => parts.includes(p)
  if (ran('tcp')) tcpTable(results, lines)
  if (ran('udp')) udpTable(results, lines)
  if (ran('conn')) connTable(results, lines)
  if (ratios.length > 0) {
    lines.push('', `${pad('ratio', 44)}${lpad('value', 8)}  target`)
    lines.push('-'.repeat(66))
    for (const q of ratios) {
      const value = lpad(q.value === null ? 'n/a' : q.value.toFixed(2), 8)
      lines.push(`${pad(q.name, 44)}${value}  ${verdict(q.target, q.pass)}`)
    }
  }
  if (checks.length > 0) {
    lines.push('', `${pad('target', 44)}${lpad('value', 8)}  unit     target`)
    lines.push('-'.repeat(76))
    for (const c of checks) {
      const value = lpad(c.value === null ? 'n/a' : c.value.toFixed(c.unit === '%' ? 2 : 0), 8)
      lines.push(`${pad(c.name, 44)}${value}  ${pad(c.unit, 7)}  ${verdict(c.target, c.pass)}`)
    }
  }
  processTable(results, parts, lines)
  const failed = results.filter((r) => r.errors.length > 0)
  if (failed.length > 0) {
    lines.push('', 'errors:')
    for (const r of failed) for (const e of r.errors) lines.push(`  ${r.label}: ${e}`)
  }
  process.stdout.write(`${lines.join('\n')}\n\n`)
}
