/**
 * Clients nobody here wrote (psql, redis-cli/redis-benchmark, ssh, dig, mosquitto_pub/sub, a TLS server)
 * through a real relay and a real agent on loopback. Each test starts its own throw-away server from the
 * Debian packages; a missing tool skips the test locally and fails it in CI (CI=true), naming the package.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import dgram from 'node:dgram'
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs'
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import net, { type AddressInfo } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { delimiter, join } from 'node:path'
import { type TestContext, test } from 'node:test'
import tls from 'node:tls'
import {
  connect,
  createTcpProxy,
  eventually,
  freePort,
  type ProxyStatus,
  readAll,
  startTestRelay,
  startTunnel,
  type TestRelay,
  waitForLog,
} from './harness.ts'

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'tls')
const TIMEOUT = { timeout: 45_000 }

// ---------------------------------------------------------------------------------------------------------
// Tools

/** Directories searched besides PATH: sbin (daemons) and the versioned PostgreSQL server binaries. */
function extraDirs(): string[] {
  let versions: string[] = []
  try {
    versions = readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a))
  } catch {
    // no PostgreSQL server installed
  }
  return ['/usr/sbin', '/sbin', '/usr/local/sbin', ...versions.map((v) => `/usr/lib/postgresql/${v}/bin`)]
}

