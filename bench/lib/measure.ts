/** Runs the selected parts (TCP throughput + latency, UDP, connection rate) on one path and records them. */
import { connRate } from './conn-rate.ts'
import { type IperfServer, iperf, iperfUdp } from './iperf.ts'
import { latency } from './latency.ts'
import { errorMessage, log } from './log.ts'
import { ProcWatcher } from './processes.ts'
import {
  LABELS,
  type PartName,
  type PathName,
  type PathResult,
  type PathSetup,
  type Settings,
  UDP_LABELS,
  type UdpRun,
} from './types.ts'
import { sleep, withTimeout } from './wait.ts'

export interface MeasureOptions {
  name: PathName
  iperf3: string
  setup: () => Promise<PathSetup>
  settings: Settings
  parts: PartName[]
  /** The iperf3 server the UDP runs reach; restarted after a failed run so the next one starts clean. */
  udpServer?: IperfServer
}

/** Sets up one path, runs the selected parts on it, stops it; failures are recorded, not thrown. */
export async function measurePath(opts: MeasureOptions): Promise<PathResult> {
  const { name, iperf3, settings: s, parts } = opts
  const label = LABELS[name]
  const result: PathResult = { path: name, label, throughput: {}, errors: [] }
  log(`${label}: starting`)
  let ready: PathSetup
  try {
    ready = await withTimeout(`${name} setup`, 90_000, opts.setup())
  } catch (err) {
    result.errors.push(`setup: ${errorMessage(err)}`)
    log(`${label}: ${result.errors[0].split('\n')[0]} (details at the end)`)
    return result
  }
  result.info = ready.info
  const watcher = Object.keys(ready.pids).length > 0 ? new ProcWatcher(ready.pids) : undefined
  const attempt = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn()
    } catch (err) {
      const msg = errorMessage(err)
      result.errors.push(`${what}: ${msg}`)
      log(`${label}: ${what} FAILED: ${msg}`)
    }
  }
  const part = (p: PartName, fn: () => Promise<void>) => (watcher ? watcher.during(p, fn) : fn())
  try {
    if (parts.includes('tcp')) {
      await part('tcp', async () => {
        await attempt('throughput', async () => {
          log(`${label}: iperf3 ${s.seconds}s client→server`)
          result.throughput.normal = await iperf(iperf3, ready.iperfPort, false, s.seconds)
          log(`${label}: ${result.throughput.normal.gbps.toFixed(2)} Gbit/s`)
        })
        await attempt('throughput -R', async () => {
          log(`${label}: iperf3 ${s.seconds}s server→client (-R)`)
          result.throughput.reverse = await iperf(iperf3, ready.iperfPort, true, s.seconds)
          log(`${label}: ${result.throughput.reverse.gbps.toFixed(2)} Gbit/s`)
        })
        await attempt('latency', async () => {
          log(`${label}: ${s.rttCount} × ${s.payload}-byte round trips`)
          result.latency = await latency(ready.echoPort, {
            count: s.rttCount,
            warmup: s.rttWarmup,
            payload: s.payload,
          })
          log(`${label}: p50 ${result.latency.p50Us} µs, p99 ${result.latency.p99Us} µs`)
        })
      })
    }
    if (parts.includes('udp') && ready.udp) {
      result.udp = []
      await part('udp', () => measureUdp(opts, ready, result))
    }
    if (parts.includes('conn')) {
      await part('conn', () =>
        attempt('conn', async () => {
          log(
            `${label}: ${s.connCount} connections (+${s.connWarmup} warm-up), ${s.connConcurrency} at a time`,
          )
          const conn = await connRate(ready.echoPort, {
            count: s.connCount,
            warmup: s.connWarmup,
            concurrency: s.connConcurrency,
            payload: s.payload,
          })
          result.conn = conn
          log(`${label}: ${conn.connsPerSecond} conns/s, p50 ${conn.p50Ms} ms, p99 ${conn.p99Ms} ms`)
          if (conn.failed > 0)
            throw new Error(`${conn.failed} of ${conn.count} connections failed (first: ${conn.firstError})`)
          const open = await openAfter(ready)
          if (open !== undefined) {
            result.conn = { ...conn, relayOpenAfter: open }
            if (open > 0) throw new Error(`the relay still counts ${open} open connections 5s after the test`)
          }
        }),
      )
    }
  } finally {
    if (watcher) result.processes = watcher.finish()
    await ready.stop()
  }
  return result
}

/** The relay's open connections on the echo proxy once they have had up to 5 s to close. */
async function openAfter(ready: PathSetup): Promise<number | undefined> {
  if (!ready.echoProxyId || !ready.proxyStatus) return undefined
  let open: number | undefined
  for (const deadline = Date.now() + 5000; Date.now() < deadline; await sleep(100)) {
    open = (await ready.proxyStatus(ready.echoProxyId).catch(() => undefined))?.active_connections
    if (open === undefined || open === 0) break
  }
  return open
}

/** iperf3 -u at each offered rate through each way the path carries datagrams. */
async function measureUdp(opts: MeasureOptions, ready: PathSetup, result: PathResult) {
  const { iperf3, settings: s } = opts
  const status = async (id?: string) =>
    id && ready.proxyStatus ? await ready.proxyStatus(id).catch(() => undefined) : undefined
  for (const { via, port, proxyId } of ready.udp ?? []) {
    const label = UDP_LABELS[via]
    for (const rate of s.udpRates) {
      const run: UdpRun = { via, label, offered: rate }
      result.udp?.push(run)
      const w = s.udpSocketBuffer ? ` -w ${s.udpSocketBuffer}` : ''
      log(`${label}: iperf3 -u -b ${rate} -l ${s.udpDatagramBytes}${w} ${s.seconds}s client→server`)
      try {
        const before = await status(proxyId)
        Object.assign(
          run,
          await iperfUdp(iperf3, port, rate, s.seconds, s.udpDatagramBytes, s.udpSocketBuffer),
        )
        const after = await status(proxyId)
        const rxBefore = before?.rx_bytes
        const rxAfter = after?.rx_bytes
        if (before?.dropped_datagrams !== undefined && after?.dropped_datagrams !== undefined) {
          run.droppedAtRelay = after.dropped_datagrams - before.dropped_datagrams
        }
        if (rxBefore !== undefined && rxAfter !== undefined && run.sentPackets) {
          run.relayRxBytes = rxAfter - rxBefore
          const sentBytes = run.sentPackets * s.udpDatagramBytes
          run.lostBeforeRelayPercent = Math.max(0, Math.round((1 - run.relayRxBytes / sentBytes) * 1e4) / 100)
        }
        const jitter = run.jitterMs?.toFixed(3)
        const atRelay =
          run.lostBeforeRelayPercent === undefined
            ? ''
            : ` (${run.lostBeforeRelayPercent.toFixed(2)} % never reached the relay's socket, ${run.droppedAtRelay ?? '?'} dropped by the relay)`
        log(
          `${label}: ${run.receivedGbps?.toFixed(3)} Gbit/s received, loss ${run.lostPercent?.toFixed(2)} %${atRelay}, jitter ${jitter} ms`,
        )
      } catch (err) {
        run.error = errorMessage(err)
        result.errors.push(`udp ${via} ${rate}: ${run.error}`)
        log(`${label}: udp ${rate} FAILED: ${run.error}`)
        await opts.udpServer
          ?.restart()
          .catch((e) => log(`restarting the iperf3 UDP server: ${errorMessage(e)}`))
      }
    }
  }
}
