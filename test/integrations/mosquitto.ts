/**
 * A real Mosquitto broker for the MQTT transport tests, in a temp dir on a free loopback port; it can be
 * stopped and started again on the same port. Without mosquitto the test skips locally and fails in CI.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { accessSync, constants } from 'node:fs'
import { chmod, copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises'
import net, { type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import type { TestContext } from 'node:test'

const TOOLS = ['mosquitto', 'mosquitto_pub', 'mosquitto_sub', 'mosquitto_passwd'] as const
export type Tools = Record<(typeof TOOLS)[number], string>
export const TLS_FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'tls')

/** Paths of the mosquitto tools; undefined (test skipped) when missing, unless CI=true, where that fails. */
export function requireMosquitto(t: TestContext): Tools | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/sbin', '/sbin']
  const found: Partial<Tools> = {}
  for (const tool of TOOLS) {
    for (const dir of dirs) {
      try {
        accessSync(join(dir, tool), constants.X_OK)
        found[tool] = join(dir, tool)
        break
      } catch {
        // not in this directory
      }
    }
  }
  const missing = TOOLS.filter((tool) => !found[tool])
  if (missing.length === 0) return found as Tools
  const message = `${missing.join(', ')} not installed; apt-get install mosquitto mosquitto-clients`
  if (process.env.CI === 'true') throw new Error(message)
  t.skip(message)
  return undefined
}

/** Runs a client tool to completion; resolves with its output, rejects on a non-zero exit. */
export function run(command: string, args: string[], timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command} ${args.join(' ')}: ${err.message}\n${stderr}`))
      else resolve(stdout)
    })
  })
}

export interface BrokerOptions {
  /** Require this login (password_file, no anonymous clients). */
  auth?: { username: string; password: string }
  /** Serve TLS with the fixture certificate (localhost, 127.0.0.1). */
  tls?: boolean
}

export interface Broker {
  port: number
  url: string
  /** Everything the broker logged (log_type all) since its first start. */
  output(): string
  /** Resolves once the log matches `pattern` at least `count` times. */
  logged(pattern: RegExp, count?: number): Promise<void>
  stop(): Promise<void>
  /** Starts it (again) on the same port; resolves once it listens. */
  start(): Promise<void>
}

/** A broker on a free port, stopped and its directory removed after the test. */
export async function startBroker(t: TestContext, tools: Tools, opts: BrokerOptions = {}): Promise<Broker> {
  const dir = await mkdtemp(join(tmpdir(), 'tether-mqtt-transport-'))
  const port = await freePort()
  const lines = [`listener ${port} 127.0.0.1`, 'persistence false', 'log_dest stderr', 'log_type all']
  if (opts.auth) {
    const passwd = join(dir, 'passwd')
    await run(tools.mosquitto_passwd, ['-b', '-c', passwd, opts.auth.username, opts.auth.password])
    await chmod(passwd, 0o644)
    lines.push('allow_anonymous false', `password_file ${passwd}`)
  } else lines.push('allow_anonymous true')
  if (opts.tls) {
    for (const file of ['localhost.crt', 'localhost.key']) {
      await copyFile(join(TLS_FIXTURES, file), join(dir, file))
      await chmod(join(dir, file), 0o644) // mosquitto drops root privileges to its own user
    }
    lines.push(`certfile ${join(dir, 'localhost.crt')}`, `keyfile ${join(dir, 'localhost.key')}`)
  }
  const conf = join(dir, 'mosquitto.conf')
  await writeFile(conf, `${lines.join('\n')}\n`)
  await chmod(conf, 0o644)
  await chmod(dir, 0o755)

  let out = ''
  let proc: ChildProcess | undefined
  let running = false
  const logEvents = new EventEmitter()
  const count = (pattern: RegExp) => (out.match(new RegExp(pattern.source, 'g')) ?? []).length
  const broker: Broker = {
    port,
    url: `${opts.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    output: () => out,
    async logged(pattern, n = 1) {
      while (count(pattern) < n) {
        if (!running) throw new Error(`broker not running, never logged ${pattern}:\n${out}`)
        await Promise.race([once(logEvents, 'data'), once(logEvents, 'exit')])
      }
    },
    async start() {
      const before = count(/mosquitto version \S+ running/)
      const child = spawn(tools.mosquitto, ['-c', conf], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
      proc = child
      running = true
      const keep = (chunk: Buffer) => {
        out += chunk.toString()
        logEvents.emit('data')
      }
      child.stdout.on('data', keep)
      child.stderr.on('data', keep)
      child.once('exit', () => {
        running = false
        logEvents.emit('exit')
      })
      await broker.logged(/mosquitto version \S+ running/, before + 1)
    },
    async stop() {
      const child = proc
      proc = undefined
      if (!child || child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      await once(child, 'exit')
    },
  }
  t.after(async () => {
    await broker.stop()
    await rm(dir, { recursive: true, force: true })
  })
  await broker.start()
  return broker
}

async function freePort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}
