/**
 * The Tether paths: a relay and an agent (`cli/tether.mjs`) as child processes, a registered device
 * `bench-gw`, and proxy profiles on the relay. All Tether-specific commands and API calls are here.
 */
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { type HttpResponse, request } from './http.ts'
import { freePort, freeTcpUdpPort, tryConnect } from './ports.ts'
import { isRunning, makeTempDir, run, spawnChild, stopChildren, tailOf } from './processes.ts'
import type { PathSetup, ProxyStatus, Targets } from './types.ts'
import { waitFor } from './wait.ts'

const TETHER_CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'tether.mjs')

/** The device the agent of every Tether path registers as. */
export const BENCH_DEVICE = 'bench-gw'

export type ProxyProtocol = 'tcp' | 'udp' | 'tcp-iotmp' | 'udp-iotmp'

/** Handle on a running relay + agent pair with one tcp-iotmp proxy. */
export interface TetherHandle {
  /** Relay port the `bench` proxy listens on (tunnelled to `targetPort`). */
  proxyPort: number
  /**
   * Creates another proxy to `targetPort` (on the device for *-iotmp, else on 127.0.0.1 seen from the relay;
   * default tcp-iotmp) on `sourcePort` (default: a free one); returns its listening port.
   */
  addProxy: (
    id: string,
    targetPort: number,
    opts?: { protocol?: ProxyProtocol; sourcePort?: number },
  ) => Promise<number>
  /** The live `status` of proxy `id` (undefined when the relay does not answer 200). */
  proxyStatus: (id: string) => Promise<ProxyStatus | undefined>
  relayPid: number
  agentPid: number
  info: Record<string, unknown>
  stop: () => Promise<void>
}

/** An error carrying the tail of the process's log (the temp dir is removed at the end). */
export function explain(what: string, err: unknown, logFile: string): Error {
  const why = err === undefined ? '' : `: ${err instanceof Error ? err.message : String(err)}`
  return new Error(`${what}${why}\n--- ${path.basename(logFile)} ---\n${tailOf(logFile)}`)
}

/** Extra node arguments from a space-separated environment variable (e.g. BENCH_NODE_ARGS). */
export const nodeArgsFrom = (name: string): string[] => (process.env[name] ?? '').split(' ').filter(Boolean)

/** Writes a throw-away self-signed certificate for localhost and 127.0.0.1; returns the file names. */
function makeCert(dir: string): { certFile: string; keyFile: string } {
  const certFile = path.join(dir, 'cert.pem')
  const keyFile = path.join(dir, 'key.pem')
  // biome-ignore format: one option per line
  run('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
    '-keyout', keyFile, '-out', certFile,
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ])
  return { certFile, keyFile }
}

/** A relay and the agent of device `bench-gw`, connected, with an admin API client. */
export interface RelayAgent {
  port: number
  /** `http(s)://127.0.0.1:port`. */
  api: string
  /** The URL the agent connects to. */
  relayUrl: string
  /** An API call as admin. */
  call: (method: string, route: string, body?: unknown) => Promise<HttpResponse>
  /** The body of `res` when its status is one of `ok`; otherwise an error with the relay log's tail. */
  expect: (res: HttpResponse, ok: number[], what: string) => Record<string, unknown>
  relay: ChildProcess
  agent: ChildProcess
  logs: { relay: string; agent: string }
}

/**
 * Starts a relay (`--tls-cert/--tls-key` with a throw-away certificate when `tls`) on a free port with data in
 * `dir`, signs in as admin, registers device `bench-gw` and starts its agent with `--allow allow`; resolves once
 * the relay reports the agent's connection active. Both processes are pushed onto `procs` as they start, so
 * the caller stops them on any failure.
 */
