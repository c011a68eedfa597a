/** Helpers for the real-client tests: finding Debian tools, throw-away servers in sandboxes, running clients. */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import dgram from 'node:dgram'
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import type { TestContext } from 'node:test'
import { freePort, type ProxyStatus, type TestRelay } from '../harness.ts'

export const FIXTURES = join(import.meta.dirname, '..', '..', 'fixtures', 'tls')
export const TIMEOUT = { timeout: 45_000 }

// ---------------------------------------------------------------------------------------------------------
// Tools

/** Directories searched besides PATH: sbin (daemons) and the versioned PostgreSQL server binaries. */
export function extraDirs(): string[] {
  let versions: string[] = []
  try {
    versions = readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a))
  } catch {
    // no PostgreSQL server installed
  }
  return ['/usr/sbin', '/sbin', '/usr/local/sbin', ...versions.map((v) => `/usr/lib/postgresql/${v}/bin`)]
}

/** Absolute path of executable `name`, or undefined. */
export function findTool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...extraDirs()]
  for (const dir of dirs) {
    const path = join(dir, name)
    try {
      accessSync(path, constants.X_OK)
      return path
    } catch {
      // not here
    }
  }
  return undefined
}

/**
 * Path of `tool`. When it is missing: with CI=true the test fails naming the apt package; otherwise the test
 * is skipped (and the caller returns on undefined).
 */
export function requireTool(t: TestContext, tool: string, aptPackage: string): string | undefined {
  return requireTools(t, { [tool]: aptPackage })?.[tool]
}

/** requireTool for several tools at once: one skip (or failure) naming every missing tool and package. */
export function requireTools(
  t: TestContext,
  tools: Record<string, string>,
): Record<string, string> | undefined {
  const found: Record<string, string> = {}
  const missing: string[] = []
  const packages = new Set<string>()
  for (const [tool, pkg] of Object.entries(tools)) {
    const path = findTool(tool)
    if (path) found[tool] = path
    else {
      missing.push(tool)
      packages.add(pkg)
    }
  }
  if (missing.length === 0) return found
  const message = `${missing.join(', ')} not installed; apt-get install ${[...packages].join(' ')}`
  if (process.env.CI === 'true') throw new Error(`${message} (CI must install it: see .ci/run)`)
  t.skip(message)
  return undefined
}

export const isRoot = process.getuid?.() === 0

// ---------------------------------------------------------------------------------------------------------
// Processes

export interface Server {
  readonly proc: ChildProcess
  /** stdout and stderr so far (capped), for failure messages. */
  output(): string
  readonly exited: Promise<void>
  hasExited(): boolean
}

/** A temp dir plus the servers started in it; everything is stopped and removed after the test. */
export interface Sandbox {
  dir: string
  spawn(command: string, args: string[], stopSignal?: NodeJS.Signals): Server
}

export async function sandbox(t: TestContext, prefix: string): Promise<Sandbox> {
  const dir = await mkdtemp(join(tmpdir(), `tether-${prefix}-`))
  const servers: Array<{ server: Server; stopSignal: NodeJS.Signals }> = []
  t.after(async () => {
    await Promise.all(
      servers.map(async ({ server, stopSignal }) => {
        if (server.hasExited()) return
        server.proc.kill(stopSignal)
        const timer = setTimeout(() => server.proc.kill('SIGKILL'), 5000)
        await server.exited
        clearTimeout(timer)
      }),
    )
    await rm(dir, { recursive: true, force: true })
  })
  return {
    dir,
    spawn(command, args, stopSignal = 'SIGTERM') {
      const proc = spawn(command, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      let done = false
      const keep = (chunk: Buffer) => {
        if (out.length < 64 * 1024) out += chunk.toString()
      }
      proc.stdout?.on('data', keep)
      proc.stderr?.on('data', keep)
      const exited = new Promise<void>((resolve) => {
        proc.once('error', (err) => {
          out += `\nspawn failed: ${err.message}`
          done = true
          resolve()
        })
        proc.once('close', (code, signal) => {
          out += `\n[exited with ${signal ?? code}]`
          done = true
          resolve()
        })
      })
      const server: Server = { proc, output: () => out, exited, hasExited: () => done }
      servers.push({ server, stopSignal })
      return server
    },
  }
}

/** Polls `check` until it is true; fails early (with the server's output) when the server exits. */
export async function ready(server: Server, what: string, check: () => Promise<boolean>, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (server.hasExited()) throw new Error(`${what} exited before it was ready:\n${server.output()}`)
    if (await check().catch(() => false)) return
    if (Date.now() > deadline)
      throw new Error(`${what} not ready within ${timeoutMs} ms:\n${server.output()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** True once something accepts TCP connections on 127.0.0.1:port. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a client to completion (killed after `timeoutMs`); never rejects on a non-zero exit. */
export function run(command: string, args: string[], timeoutMs = 20_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    proc.stdout.on('data', (c: Buffer) => {
      stdout += c
    })
    proc.stderr.on('data', (c: Buffer) => {
      stderr += c
    })
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${timeoutMs} ms]`
      proc.kill('SIGKILL')
    }, timeoutMs)
    proc.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    proc.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/** Asserts exit code 0 and returns stdout. */
export function ok(result: RunResult, what: string): string {
  assert.equal(result.code, 0, `${what} failed (exit ${result.code}):\n${result.stderr}\n${result.stdout}`)
  return result.stdout
}

/** A UDP port that was free on 127.0.0.1 a moment ago. */
export async function freeUdpPort(): Promise<number> {
  const socket = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  const { port } = socket.address()
  await new Promise<void>((resolve) => socket.close(() => resolve()))
  return port
}

// ---------------------------------------------------------------------------------------------------------
// Relay, agent, proxies

/** Creates a profile (source 127.0.0.1:0 unless given); returns the bound port. */
export async function createProxy(relay: TestRelay, profile: Record<string, unknown>): Promise<number> {
  const res = await relay.api<{ status: ProxyStatus }>('POST', '/v1/server/proxies', {
    enabled: true,
    source: { port: 0, address: '127.0.0.1' },
    ...profile,
  })
  assert.equal(res.status, 201, JSON.stringify(res.body))
  assert.equal(typeof res.body.status.port, 'number')
  return res.body.status.port!
}

export async function proxyStatus(relay: TestRelay, id: string): Promise<ProxyStatus> {
  const res = await relay.api<{ status: ProxyStatus }>('GET', `/v1/server/proxies/${id}`)
  assert.equal(res.status, 200, JSON.stringify(res.body))
  return res.body.status
}

// ---------------------------------------------------------------------------------------------------------
// Tests

/** uid and gid of a local OS user, from /etc/passwd. */
export function userInfoOf(name: string): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`))
  assert.ok(line, `OS user ${name} not found (the Debian postgresql package creates it)`)
  const [, , uid, gid] = line.split(':')
  return { uid: Number(uid), gid: Number(gid) }
}

/** `openssl s_server -www` with the fixture certificate (localhost, 127.0.0.1) on a free port; returns it. */
export async function opensslServer(t: TestContext, openssl: string, name: string): Promise<number> {
  const box = await sandbox(t, name)
  const port = await freePort()
  const server = box.spawn(openssl, [
    's_server',
    '-accept',
    `127.0.0.1:${port}`,
    '-cert',
    join(FIXTURES, 'localhost.crt'),
    '-key',
    join(FIXTURES, 'localhost.key'),
    '-www',
    '-quiet',
  ])
  await ready(server, 'openssl s_server', () => accepts(port))
  return port
}
