/** Relay + agent + an http-iotmp profile for a device web server, and an HTTP client that speaks to portals. */
import http from 'node:http'
import type { TestContext } from 'node:test'
import type { RelayConfig } from '../../../relay/config.ts'
import { startTunnel, type TestAgent, type TestRelay } from '../harness.ts'

export interface PortalLinkBody {
  url: string
  origin: string
  url_expires_ts: number
  session: { id: string; expires_ts: number; label: string; frame_ancestor: string }
}

export interface TestPortal {
  relay: TestRelay
  agent: TestAgent
  label: string
  /** `label.portal.localhost:port`: the Host a browser sends. */
  host: string
  /** Asks the relay for a signed link (as the admin unless `token` is given). */
  link(body?: unknown, token?: string): Promise<{ status: number; body: PortalLinkBody }>
  /** Visits a fresh signed link and returns the session cookie (`name=value`). */
  session(body?: unknown): Promise<string>
}

export interface PortalSetup {
  devicePort: number
  id?: string
  address?: string
  tls?: boolean
  verify?: boolean
  preserveHost?: boolean
  allow?: string[]
  relayConfig?: Partial<RelayConfig>
}

export interface PortalResponse {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

/** One request to the relay's port with the given Host (Node does not resolve *.localhost by itself). */
export function portalRequest(
  relayPort: number,
  host: string,
  path: string,
  opts: { method?: string; headers?: http.OutgoingHttpHeaders; body?: Buffer | string } = {},
): Promise<PortalResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: relayPort,
        path,
        method: opts.method ?? 'GET',
        headers: { ...opts.headers, host },
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        )
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(opts.body)
  })
}

/** The `name=value` part of a Set-Cookie for `name`. */
export function cookieFrom(headers: http.IncomingHttpHeaders, name: string): string | undefined {
  for (const c of headers['set-cookie'] ?? []) if (c.startsWith(`${name}=`)) return c.split(';')[0]
  return undefined
}

/** Starts relay and agent (allowing the device's address) and creates profile `web` for the device app. */
export async function startPortal(t: TestContext, setup: PortalSetup): Promise<TestPortal> {
  const address = setup.address ?? '127.0.0.1'
  const { relay, agent } = await startTunnel(
    t,
    setup.allow ?? [`${address}:${setup.devicePort}`],
    setup.relayConfig,
  )
  const id = setup.id ?? 'web'
  const res = await relay.api<{ status: { portal?: { label: string } } }>('POST', '/v1/server/proxies', {
    id,
    protocol: 'http-iotmp',
    source: { port: 0 },
    target: {
      type: 'device',
      user: 'admin',
      device: 'gw',
      address,
      port: setup.devicePort,
      ...(setup.tls ? { tls: true, verify: setup.verify ?? true } : {}),
    },
    ...(setup.preserveHost ? { portal: { preserveHost: true } } : {}),
  })
  if (res.status !== 201) throw new Error(`proxy create failed: ${res.status} ${JSON.stringify(res.body)}`)
  const label = res.body.status.portal?.label as string
  const host = `${label}.portal.localhost:${relay.relay.port}`
  const link = (body: unknown = {}, token?: string) =>
    relay.api<PortalLinkBody>('POST', `/v1/users/admin/devices/gw/proxies/${id}/portal`, body, token)
  const session = async (body?: unknown) => {
    const { status, body: l } = await link(body)
    if (status !== 201) throw new Error(`portal link failed: ${status} ${JSON.stringify(l)}`)
    const url = new URL(l.url)
    const res = await portalRequest(relay.relay.port, url.host, url.pathname + url.search)
    const cookie = cookieFrom(res.headers, 'tether_portal')
    if (res.status !== 302 || !cookie) throw new Error(`portal open failed: ${res.status}`)
    return cookie
  }
  return { relay, agent, label, host, link, session }
}