export async function startRelayAndAgent(opts: {
  dir: string
  procs: ChildProcess[]
  tls: boolean
  allow: string
  relayNodeArgs: string[]
  agentNodeArgs: string[]
}): Promise<RelayAgent> {
  const { dir, procs, tls } = opts
  const password = randomBytes(18).toString('base64url')
  const port = await freePort()
  const relayArgs = [
    ...opts.relayNodeArgs,
    TETHER_CLI,
    'relay',
    '--host',
    '127.0.0.1',
    '--port',
    String(port),
  ]
  relayArgs.push('--data-dir', path.join(dir, 'relay-data'))
  let ca: string | undefined
  let certFile: string | undefined
  if (tls) {
    const cert = makeCert(dir)
    certFile = cert.certFile
    ca = readFileSync(certFile, 'utf8')
    relayArgs.push('--tls-cert', cert.certFile, '--tls-key', cert.keyFile)
  }
  const api = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`
  const relayLog = path.join(dir, 'relay.log')
  const relay = spawnChild('tether-relay', process.execPath, relayArgs, {
    logFile: relayLog,
    env: { ...process.env, TETHER_ADMIN_PASSWORD: password },
  })
  procs.push(relay)
  try {
    await waitFor('relay /healthz', async () => {
      if (!isRunning(relay)) throw new Error(`relay exited with ${relay.exitCode ?? relay.signalCode}`)
      return (await request('GET', `${api}/healthz`, { ca, timeoutMs: 2000 })).status === 200
    })
  } catch (err) {
    throw explain('relay did not become healthy', err, relayLog)
  }

  const expect = (res: HttpResponse, ok: number[], what: string) => {
    if (!ok.includes(res.status))
      throw explain(`${what} answered ${res.status} ${res.text}`, undefined, relayLog)
    return res.body as Record<string, unknown>
  }
  const tokenRes = await request('POST', `${api}/oauth/token`, {
    ca,
    body: { grant_type: 'password', username: 'admin', password },
  })
  const token = String(expect(tokenRes, [200], 'POST /oauth/token').access_token)
  const call = (method: string, route: string, body?: unknown) =>
    request(method, `${api}${route}`, { ca, token, body })

  const deviceRes = await call('POST', '/v1/users/admin/devices', { device: BENCH_DEVICE, type: 'agent' })
  const credential = String(expect(deviceRes, [200, 201], 'POST /v1/users/admin/devices').credential)

  const relayUrl = tls ? `wss://localhost:${port}` : `ws://127.0.0.1:${port}`
  // biome-ignore format: one option per line
  const agentArgs = [
    ...opts.agentNodeArgs, TETHER_CLI, 'agent',
    '--relay', relayUrl,
    '--user', 'admin',
    '--device', BENCH_DEVICE,
    '--credential', credential,
    '--allow', opts.allow,
    '--state-dir', path.join(dir, 'agent-state'),
  ]
  if (certFile) agentArgs.push('--ca', certFile)
  const agentLog = path.join(dir, 'agent.log')
  const agent = spawnChild('tether-agent', process.execPath, agentArgs, { logFile: agentLog })
  procs.push(agent)
  try {
    await waitFor('agent connection.active', async () => {
      if (!isRunning(agent)) throw new Error(`agent exited with ${agent.exitCode ?? agent.signalCode}`)
      const res = await call('GET', `/v1/users/admin/devices/${BENCH_DEVICE}`)
      const connection = (res.body as { connection?: { active?: boolean } } | undefined)?.connection
      return res.status === 200 && connection?.active === true
    })
  } catch (err) {
    throw explain('agent did not connect', err, agentLog)
  }
  return { port, api, relayUrl, call, expect, relay, agent, logs: { relay: relayLog, agent: agentLog } }
}

/**
 * Starts a Tether relay and agent as child processes, registers the device, and creates proxy `bench` to
 * `targetPort` on the agent's side.
 */