/** Absolute path of executable `name`, or undefined. */
function findTool(name: string): string | undefined {
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
function requireTools(t: TestContext, tools: Record<string, string>): Record<string, string> | undefined {
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

const isRoot = process.getuid?.() === 0

// ---------------------------------------------------------------------------------------------------------
// Processes

interface Server {
  readonly proc: ChildProcess
  /** stdout and stderr so far (capped), for failure messages. */
  output(): string
  readonly exited: Promise<void>
  hasExited(): boolean
}

/** A temp dir plus the servers started in it; everything is stopped and removed after the test. */
interface Sandbox {
  dir: string
  spawn(command: string, args: string[], stopSignal?: NodeJS.Signals): Server
}

async function sandbox(t: TestContext, prefix: string): Promise<Sandbox> {
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
async function ready(server: Server, what: string, check: () => Promise<boolean>, timeoutMs = 20_000) {
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
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a client to completion (killed after `timeoutMs`); never rejects on a non-zero exit. */
function run(command: string, args: string[], timeoutMs = 20_000): Promise<RunResult> {
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
function ok(result: RunResult, what: string): string {
  assert.equal(result.code, 0, `${what} failed (exit ${result.code}):\n${result.stderr}\n${result.stdout}`)
  return result.stdout
}

/** A UDP port that was free on 127.0.0.1 a moment ago. */
async function freeUdpPort(): Promise<number> {
  const socket = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  const { port } = socket.address()
  await new Promise<void>((resolve) => socket.close(() => resolve()))
  return port
}

// ---------------------------------------------------------------------------------------------------------
// Relay, agent, proxies

/** Creates a profile (source 127.0.0.1:0 unless given); returns the bound port. */
async function createProxy(relay: TestRelay, profile: Record<string, unknown>): Promise<number> {
  const res = await relay.api<{ status: ProxyStatus }>('POST', '/v1/server/proxies', {
    enabled: true,
    source: { port: 0, address: '127.0.0.1' },
    ...profile,
  })
  assert.equal(res.status, 201, JSON.stringify(res.body))
  assert.equal(typeof res.body.status.port, 'number')
  return res.body.status.port!
}

async function proxyStatus(relay: TestRelay, id: string): Promise<ProxyStatus> {
  const res = await relay.api<{ status: ProxyStatus }>('GET', `/v1/server/proxies/${id}`)
  assert.equal(res.status, 200, JSON.stringify(res.body))
  return res.body.status
}

// ---------------------------------------------------------------------------------------------------------
// Tests

test('PostgreSQL: psql runs queries through tcp-iotmp', TIMEOUT, async (t) => {
  const tools = requireTools(t, {
    psql: 'postgresql-client',
    pg_isready: 'postgresql-client',
    initdb: 'postgresql',
    postgres: 'postgresql',
  })
  if (!tools) return
  const box = await sandbox(t, 'pg')
  // initdb and postgres refuse to run as root: run them as the `postgres` OS user in a dir it owns.
  const asServerUser = (command: string, args: string[]): [string, string[]] => {
    if (!isRoot) return [command, args]
    const setpriv = findTool('setpriv')
    assert.ok(setpriv, 'setpriv (util-linux) is needed to run PostgreSQL as the postgres user')
    return [setpriv, ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', command, ...args]]
  }
  if (isRoot) {
    const { uid, gid } = userInfoOf('postgres')
    await chown(box.dir, uid, gid)
  }
  const data = join(box.dir, 'data')
  const init = await run(
    ...asServerUser(tools.initdb!, ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync']),
    30_000,
  )
  ok(init, 'initdb')

  const pgPort = await freePort()
  const server = box.spawn(
    ...asServerUser(tools.postgres!, [
      '-D',
      data,
      '-k',
      box.dir,
      '-p',
      String(pgPort),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'fsync=off',
    ]),
    'SIGINT', // fast shutdown
  )
  const isReady = async (port: number) =>
    (await run(tools.pg_isready!, ['-h', '127.0.0.1', '-p', String(port), '-t', '2'])).code === 0
  await ready(server, 'postgres', () => isReady(pgPort))

  const { relay } = await startTunnel(t, [`127.0.0.1:${pgPort}`])
  const port = await createTcpProxy(relay, 'pg', { device: 'gw', address: '127.0.0.1', port: pgPort })
  assert.equal(await isReady(port), true, 'pg_isready through the proxy')
  const out = ok(
    await run(tools.psql!, [
      '-X',
      '-At',
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-U',
      'postgres',
      '-v',
      'ON_ERROR_STOP=1',
      '-c',
      'create table t(x int); insert into t values (1),(2); select sum(x) from t',
    ]),
    'psql',
  )
  assert.equal(out.trim().split('\n').at(-1), '3', out)
  const status = await proxyStatus(relay, 'pg')
  assert.ok(status.total_connections >= 2, JSON.stringify(status))
  assert.ok(status.rx_bytes > 0 && status.tx_bytes > 0, JSON.stringify(status))
})

/** uid and gid of a local OS user, from /etc/passwd. */
function userInfoOf(name: string): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`))
  assert.ok(line, `OS user ${name} not found (the Debian postgresql package creates it)`)
  const [, , uid, gid] = line.split(':')
  return { uid: Number(uid), gid: Number(gid) }
}

test('Redis: redis-cli and redis-benchmark through tcp-iotmp', TIMEOUT, async (t) => {
  const tools = requireTools(t, {
    'redis-server': 'redis-server',
    'redis-cli': 'redis-tools',
    'redis-benchmark': 'redis-tools',
  })
  if (!tools) return
  const box = await sandbox(t, 'redis')
  const redisPort = await freePort()
  const server = box.spawn(tools['redis-server']!, [
    '--port',
    String(redisPort),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    box.dir,
  ])
  const cli = (port: number, ...args: string[]) =>
    run(tools['redis-cli']!, ['-h', '127.0.0.1', '-p', String(port), ...args])
  await ready(server, 'redis-server', async () => (await cli(redisPort, 'ping')).stdout.trim() === 'PONG')

  const { relay } = await startTunnel(t, [`127.0.0.1:${redisPort}`])
  const port = await createTcpProxy(relay, 'redis', { device: 'gw', address: '127.0.0.1', port: redisPort })
  assert.equal(ok(await cli(port, 'set', 'k', 'v'), 'redis-cli set').trim(), 'OK')
  assert.equal(ok(await cli(port, 'get', 'k'), 'redis-cli get').trim(), 'v')
  // The value really landed in the server behind the agent.
  assert.equal(ok(await cli(redisPort, 'get', 'k'), 'redis-cli get (direct)').trim(), 'v')

  const bench = await run(
    tools['redis-benchmark']!,
    ['-h', '127.0.0.1', '-p', String(port), '-q', '-n', '20000', '-t', 'set,get'],
    40_000,
  )
  const out = ok(bench, 'redis-benchmark')
  for (const op of ['SET', 'GET']) {
    const m = new RegExp(`${op}: ([\\d.]+) requests per second`).exec(out)
    assert.ok(m, `no ${op} result in redis-benchmark output:\n${out}`)
    assert.ok(Number(m[1]) > 0, `${op}: ${m[1]} requests per second`)
  }
  await eventually(async () => (await proxyStatus(relay, 'redis')).active_connections === 0, 5000)
})

test('OpenSSH: an ssh session to a loopback sshd through tcp-iotmp', TIMEOUT, async (t) => {
  const tools = requireTools(t, {
    sshd: 'openssh-server',
    ssh: 'openssh-client',
    'ssh-keygen': 'openssh-client',
  })
  if (!tools) return
  const box = await sandbox(t, 'ssh')
  const hostKey = join(box.dir, 'host_ed25519')
  const clientKey = join(box.dir, 'client_ed25519')
  for (const key of [hostKey, clientKey]) {
    ok(
      await run(tools['ssh-keygen']!, ['-q', '-t', 'ed25519', '-N', '', '-C', 'tether-test', '-f', key]),
      'ssh-keygen',
    )
  }
  const authorizedKeys = join(box.dir, 'authorized_keys')
  await writeFile(authorizedKeys, readFileSync(`${clientKey}.pub`))
  await chmod(authorizedKeys, 0o600)
  const sshPort = await freePort()
  const config = join(box.dir, 'sshd_config')
  await writeFile(
    config,
    [
      `Port ${sshPort}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      'StrictModes no',
      'UsePAM no',
      `PidFile ${join(box.dir, 'sshd.pid')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      '',
    ].join('\n'),
  )
  if (isRoot) await mkdir('/run/sshd', { recursive: true, mode: 0o755 }) // privilege separation dir
  const server = box.spawn(tools.sshd!, ['-D', '-e', '-f', config])
  await ready(server, 'sshd', () => accepts(sshPort))

  const { relay } = await startTunnel(t, [`127.0.0.1:${sshPort}`])
  const port = await createTcpProxy(relay, 'ssh', { device: 'gw', address: '127.0.0.1', port: sshPort })
  const session = await run(tools.ssh!, [
    '-F',
    '/dev/null',
    '-p',
    String(port),
    '-i',
    clientKey,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'ConnectTimeout=10',
    '-o',
    'LogLevel=ERROR',
    `${userInfo().username}@127.0.0.1`,
    'echo tunnelled-ssh',
  ])
  assert.equal(session.code, 0, `ssh failed:\n${session.stderr}\nsshd:\n${server.output()}`)
  assert.equal(session.stdout.trim(), 'tunnelled-ssh')
  const status = await proxyStatus(relay, 'ssh')
  assert.equal(status.total_connections, 1)
})

test('UDP: dig through udp and udp-iotmp reaches dnsmasq; idle mappings expire', TIMEOUT, async (t) => {
  const tools = requireTools(t, { dnsmasq: 'dnsmasq', dig: 'dnsutils' })
  if (!tools) return
  const box = await sandbox(t, 'dns')
  const dnsPort = await freeUdpPort()
  const server = box.spawn(tools.dnsmasq!, [
    '--no-daemon',
    `--port=${dnsPort}`,
    '--listen-address=127.0.0.1',
    '--bind-interfaces',
    '--no-resolv',
    '--no-hosts',
    '--address=/tether.test/10.1.2.3',
    '--conf-file=/dev/null',
    `--pid-file=${join(box.dir, 'dnsmasq.pid')}`,
  ])
  const dig = async (port: number) =>
    ok(
      await run(tools.dig!, [
        '@127.0.0.1',
        '-p',
        String(port),
        'tether.test',
        '+short',
        '+tries=1',
        '+time=3',
      ]),
      'dig',
    ).trim()
  await ready(server, 'dnsmasq', async () => (await dig(dnsPort)) === '10.1.2.3')

  const { relay } = await startTunnel(t, [`127.0.0.1:${dnsPort}`])

  // udp: the relay itself sends the datagrams to the host target; default idle timeout (60 s).
  const udpPort = await createProxy(relay, {
    id: 'dns-udp',
    protocol: 'udp',
    target: { type: 'host', address: '127.0.0.1', port: dnsPort },
  })
  assert.equal(await dig(udpPort), '10.1.2.3')
  const udpStatus = await proxyStatus(relay, 'dns-udp')
  assert.equal(udpStatus.active_connections, 1, 'one client mapping (dig from one source port)')
  assert.equal(udpStatus.total_connections, 1)
  assert.ok(udpStatus.rx_bytes > 0 && udpStatus.tx_bytes > 0, JSON.stringify(udpStatus))

  // udp-iotmp: one stream per client address, the agent holds the UDP socket; mappings idle 1 s.
  const iotmpPort = await createProxy(relay, {
    id: 'dns-iotmp',
    protocol: 'udp-iotmp',
    source: { port: 0, address: '127.0.0.1', idleTimeoutSec: 1 },
    target: { type: 'device', user: 'admin', device: 'gw', address: '127.0.0.1', port: dnsPort },
  })
  assert.equal(await dig(iotmpPort), '10.1.2.3')
  const iotmpStatus = await proxyStatus(relay, 'dns-iotmp')
  assert.equal(iotmpStatus.total_connections, 1)
  assert.ok(iotmpStatus.rx_bytes > 0 && iotmpStatus.tx_bytes > 0, JSON.stringify(iotmpStatus))
  await eventually(
    async () => (await proxyStatus(relay, 'dns-iotmp')).active_connections === 0,
    5000,
    'the idle udp-iotmp mapping to expire',
  )
  // A new query after the expiry opens a new mapping and still works.
  assert.equal(await dig(iotmpPort), '10.1.2.3')
  assert.equal((await proxyStatus(relay, 'dns-iotmp')).total_connections, 2)
  // The udp mapping (60 s) is still there.
  assert.equal((await proxyStatus(relay, 'dns-udp')).active_connections, 1)
})

test(
  'TLS target behind the agent: verify:false works, verify:true fails on the self-signed cert',
  TIMEOUT,
  async (t) => {
    const secured: boolean[] = []
    const server = tls.createServer(
      {
        cert: readFileSync(join(FIXTURES, 'localhost.crt')),
        key: readFileSync(join(FIXTURES, 'localhost.key')),
      },
      (socket) => {
        secured.push(socket.encrypted)
        socket.on('error', () => {})
        socket.on('data', (d: Buffer) => socket.write(`secure ${d}`))
        socket.on('end', () => socket.end())
      },
    )
    server.on('tlsClientError', () => {}) // the verifying agent hangs up during the handshake
    const sockets = new Set<net.Socket>()
    server.on('connection', (socket: net.Socket) => {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.after(async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    })
    const tlsPort = (server.address() as AddressInfo).port

    const { relay, agent } = await startTunnel(t, [`127.0.0.1:${tlsPort}`])
    const open = await createTcpProxy(relay, 'tls-unverified', {
      device: 'gw',
      address: '127.0.0.1',
      port: tlsPort,
      tls: true,
      verify: false,
    })
    await waitForLog(relay.logs, /tls-unverified: TLS to the target without certificate verification/)
    const socket = await connect(open)
    const reply = readAll(socket)
    socket.end('ping')
    assert.equal((await reply).data.toString(), 'secure ping')
    assert.deepEqual(secured, [true])
    await waitForLog(agent.logs, /without certificate verification/)

    const verified = await createTcpProxy(relay, 'tls-verified', {
      device: 'gw',
      address: '127.0.0.1',
      port: tlsPort,
      tls: true,
      verify: true,
    })
    const refused = await connect(verified)
    const nothing = readAll(refused)
    refused.write('ping')
    assert.equal((await nothing).data.length, 0, 'no bytes from an unverified target')
    const line = await waitForLog(
      relay.logs,
      /proxy tls-verified: .*is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\)/,
    )
    assert.match(String(line.msg), /agent could not open 127\.0\.0\.1:\d+/)
    const status = await proxyStatus(relay, 'tls-verified')
    assert.match(
      status.last_error?.message ?? '',
      /is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\): add its CA to targetCa/,
    )
    assert.equal(status.rejected_connections, 1)
    assert.equal(secured.length, 1, 'the TLS server never completed a handshake with the verifying agent')
  },
)

/** `openssl s_server -www` with the fixture certificate (localhost, 127.0.0.1) on a free port; returns it. */
async function opensslServer(t: TestContext, openssl: string, name: string): Promise<number> {
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

test('TLS target: openssl s_server reached with tls:true through tcp-iotmp', TIMEOUT, async (t) => {
  const tools = requireTools(t, { openssl: 'openssl' })
  if (!tools) return
  const tlsPort = await opensslServer(t, tools.openssl!, 'openssl')
  const { relay } = await startTunnel(t, [`127.0.0.1:${tlsPort}`])
  const port = await createTcpProxy(relay, 's-server', {
    device: 'gw',
    address: '127.0.0.1',
    port: tlsPort,
    tls: true,
    verify: false,
  })
  const socket = await connect(port)
  const reply = readAll(socket)
  socket.write('GET / HTTP/1.0\r\n\r\n')
  const page = (await reply).data.toString()
  assert.match(page, /^HTTP\/1\.0 200 ok/)
  assert.match(page, /TLSv1\.[23]/, 'the status page names the negotiated TLS version')
})

test(
  'TLS target verified against a trusted CA on both sides; a wrong name fails with a clear error',
  TIMEOUT,
  async (t) => {
    const tools = requireTools(t, { openssl: 'openssl' })
    if (!tools) return
    const tlsPort = await opensslServer(t, tools.openssl!, 'openssl-verify')
    // The fixture certificate (CN/SAN localhost, 127.0.0.1) is its own CA: trusting it is what a site CA does.
    const ca = [join(FIXTURES, 'localhost.crt')]
    const { relay } = await startTunnel(t, [`127.0.0.1:${tlsPort}`], { targetCa: ca }, { targetCa: ca })
    const fetchPage = async (port: number) => {
      const socket = await connect(port)
      const reply = readAll(socket)
      socket.write('GET / HTTP/1.0\r\n\r\n')
      return (await reply).data.toString()
    }
    const tlsTarget = { address: '127.0.0.1', port: tlsPort, tls: true }
    const profiles = {
      // verify defaults to true: the agent checks the certificate against 127.0.0.1 and its targetCa.
      'via-agent': {
        protocol: 'tcp-iotmp',
        target: { type: 'device', user: 'admin', device: 'gw', ...tlsTarget },
      },
      'via-relay': { protocol: 'tcp', target: { type: 'host', ...tlsTarget } },
      'agent-wrong-name': {
        protocol: 'tcp-iotmp',
        target: { type: 'device', user: 'admin', device: 'gw', ...tlsTarget, servername: 'wrong.example' },
      },
      'relay-wrong-name': {
        protocol: 'tcp',
        target: { type: 'host', ...tlsTarget, servername: 'wrong.example' },
      },
    }
    const ports: Record<string, number> = {}
    for (const [id, profile] of Object.entries(profiles))
      ports[id] = await createProxy(relay, { id, ...profile })

    for (const id of ['via-agent', 'via-relay']) {
      const page = await fetchPage(ports[id]!)
      assert.match(page, /^HTTP\/1\.0 200 ok/, `${id}: the verified handshake completed`)
    }
    for (const id of ['agent-wrong-name', 'relay-wrong-name']) {
      assert.equal(await fetchPage(ports[id]!), '', `${id}: the client connection is closed without data`)
      const status = await proxyStatus(relay, id)
      assert.equal(status.rejected_connections, 1)
      assert.match(
        status.last_error?.message ?? '',
        /certificate of 127\.0\.0\.1:\d+ is not valid for wrong\.example/,
      )
    }
    // Without the CA, the same target is refused as untrusted, with the remedy named.
    const untrusted = await startTestRelay(t)
    const plain = await createProxy(untrusted, { id: 'untrusted', ...profiles['via-relay'] })
    assert.equal(await fetchPage(plain), '')
    const status = await proxyStatus(untrusted, 'untrusted')
    assert.match(
      status.last_error?.message ?? '',
      /is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\): add its CA to targetCa/,
    )
  },
)

test('Mosquitto: mosquitto_pub/sub through a tcp proxy to a plugin target', TIMEOUT, async (t) => {
  const tools = requireTools(t, {
    mosquitto: 'mosquitto',
    mosquitto_pub: 'mosquitto-clients',
    mosquitto_sub: 'mosquitto-clients',
  })
  if (!tools) return
  const box = await sandbox(t, 'mqtt')
  const mqttPort = await freePort()
  const conf = join(box.dir, 'mosquitto.conf')
  await writeFile(
    conf,
    `listener ${mqttPort} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type all\n`,
  )
  await chmod(box.dir, 0o755) // mosquitto drops root privileges to its own user
  await chmod(conf, 0o644)
  const server = box.spawn(tools.mosquitto!, ['-c', conf])
  await ready(server, 'mosquitto', () => accepts(mqttPort))

  const relay = await startTestRelay(t, { plugins: { mqtt: { address: '127.0.0.1' } } })
  const port = await createProxy(relay, {
    id: 'mqtt',
    protocol: 'tcp',
    target: { type: 'plugin', plugin: 'mqtt', port: mqttPort },
  })

  // Publish only once the subscription stands: the broker logs (log_type all) the SUBACK it sends.
  const sub = box.spawn(tools.mosquitto_sub!, [
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-t',
    't',
    '-C',
    '1',
    '-W',
    '15',
  ])
  await ready(sub, 'mosquitto_sub', async () => /Sending SUBACK to/.test(server.output()), 10_000)
  ok(
    await run(tools.mosquitto_pub!, ['-h', '127.0.0.1', '-p', String(port), '-t', 't', '-m', 'hello']),
    'mosquitto_pub',
  )
  await sub.exited
  assert.equal(sub.proc.exitCode, 0, sub.output())
  const lines = sub.output().split('\n')
  assert.ok(lines.includes('hello'), `mosquitto_sub did not print the message:\n${sub.output()}`)
  const status = await proxyStatus(relay, 'mqtt')
  assert.equal(status.total_connections, 2)
})
