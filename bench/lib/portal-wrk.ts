/** wrk runs (keep-alive HTTP/1.1 load) and the parsing of wrk's text report (`--latency`). */
import { runChild } from './processes.ts'

export interface WrkSettings {
  threads: number
  connections: number
  /** Seconds of the measured run. */
  seconds: number
  /** wrk --timeout in seconds: a response slower than this counts as a timeout error. */
  timeoutSeconds: number
}

export interface WrkResult {
  requests: number
  seconds: number
  requestsPerSecond: number
  /** Bytes read (wrk rounds it to two decimals of its unit). */
  bytesRead: number
  bytesPerRequest: number
  transferPerSecond: string
  latency: {
    avgMs: number
    stdevMs: number
    maxMs: number
    p50Ms: number
    p75Ms: number
    p90Ms: number
    p99Ms: number
  }
  /** Responses with a status above 399 ("Non-2xx or 3xx responses"). */
  non2xx: number
  socketErrors: { connect: number; read: number; write: number; timeout: number }
  /** wrk's report as printed. */
  raw: string
}

const TIME_UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const SIZE_UNITS: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }

/** A wrk time such as `850.00us`, `1.23ms` or `1.02s`, in milliseconds. */
export function parseWrkTime(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim())
  if (!m) throw new Error(`unexpected wrk time "${text}"`)
  return Number(m[1]) * TIME_UNITS[m[2]]
}

function parseWrkSize(text: string): number {
  const m = /^([\d.]+)([KMGT]?B)$/.exec(text.trim())
  if (!m) throw new Error(`unexpected wrk size "${text}"`)
  return Number(m[1]) * SIZE_UNITS[m[2]]
}

/** Parses the text wrk prints with `--latency`; throws when a figure is missing. */
export function parseWrk(raw: string): WrkResult {
  const need = (re: RegExp, what: string) => {
    const m = re.exec(raw)
    if (!m) throw new Error(`wrk output has no ${what}:\n${raw}`)
    return m
  }
  const thread = need(/^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)\s+\S+%/m, 'Latency thread stats')
  const pct = (p: string) => parseWrkTime(need(new RegExp(`^\\s*${p}%\\s+(\\S+)\\s*$`, 'm'), `${p}% line`)[1])
  const total = need(/^\s*(\d+) requests in ([\d.]+\w+), ([\d.]+[KMGT]?B) read/m, 'requests line')
  const requests = Number(total[1])
  const seconds = parseWrkTime(total[2]) / 1000
  const bytesRead = parseWrkSize(total[3])
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(raw)
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(raw)
  return {
    requests,
    seconds,
    requestsPerSecond: Number(need(/^Requests\/sec:\s+([\d.]+)/m, 'Requests/sec')[1]),
    bytesRead,
    bytesPerRequest: requests > 0 ? Math.round(bytesRead / requests) : 0,
    transferPerSecond: need(/^Transfer\/sec:\s+(\S+)/m, 'Transfer/sec')[1],
    latency: {
      avgMs: parseWrkTime(thread[1]),
      stdevMs: parseWrkTime(thread[2]),
      maxMs: parseWrkTime(thread[3]),
      p50Ms: pct('50'),
      p75Ms: pct('75'),
      p90Ms: pct('90'),
      p99Ms: pct('99'),
    },
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors: {
      connect: Number(errors?.[1] ?? 0),
      read: Number(errors?.[2] ?? 0),
      write: Number(errors?.[3] ?? 0),
      timeout: Number(errors?.[4] ?? 0),
    },
    raw,
  }
}

/** The wrk arguments for a run of `seconds` against `url` with extra request headers. */
export function wrkArgs(
  s: WrkSettings,
  seconds: number,
  url: string,
  headers: Record<string, string>,
  extra: string[] = [],
): string[] {
  const args = ['-t', String(s.threads), '-c', String(s.connections), '-d', `${seconds}s`, ...extra]
  args.push('--timeout', `${s.timeoutSeconds}s`, '--latency')
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`)
  args.push(url)
  return args
}

/** Runs wrk for `seconds` (bounded by a timeout well past it) and parses its report. */
export async function runWrk(
  wrk: string,
  s: WrkSettings,
  seconds: number,
  url: string,
  headers: Record<string, string> = {},
  extra: string[] = [],
): Promise<WrkResult> {
  const args = wrkArgs(s, seconds, url, headers, extra)
  const res = await runChild('wrk', wrk, args, `wrk ${url}`, (seconds + s.timeoutSeconds + 30) * 1000)
  if (res.code !== 0) throw new Error(`wrk exited ${res.code}: ${res.stderr || res.stdout}`)
  return parseWrk(res.stdout)
}
