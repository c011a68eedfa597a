/**
 * Backpressure across the tunnel: a slow reader while 256 MiB is pushed must stall the producer, not grow
 * memory. Relay and agent run as real `tether` processes so their RSS can be read from /proc.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { connect, freePort, tcpServer } from './harness.ts'

const CLI = new URL('../../cli/tether.mjs', import.meta.url).pathname
const PASSWORD = 'backpressure-password'
const TOTAL_BYTES = 256 * 1024 * 1024
const LIMIT_BYTES = 64 * 1024 * 1024

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) * 1024
}

/** Spawns `tether …args`; resolves once a stderr/stdout line matches `ready`. */
function spawnTether(args: string[], env: Record<string, string>, ready: RegExp): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--no-node-snapshot', CLI, ...args], {
    env: { ...process.env, ...env },
  })
  return new Promise((resolve, reject) => {
    let output = ''
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      if (ready.test(output)) resolve(child)
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.once('exit', (code) => reject(new Error(`tether ${args[0]} exited with ${code}:\n${output}`)))
  })
}

async function api<T>(base: string, token: string, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const json = await res.json()
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`)
  return json as T
}

test('a slow reader while 256 MiB is pushed keeps relay and agent RSS growth under 64 MiB', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tether-bp-'))
  const children: ChildProcess[] = []
  t.after(async () => {
    for (const c of children) c.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  })

  // The producer on the "LAN": writes TOTAL_BYTES as fast as backpressure lets it.
  const block = randomBytes(1024 * 1024)
  const sentHash = createHash('sha256')
  const target = await tcpServer(t, async (socket) => {
    for (let sent = 0; sent < TOTAL_BYTES; sent += block.length) {
      sentHash.update(block)
      if (!socket.write(block)) await new Promise((resolve) => socket.once('drain', resolve))
    }
    socket.end()
  })

  const relayPort = await freePort()
  const base = `http://127.0.0.1:${relayPort}`
  const relay = await spawnTether(
    ['relay', '--host', '127.0.0.1', '--port', String(relayPort), '--data-dir', join(dir, 'relay')],
    { TETHER_ADMIN_PASSWORD: PASSWORD, TETHER_LOG_LEVEL: 'info' },
    /relay ready/,
  )
  children.push(relay)
  const token = (
    await fetch(`${base}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ grant_type: 'password', username: 'admin', password: PASSWORD }),
    }).then((r) => r.json() as Promise<{ access_token: string }>)
  ).access_token
  const { credential } = await api<{ credential: string }>(base, token, 'POST', '/v1/users/admin/devices', {
    device: 'gw',
    type: 'agent',
  })
  const agent = await spawnTether(
    ['agent', '--relay', `ws://127.0.0.1:${relayPort}`, '--user', 'admin', '--device', 'gw'],
    {
      TETHER_CREDENTIAL: credential,
      TETHER_ALLOW: `127.0.0.1:${target}`,
      TETHER_STATE_DIR: join(dir, 'agent'),
      TETHER_LOG_LEVEL: 'info',
    },
    /connected to relay/,
  )
  children.push(agent)
  const proxy = await api<{ status: { port: number } }>(base, token, 'POST', '/v1/server/proxies', {
    id: 'bp',
    protocol: 'tcp-iotmp',
    enabled: true,
    source: { port: 0, address: '127.0.0.1' },
    target: { type: 'device', user: 'admin', device: 'gw', address: '127.0.0.1', port: target, tls: false },
  })

  const baseline = { relay: await rssBytes(relay.pid!), agent: await rssBytes(agent.pid!) }
  const peak = { ...baseline }
  const sampler = setInterval(async () => {
    peak.relay = Math.max(peak.relay, await rssBytes(relay.pid!).catch(() => 0))
    peak.agent = Math.max(peak.agent, await rssBytes(agent.pid!).catch(() => 0))
  }, 25)
  t.after(() => clearInterval(sampler))

  // The slow consumer: at most 2 MiB per 20 ms tick (~100 MiB/s), far slower than loopback.
  const socket = await connect(proxy.status.port)
  const receivedHash = createHash('sha256')
  let received = 0
  let budget = 0
  const ticker = setInterval(() => {
    budget = 2 * 1024 * 1024
    if (socket.isPaused()) socket.resume()
  }, 20)
  t.after(() => clearInterval(ticker))
  socket.on('data', (chunk: Buffer) => {
    receivedHash.update(chunk)
    received += chunk.length
    budget -= chunk.length
    if (budget <= 0) socket.pause()
  })
  socket.end()
  await new Promise((resolve) => socket.on('end', resolve))
  clearInterval(ticker)
  clearInterval(sampler)

  assert.equal(received, TOTAL_BYTES)
  assert.equal(receivedHash.digest('hex'), sentHash.digest('hex'))
  const growth = { relay: peak.relay - baseline.relay, agent: peak.agent - baseline.agent }
  const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`
  t.diagnostic(`RSS growth: relay ${mib(growth.relay)}, agent ${mib(growth.agent)}`)
  assert.ok(growth.relay < LIMIT_BYTES, `relay RSS grew by ${mib(growth.relay)}`)
  assert.ok(growth.agent < LIMIT_BYTES, `agent RSS grew by ${mib(growth.agent)}`)
})
