/** Latency: a Node echo server (a child process) and a client timing round trips over one TCP connection. */
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import path from 'node:path'
import { isRunning, spawnChild } from './processes.ts'
import { waitFor, withTimeout } from './wait.ts'

export interface Latency {
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

const ECHO_SERVER = `
const net = require('node:net')
const srv = net.createServer((c) => { c.setNoDelay(true); c.on('error', () => {}); c.pipe(c) })
srv.listen(0, '127.0.0.1', () => process.stdout.write('listening ' + srv.address().port + '\\n'))
`

/** Starts the echo server as a child process on a free loopback port. */
export async function startEchoServer(dir: string): Promise<{ port: number; proc: ChildProcess }> {
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

/** The `q` quantile (0..1) of ascending `sorted` samples, nearest-rank. */
export const percentile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]

/** Ping-pong of `payload`-byte messages over one TCP connection, timed with hrtime. */
export async function latency(
  port: number,
  opts: { count: number; warmup: number; payload: number },
): Promise<Latency> {
  const { count, warmup, payload } = opts
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
      if (received >= payload && wake) {
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
    const message = randomBytes(payload)
    const samples: number[] = []
    const total = warmup + count
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
        if (received !== payload) throw new Error(`expected ${payload} echoed bytes, got ${received}`)
        received = 0
        if (i >= warmup) samples.push(Number(t1 - t0) / 1000)
      }
    }
    await withTimeout(`latency test on :${port}`, 30_000 + total * 10, roundTrips())
    const sorted = [...samples].sort((a, b) => a - b)
    const round = (n: number) => Math.round(n * 10) / 10
    return {
      count: samples.length,
      warmup,
      payloadBytes: payload,
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
