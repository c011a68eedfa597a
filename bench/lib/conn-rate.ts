/**
 * Connection setup rate: many short TCP connections, each connect → one request → its echo → close, with a
 * fixed number in flight. Reports completed connections per second and the per-connection time
 * (connect + round trip).
 */
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import { percentile } from './latency.ts'
import { errorMessage } from './log.ts'
import { withTimeout } from './wait.ts'

export interface ConnRate {
  /** Measured connections (after the warm-up). */
  count: number
  warmup: number
  concurrency: number
  payloadBytes: number
  ok: number
  failed: number
  firstError?: string
  seconds: number
  /** Successful connections per second of wall time. */
  connsPerSecond: number
  p50Ms: number
  p90Ms: number
  p99Ms: number
  minMs: number
  maxMs: number
  meanMs: number
}

/** Per-connection bound: a connection that has not echoed by then counts as failed. */
const CONN_TIMEOUT_MS = 10_000

/** One connection: connect, send `message`, wait for as many bytes back, close; resolves with its µs. */
function oneConnection(port: number, message: Buffer, open: Set<net.Socket>): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint()
    const sock = net.connect({ host: '127.0.0.1', port, noDelay: true })
    open.add(sock)
    let received = 0
    let done = false
    const finish = (err?: Error) => {
      if (done) return
      done = true
      const us = Number(process.hrtime.bigint() - t0) / 1000
      clearTimeout(timer)
      sock.destroy()
      open.delete(sock)
      if (err) reject(err)
      else resolve(us)
    }
    const timer = setTimeout(
      () => finish(new Error(`no echo within ${CONN_TIMEOUT_MS / 1000}s`)),
      CONN_TIMEOUT_MS,
    )
    sock.once('connect', () => sock.write(message))
    sock.on('data', (chunk: Buffer) => {
      received += chunk.length
      if (received >= message.length) finish()
    })
    sock.once('error', (err) => finish(err))
    sock.once('close', () => finish(new Error(`closed after ${received} of ${message.length} echoed bytes`)))
  })
}

/** Runs `warmup` + `count` connections to 127.0.0.1:`port`, `concurrency` at a time, and times them. */
export async function connRate(
  port: number,
  opts: { count: number; warmup: number; concurrency: number; payload: number },
): Promise<ConnRate> {
  const { count, warmup, concurrency, payload } = opts
  const message = randomBytes(payload)
  const open = new Set<net.Socket>()
  let stopped = false
  const phase = async (total: number, samples?: number[]) => {
    let next = 0
    let failed = 0
    let firstError: string | undefined
    const worker = async () => {
      while (next < total && !stopped) {
        next++
        try {
          const us = await oneConnection(port, message, open)
          samples?.push(us)
        } catch (err) {
          failed++
          firstError ??= errorMessage(err)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker))
    return { failed, firstError }
  }
  const run = async () => {
    if (warmup > 0) await phase(warmup)
    const samples: number[] = []
    const t0 = process.hrtime.bigint()
    const { failed, firstError } = await phase(count, samples)
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    return { samples, failed, firstError, seconds }
  }
  try {
    const { samples, failed, firstError, seconds } = await withTimeout(
      `connection rate test on :${port}`,
      30_000 + (count + warmup) * 20,
      run(),
    )
    if (samples.length === 0) throw new Error(`all ${count} connections failed: ${firstError}`)
    const sorted = [...samples].sort((a, b) => a - b)
    const ms = (us: number) => Math.round(us / 10) / 100
    return {
      count,
      warmup,
      concurrency,
      payloadBytes: payload,
      ok: samples.length,
      failed,
      firstError,
      seconds: Math.round(seconds * 1000) / 1000,
      connsPerSecond: Math.round(samples.length / seconds),
      p50Ms: ms(percentile(sorted, 0.5)),
      p90Ms: ms(percentile(sorted, 0.9)),
      p99Ms: ms(percentile(sorted, 0.99)),
      minMs: ms(sorted[0]),
      maxMs: ms(sorted[sorted.length - 1]),
      meanMs: ms(samples.reduce((a, b) => a + b, 0) / samples.length),
    }
  } finally {
    stopped = true
    for (const sock of open) sock.destroy()
  }
}