export async function startTether(opts: { tls: boolean; targetPort: number }): Promise<TetherHandle> {
  const dir = makeTempDir(opts.tls ? 'wss' : 'ws')
  const procs: ChildProcess[] = []
  const stop = () => stopChildren(procs)
  try {
    // BENCH_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") goes to the relay and agent processes.
    const nodeArgs = nodeArgsFrom('BENCH_NODE_ARGS')
    const { call, expect, relayUrl, api, relay, agent, logs } = await startRelayAndAgent({
      dir,
      procs,
      tls: opts.tls,
      allow: '127.0.0.1:*',
      relayNodeArgs: nodeArgs,
      agentNodeArgs: nodeArgs,
    })

    const addProxy: TetherHandle['addProxy'] = async (id, targetPort, proxyOpts = {}) => {
      const protocol = proxyOpts.protocol ?? 'tcp-iotmp'
      const sourcePort = proxyOpts.sourcePort ?? (await freePort())
      const tcp = protocol.startsWith('tcp')
      const target = protocol.endsWith('-iotmp')
        ? { type: 'device', user: 'admin', device: BENCH_DEVICE, address: '127.0.0.1', port: targetPort }
        : { type: 'host', address: '127.0.0.1', port: targetPort }
      const res = await call('POST', '/v1/server/proxies', {
        id,
        protocol,
        enabled: true,
        source: { port: sourcePort, address: '127.0.0.1' },
        target: tcp ? { ...target, tls: false } : target,
      })
      expect(res, [200, 201], `POST /v1/server/proxies (${id}, ${protocol})`)
      return sourcePort
    }
    const proxyStatus = async (id: string) => {
      const res = await call('GET', `/v1/server/proxies/${id}`)
      return res.status === 200 ? (res.body as { status?: ProxyStatus }).status : undefined
    }
    const proxyPort = await addProxy('bench', opts.targetPort)
    return {
      proxyPort,
      addProxy,
      proxyStatus,
      relayPid: relay.pid!,
      agentPid: agent.pid!,
      info: { relayUrl, api, logs },
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}

/**
 * Two profiles on one source port for an iperf3 UDP test (TCP control + datagrams) to `targetPort`: via the
 * relay alone (tcp + udp, host targets) or through the agent (tcp-iotmp + udp-iotmp, device targets).
 */
async function addUdpPair(tether: TetherHandle, idPrefix: string, targetPort: number, viaAgent: boolean) {
  const port = await freeTcpUdpPort()
  const [ctl, data]: ProxyProtocol[] = viaAgent ? ['tcp-iotmp', 'udp-iotmp'] : ['tcp', 'udp']
  await tether.addProxy(`${idPrefix}-ctl`, targetPort, { protocol: ctl, sourcePort: port })
  await tether.addProxy(idPrefix, targetPort, { protocol: data, sourcePort: port })
  return port
}

/** A Tether path (ws or wss) with proxies to both targets and, with `udp`, the UDP proxy pairs. */
export async function startTetherPath(tls: boolean, targets: Targets, udp = false): Promise<PathSetup> {
  const tether = await startTether({ tls, targetPort: targets.iperfPort })
  try {
    const echoPort = await tether.addProxy('bench-echo', targets.echoPort)
    await waitFor(`proxy bench-echo on :${echoPort}`, () => tryConnect(echoPort))
    const setup: PathSetup = {
      iperfPort: tether.proxyPort,
      echoPort,
      pids: { relay: tether.relayPid, agent: tether.agentPid },
      info: { relayUrl: tether.info.relayUrl },
      echoProxyId: 'bench-echo',
      proxyStatus: tether.proxyStatus,
      stop: tether.stop,
    }
    if (udp && targets.iperfUdpPort !== undefined) {
      const hostPort = await addUdpPair(tether, 'bench-udp-host', targets.iperfUdpPort, false)
      const agentPort = await addUdpPair(tether, 'bench-udp', targets.iperfUdpPort, true)
      setup.udp = [
        { via: 'udp', port: hostPort, proxyId: 'bench-udp-host' },
        { via: 'udp-iotmp', port: agentPort, proxyId: 'bench-udp' },
      ]
      setup.info = {
        ...setup.info,
        udpProxies: { 'bench-udp-host(-ctl)': hostPort, 'bench-udp(-ctl)': agentPort },
      }
    }
    return setup
  } catch (err) {
    await tether.stop()
    throw err
  }
}
