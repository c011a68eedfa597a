/**
 * The Tether portal path: a relay and an agent (`cli/tether.mjs`) as separate child processes, device
 * `bench-gw`, an `http-iotmp` profile `web` for the device web server, and a portal session cookie obtained
 * the way a browser gets one (signed link → 302 with Set-Cookie).
 */
import type { ChildProcess } from 'node:child_process'
import http from 'node:http'
import { makeTempDir, stopChildren } from './processes.ts'
import { BENCH_DEVICE, explain, nodeArgsFrom, startRelayAndAgent } from './tether-path.ts'

const PROFILE = 'web'

export interface TetherPortal {
  relayPort: number
  /** `<label>.portal.localhost:<relayPort>`: the Host a browser sends to the portal. */
  host: string
  /** `tether_portal=…`: the session cookie. */
  cookie: string
  label: string
  relayPid: number
  agentPid: number
  logs: { relay: string; agent: string }
  /** The live status of the portal's profile (request and byte counters, last error). */
  profileStatus: () => Promise<Record<string, unknown> | undefined>
  stop: () => Promise<void>
}

export interface SimpleResponse {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

/** One GET to 127.0.0.1:`port` with the given headers (Host included), bounded by a timeout. */
export function getWithHost(
  port: number,
  urlPath: string,
  headers: Record<string, string>,
  timeoutMs = 10_000,
): Promise<SimpleResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: urlPath, method: 'GET', headers, agent: false, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        )
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} on :${port}: timed out`)))
    req.on('error', reject)
    req.end()
  })
}

/**
 * Starts relay and agent, creates profile `web` (http-iotmp) to 127.0.0.1:`devicePort` on the agent's side
 * and opens a portal session. Node arguments: BENCH_NODE_ARGS for both processes, BENCH_RELAY_NODE_ARGS and
 * BENCH_AGENT_NODE_ARGS for one of them (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`).
 */
export async function startTetherPortal(devicePort: number): Promise<TetherPortal> {
  const dir = makeTempDir('portal')
  const procs: ChildProcess[] = []
  const stop = () => stopChildren(procs)
  try {
    const common = nodeArgsFrom('BENCH_NODE_ARGS')
    const { port, call, expect, relay, agent, logs } = await startRelayAndAgent({
      dir,
      procs,
      tls: false,
      allow: `127.0.0.1:${devicePort}`,
      relayNodeArgs: [...common, ...nodeArgsFrom('BENCH_RELAY_NODE_ARGS')],
      agentNodeArgs: [...common, ...nodeArgsFrom('BENCH_AGENT_NODE_ARGS')],
    })

    const profileRes = await call('POST', '/v1/server/proxies', {
      id: PROFILE,
      protocol: 'http-iotmp',
      source: { port: 0 },
      target: { type: 'device', user: 'admin', device: BENCH_DEVICE, address: '127.0.0.1', port: devicePort },
    })
    const profile = expect(profileRes, [200, 201], 'POST /v1/server/proxies (web, http-iotmp)')
    const label = (profile.status as { portal?: { label?: string } } | undefined)?.portal?.label
    if (!label)
      throw explain(`profile web has no status.portal.label: ${profileRes.text}`, undefined, logs.relay)
    const host = `${label}.portal.localhost:${port}`

    // A signed link, spent like a browser does: 302 with the session cookie.
    const linkRes = await call(
      'POST',
      `/v1/users/admin/devices/${BENCH_DEVICE}/proxies/${PROFILE}/portal`,
      {},
    )
    const link = new URL(String(expect(linkRes, [200, 201], 'POST …/proxies/web/portal').url))
    const opened = await getWithHost(port, link.pathname + link.search, { host: link.host })
    const cookie = (opened.headers['set-cookie'] ?? [])
      .find((c) => c.startsWith('tether_portal='))
      ?.split(';')[0]
    if (opened.status !== 302 || !cookie) {
      const body = opened.body.toString('utf8').slice(0, 300)
      throw explain(
        `opening the signed link answered ${opened.status} (no cookie): ${body}`,
        undefined,
        logs.relay,
      )
    }
    const profileStatus = async () => {
      const res = await call('GET', `/v1/server/proxies/${PROFILE}`)
      return res.status === 200 ? (res.body as { status?: Record<string, unknown> }).status : undefined
    }
    return {
      relayPort: port,
      host,
      cookie,
      label,
      relayPid: relay.pid!,
      agentPid: agent.pid!,
      logs,
      profileStatus,
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}
