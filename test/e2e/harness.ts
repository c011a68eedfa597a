/** Test harness: a real relay and real agents on loopback ports chosen by the OS, plus small targets. */
import { mkdtemp, rm } from 'node:fs/promises'
import net, { type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { type Logger, pino } from 'pino'
import { type Agent, startAgent } from '../../agent/agent.ts'
import { type Relay, startRelay } from '../../relay/app.ts'
import type { RelayConfig } from '../../relay/config.ts'

export const ADMIN_PASSWORD = 'admin-password-for-tests'

/** A logger that records every line, so tests can assert on logged reasons. */
export function memoryLogger(level = 'debug'): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const logger = pino(
    { level },
    {
      write(chunk: string) {
        lines.push(JSON.parse(chunk))
      },
    },
  )
  return { logger, lines }
}

/** Resolves once a logged line matches `pattern` (by msg), or rejects after `timeoutMs`. */
export async function waitForLog(
  lines: Array<Record<string, unknown>>,
  pattern: RegExp,
  timeoutMs = 5000,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const hit = lines.find((l) => pattern.test(String(l.msg)))
    if (hit) return hit
    if (Date.now() > deadline) throw new Error(`no log line matched ${pattern} within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

export interface TestRelay {
  relay: Relay
  dataDir: string
  logs: Array<Record<string, unknown>>
  token: string
  api<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    token?: string,
  ): Promise<{ status: number; body: T }>
}

/** Starts a relay on 127.0.0.1:0 with its own data dir, closed after the test. */
export async function startTestRelay(
  t: TestContext,
  config: Partial<RelayConfig> = {},
  dataDir?: string,
): Promise<TestRelay> {
  const dir = dataDir ?? (await mkdtemp(join(tmpdir(), 'tether-relay-')))
  const { logger, lines } = memoryLogger()
  const relay = await startRelay(
    { host: '127.0.0.1', port: 0, dataDir: dir, adminPassword: ADMIN_PASSWORD, ...config },
    { logger },
  )
  t.after(async () => {
    await relay.close().catch(() => {})
    if (!dataDir) await rm(dir, { recursive: true, force: true })
  })
  const api = async <T>(method: string, path: string, body?: unknown, token?: string) => {
    const headers: Record<string, string> = {}
    const bearer = token ?? handle.token
    if (bearer) headers.authorization = `Bearer ${bearer}`
    if (body !== undefined) headers['content-type'] = 'application/json'
    const res = await fetch(`${relay.url}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await res.text()
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T }
  }
  const handle: TestRelay = { relay, dataDir: dir, logs: lines, token: '', api }
  handle.token = (await login(handle, 'admin', ADMIN_PASSWORD)).access_token
  return handle
}

/** A `user`-role account (created by the admin), logged in, with the API bound to its own token. */
export async function createUserWithToken(relay: TestRelay, name: string) {
  const password = `password-of-${name}`
  const created = await relay.api('POST', '/v1/users', { username: name, password, role: 'user' })
  if (created.status !== 201)
    throw new Error(`user create failed: ${created.status} ${JSON.stringify(created.body)}`)
  const { access_token: token } = await login(relay, name, password)
  const api = <T = unknown>(method: string, path: string, body?: unknown) =>
    relay.api<T>(method, path, body, token)
  return { name, token, api }
}

/** Password grant; returns the token response. */
export async function login(relay: TestRelay, username: string, password: string) {
  const res = await relay.api<{ access_token: string }>(
    'POST',
    '/oauth/token',
    { grant_type: 'password', username, password },
    '',
  )
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body
}

