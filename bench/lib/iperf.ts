/** iperf3: the server the bench starts, and TCP and UDP client runs parsed from `iperf3 -J`. */
import type { ChildProcess } from 'node:child_process'
import path from 'node:path'
import { log } from './log.ts'
import { freePort } from './ports.ts'
import { isRunning, runChild, spawnChild, stopChildren } from './processes.ts'
import { sleep, waitFor } from './wait.ts'

export interface Throughput {
  bitsPerSecond: number
  gbps: number
  retransmits?: number
}

/** One `iperf3 -u` run: what was offered, what arrived, loss and jitter as the server measured them. */
export interface UdpThroughput {
  /** The `-b` value as given (e.g. 200M). */
  offered: string
  offeredBitsPerSecond: number
  datagramBytes: number
  /** `-w` (socket buffers of the iperf3 client and server), if set. */
  socketBuffer?: string
  sentBitsPerSecond: number
  receivedBitsPerSecond: number
  receivedGbps: number
  sentPackets: number
  /** Missing sequence numbers at the server (iperf3's own count; `sum_received.packets` includes them). */
  lostPackets: number
  lostPercent: number
  jitterMs: number
}

/** A running iperf3 server; `restart` brings it back on the same port (after a client was killed). */
export interface IperfServer {
  port: number
  proc: ChildProcess
  restart: () => Promise<void>
}

/** Starts `iperf3 -s` on a free loopback port (or `port`) and waits until it listens. */
export async function startIperfServer(
  iperf3: string,
  dir: string,
  name = 'iperf3-server',
  port?: number,
): Promise<IperfServer> {
  const listenPort = port ?? (await freePort())
  const label = name.replace(/-/g, ' ')
  let output = ''
  const proc = spawnChild(name, iperf3, ['-s', '-B', '127.0.0.1', '-p', String(listenPort), '--forceflush'], {
    logFile: path.join(dir, `${name}.log`),
    onOutput: (t) => {
      output += t
    },
  })
  await waitFor(label, async () => {
    if (!isRunning(proc)) throw new Error(`${label} exited: ${output}`)
    return output.includes('Server listening')
  })
  const server: IperfServer = {
    port: listenPort,
    proc,
    restart: async () => {
      await stopChildren([server.proc])
      const fresh = await startIperfServer(iperf3, dir, name, listenPort)
      server.proc = fresh.proc
    },
  }
  return server
}

/** Attempts when the server still finishes the previous test (its end can lag behind a tunnel). */
const BUSY_ATTEMPTS = 4

/**
 * Runs an iperf3 client with `-J` within `timeoutMs`; returns the parsed JSON or throws its error. Retries
 * after 1 s when the server is still busy with the previous test (the client of that test exits before the
 * server, on the far side of a tunnel, has seen its end).
 */
async function iperfJson<T>(iperf3: string, args: string[], what: string, timeoutMs: number): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const { code, stdout, stderr } = await runChild('iperf3-client', iperf3, args, what, timeoutMs)
    let json: T & { error?: string }
    try {
      json = JSON.parse(stdout)
    } catch {
      throw new Error(`iperf3 exited ${code} without JSON: ${stderr || stdout}`.trim())
    }
    if (json.error?.includes('server is busy') && attempt < BUSY_ATTEMPTS) {
      log(`${what}: iperf3 server busy with the previous test; retrying in 1s`)
      await sleep(1000)
      continue
    }
    if (json.error) throw new Error(`iperf3: ${json.error}`)
    return json
  }
}

/** One TCP iperf3 run: single stream, JSON output, `-R` for server→client. */
export async function iperf(
  iperf3: string,
  port: number,
  reverse: boolean,
  seconds: number,
): Promise<Throughput> {
  const args = ['-c', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-J']
  if (reverse) args.push('-R')
  const json = await iperfJson<{
    end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } }
  }>(iperf3, args, `iperf3 -c :${port}${reverse ? ' -R' : ''}`, (seconds + 30) * 1000)
  const bps = json.end?.sum_received?.bits_per_second
  if (typeof bps !== 'number') throw new Error('iperf3 JSON has no end.sum_received.bits_per_second')
  return { bitsPerSecond: bps, gbps: bps / 1e9, retransmits: json.end?.sum_sent?.retransmits }
}

/** Bits per second of an iperf3 rate such as 200M, 1.5G or 800K (decimal units, as iperf3 reads them). */
export function parseRate(rate: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMG]?)$/i.exec(rate.trim())
  if (!m) throw new Error(`not a rate: "${rate}" (use e.g. 50M, 200M, 1G)`)
  const unit = { '': 1, K: 1e3, M: 1e6, G: 1e9 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G']
  return Number(m[1]) * unit
}

interface UdpSum {
  bits_per_second?: number
  jitter_ms?: number
  lost_packets?: number
  packets?: number
  lost_percent?: number
}

/**
 * One UDP iperf3 run client→server at a fixed offered rate: `-u -b RATE -l BYTES [-w BUF]`. The TCP control connection
 * and the datagrams both go to `port`. Loss and jitter are the server's figures (`end.sum`); received is
 * `end.sum_received` (iperf3 ≥ 3.10) or, without it, sent × (1 − loss).
 */
export async function iperfUdp(
  iperf3: string,
  port: number,
  rate: string,
  seconds: number,
  datagramBytes: number,
  socketBuffer?: string,
): Promise<UdpThroughput> {
  // biome-ignore format: one option per line
  const args = [
    '-c', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-J',
    '-u', '-b', rate, '-l', String(datagramBytes),
  ]
  if (socketBuffer) args.push('-w', socketBuffer)
  const json = await iperfJson<{ end?: { sum?: UdpSum; sum_sent?: UdpSum; sum_received?: UdpSum } }>(
    iperf3,
    args,
    `iperf3 -u -b ${rate} -c :${port}`,
    (seconds + 30) * 1000,
  )
  const sum = json.end?.sum
  if (typeof sum?.bits_per_second !== 'number' || typeof sum.lost_percent !== 'number')
    throw new Error('iperf3 JSON has no end.sum.bits_per_second / lost_percent')
  const sent = json.end?.sum_sent?.bits_per_second ?? sum.bits_per_second
  const received = json.end?.sum_received?.bits_per_second ?? sent * (1 - sum.lost_percent / 100)
  return {
    offered: rate,
    offeredBitsPerSecond: parseRate(rate),
    datagramBytes,
    socketBuffer,
    sentBitsPerSecond: sent,
    receivedBitsPerSecond: received,
    receivedGbps: received / 1e9,
    sentPackets: json.end?.sum_sent?.packets ?? sum.packets ?? 0,
    lostPackets: sum.lost_packets ?? 0,
    lostPercent: sum.lost_percent,
    jitterMs: sum.jitter_ms ?? Number.NaN,
  }
}