/** Creates an agent device and returns its credential. */
export async function createAgentDevice(relay: TestRelay, device: string, user = 'admin'): Promise<string> {
  const res = await relay.api<{ credential: string }>('POST', `/v1/users/${user}/devices`, {
    device,
    type: 'agent',
  })
  if (res.status !== 201) throw new Error(`device create failed: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body.credential
}

export interface TestAgent {
  agent: Agent
  logs: Array<Record<string, unknown>>
}

/** Starts an agent against `relayUrl`, stopped after the test. */
export async function startTestAgent(
  t: TestContext,
  config: Record<string, unknown> & { relay: string; device: string; credential: string },
): Promise<TestAgent> {
  const stateDir = await mkdtemp(join(tmpdir(), 'tether-agent-'))
  const { logger, lines } = memoryLogger()
  const agent = await startAgent({ user: 'admin', stateDir, keepAliveSec: 5, ...config }, logger)
  t.after(async () => {
    await agent.stop().catch(() => {})
    await rm(stateDir, { recursive: true, force: true })
  })
  return { agent, logs: lines }
}

/** A relay and an agent `gw` (owned by admin, allowing `allow`) that has connected to it. */
export async function startTunnel(
  t: TestContext,
  allow: string[],
  relayConfig: Partial<RelayConfig> = {},
  agentConfig: Record<string, unknown> = {},
): Promise<{ relay: TestRelay; agent: TestAgent }> {
  const relay = await startTestRelay(t, relayConfig)
  const credential = await createAgentDevice(relay, 'gw')
  const agent = await startTestAgent(t, {
    relay: relay.relay.iotmpUrl,
    device: 'gw',
    credential,
    allow,
    ...agentConfig,
  })
  await agent.agent.connected()
  return { relay, agent }
}

/** The live `status` block of a proxy profile, as the API returns it. */
export interface ProxyStatus {
  listening: boolean
  port?: number
  error?: string
  active_connections: number
  total_connections: number
  rejected_connections: number
  rx_bytes: number
  tx_bytes: number
  dropped_datagrams: number
  last_error?: { message: string; ts: number }
}

/** Creates a tcp-iotmp proxy on an OS-chosen port; returns the bound port. */
export async function createTcpProxy(
  relay: TestRelay,
  id: string,
  target: { device: string; address: string; port: number; tls?: boolean; verify?: boolean; user?: string },
): Promise<number> {
  const res = await relay.api<{ status: { port: number } }>('POST', '/v1/server/proxies', {
    id,
    protocol: 'tcp-iotmp',
    enabled: true,
    source: { port: 0, address: '127.0.0.1' },
    target: { type: 'device', user: 'admin', tls: false, ...target },
  })
  if (res.status !== 201) throw new Error(`proxy create failed: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body.status.port
}

/** A TCP server on 127.0.0.1:0 whose connections are handled by `onConnection`; closed after the test. */
export async function tcpServer(t: TestContext, onConnection: (socket: net.Socket) => void): Promise<number> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    onConnection(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(async () => {
    for (const s of sockets) s.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  return (server.address() as AddressInfo).port
}

/** An echo server (half-close aware: ends its side after the client ends). */
export function echoServer(t: TestContext): Promise<number> {
  return tcpServer(t, (socket) => socket.pipe(socket))
}

/** Connects to 127.0.0.1:port. */
export function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => resolve(socket))
    socket.once('error', reject)
  })
}

/** Reads a socket until it ends or closes; resolves with everything read and whether it ended cleanly. */
export function readAll(socket: net.Socket): Promise<{ data: Buffer; ended: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let ended = false
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('end', () => {
      ended = true
      socket.end() // our sockets allow half-open: close our side too
    })
    socket.on('error', () => {})
    socket.on('close', () => resolve({ data: Buffer.concat(chunks), ended }))
  })
}

/** A free port on 127.0.0.1 (bound and released). */
export async function freePort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Polls `check` every 20 ms until it returns a truthy value, or throws after `timeoutMs`. */
export async function eventually<T>(
  check: () => T | Promise<T>,
  timeoutMs = 5000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Resolves once the agent's buffer is empty (on its `forwarded` event); the timeout only reports a hang. */
export function drained(agent: Agent, timeoutMs = 90_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (agent.buffer.stats().depth > 0) return
      done()
      resolve()
    }
    const timer = setTimeout(() => {
      done()
      reject(new Error(`buffer not drained: ${JSON.stringify(agent.buffer.stats())}`))
    }, timeoutMs)
    const done = () => {
      clearTimeout(timer)
      agent.buffer.off('forwarded', check)
    }
    agent.buffer.on('forwarded', check)
    check()
  })
}
