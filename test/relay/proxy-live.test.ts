/**
 * Live proxy management on a real relay and agent: enable/disable/update with clients connected, port
 * conflicts, source rules, bulk delete, roles, cross-field validation, metrics and the agent's allowlist.
 */
import assert from 'node:assert/strict'
import dgram from 'node:dgram'
import { once } from 'node:events'
import net from 'node:net'
import { type TestContext, test } from 'node:test'
import {
  connect,
  echoServer,
  eventually,
  freePort,
  login,
  type ProxyStatus,
  readAll,
  startTestRelay,
  startTunnel,
  type TestRelay,
  tcpServer,
} from '../e2e/harness.ts'

interface ProxyView {
  id: string
  protocol: string
  enabled: boolean
  source: Record<string, unknown>
  target: Record<string, unknown>
  status: ProxyStatus
}

interface ErrorBody {
  error: { code: string; message: string }
}

/** A tcp-iotmp profile to 127.0.0.1:targetPort behind agent `gw`, listening on 127.0.0.1:sourcePort. */
function iotmpProfile(
  id: string,
  sourcePort: number,
  targetPort: number,
  source: Record<string, unknown> = {},
) {
  return {
    id,
    protocol: 'tcp-iotmp',
    enabled: true,
    source: { port: sourcePort, address: '127.0.0.1', ...source },
    target: { type: 'device', user: 'admin', device: 'gw', address: '127.0.0.1', port: targetPort },
  }
}

async function create(relay: TestRelay, profile: unknown): Promise<ProxyView> {
  const res = await relay.api<ProxyView>('POST', '/v1/server/proxies', profile)
  assert.equal(res.status, 201, JSON.stringify(res.body))
  return res.body
}

async function put(relay: TestRelay, profile: { id: string; [field: string]: unknown }): Promise<ProxyView> {
  const res = await relay.api<ProxyView>('PUT', `/v1/server/proxies/${profile.id}`, profile)
  assert.equal(res.status, 200, JSON.stringify(res.body))
  return res.body
}

async function status(relay: TestRelay, id: string): Promise<ProxyStatus> {
  const res = await relay.api<ProxyView>('GET', `/v1/server/proxies/${id}`)
  assert.equal(res.status, 200, JSON.stringify(res.body))
  return res.body.status
}

/** Asserts `{error: {code, message}}` with `status` and a message matching `message`. */
function assertError(res: { status: number; body: unknown }, code: number, message: RegExp): void {
  assert.equal(res.status, code, JSON.stringify(res.body))
  const { error } = res.body as ErrorBody
  assert.equal(typeof error?.code, 'string')
  assert.match(error.message, message)
}

/** A server that answers every chunk with `<tag>:<chunk>` and ends when the client ends. */
function taggedServer(t: TestContext, tag: string): Promise<number> {
  return tcpServer(t, (socket) => {
    socket.on('data', (d: Buffer) => socket.write(`${tag}:${d}`))
    socket.on('end', () => socket.end())
  })
}

/** Writes `text` on an open socket and resolves with the next `expectedLength` bytes it receives. */
function exchange(socket: net.Socket, text: string, expectedLength: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = ''
    const onData = (d: Buffer) => {
      got += d.toString()
      if (got.length >= expectedLength) {
        cleanup()
        resolve(got)
      }
    }
    const onClose = () => {
      cleanup()
      reject(new Error(`socket closed after ${JSON.stringify(got)}`))
    }
    const cleanup = () => {
      socket.off('data', onData)
      socket.off('close', onClose)
    }
    socket.on('data', onData)
    socket.once('close', onClose)
    socket.write(text)
  })
}

/** Resolves with the error code of a connection attempt to 127.0.0.1:port (undefined when it connects). */
function connectError(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(undefined)
    })
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code))
  })
}

/** Opens a client on `port` and resolves once it is closed by the far end, with what it read. */
async function refusedClient(port: number): Promise<string> {
  const socket = await connect(port)
  socket.write('anyone there?')
  return (await readAll(socket)).data.toString()
}

async function echoThrough(port: number, text: string): Promise<string> {
  const socket = await connect(port)
  const reply = readAll(socket)
  socket.end(text)
  return (await reply).data.toString()
}

test('disabling a profile (PUT enabled:false) closes its live connections and its listener', async (t) => {
  const target = await echoServer(t)
  const { relay } = await startTunnel(t, [`127.0.0.1:${target}`])
  const port = await freePort()
  const profile = iotmpProfile('live', port, target)
  await create(relay, profile)
  const client = await connect(port)
  const closed = readAll(client)
  assert.equal(await exchange(client, 'hello', 5), 'hello')
  assert.equal((await status(relay, 'live')).active_connections, 1)

  const view = await put(relay, { ...profile, enabled: false })
  assert.equal(view.enabled, false)
  assert.equal(view.status.listening, false)
  const { data } = await closed
  assert.equal(data.toString(), 'hello', 'the client connection is closed, nothing more arrives')
  assert.equal(await connectError(port), 'ECONNREFUSED')
  await eventually(async () => (await status(relay, 'live')).active_connections === 0, 5000, 'active 0')

  // Enabling again opens the same port.
  const enabled = await put(relay, profile)
  assert.equal(enabled.status.listening, true)
  assert.equal(enabled.status.port, port)
  assert.equal(await echoThrough(port, 'again'), 'again')
  assert.equal((await status(relay, 'live')).total_connections, 2)
})

test('PUT changing only the target keeps the listener and the live connection', async (t) => {
  const a = await taggedServer(t, 'A')
  const b = await taggedServer(t, 'B')
  const { relay } = await startTunnel(t, [`127.0.0.1:${a}`, `127.0.0.1:${b}`])
  const port = await freePort()
  const profile = iotmpProfile('retarget', port, a)
  await create(relay, profile)
  const first = await connect(port)
  t.after(() => first.destroy())
  assert.equal(await exchange(first, 'x', 3), 'A:x')

  const view = await put(relay, iotmpProfile('retarget', port, b))
  assert.equal(view.status.listening, true)
  assert.equal(view.status.port, port)
  assert.equal(view.target.port, b)
  // The existing connection still talks to A; a new one goes to B.
  assert.equal(await exchange(first, 'y', 3), 'A:y')
  const second = await connect(port)
  t.after(() => second.destroy())
  assert.equal(await exchange(second, 'z', 3), 'B:z')
  const now = await status(relay, 'retarget')
  assert.equal(now.active_connections, 2)
  assert.equal(now.total_connections, 2)
})

test('PUT that keeps source {port: 0} keeps the OS-chosen port and the live connection', async (t) => {
  const target = await echoServer(t)
  const { relay } = await startTunnel(t, [`127.0.0.1:${target}`])
  const profile = iotmpProfile('anyport', 0, target)
  const port = (await create(relay, profile)).status.port!
  const client = await connect(port)
  t.after(() => client.destroy())
  assert.equal(await exchange(client, 'x', 1), 'x')
  const view = await put(relay, { ...profile, description: 'only the description changes' })
  assert.equal(view.status.port, port, 'the bound port stays')
  assert.equal(await exchange(client, 'y', 1), 'y')
})

test('PUT changing source.port moves the listener: old port refuses, new one works', async (t) => {
  const target = await echoServer(t)
  const { relay } = await startTunnel(t, [`127.0.0.1:${target}`])
  const oldPort = await freePort()
  await create(relay, iotmpProfile('mover', oldPort, target))
  assert.equal(await echoThrough(oldPort, 'before'), 'before')
  const newPort = await freePort()
  const view = await put(relay, iotmpProfile('mover', newPort, target))
  assert.equal(view.status.listening, true)
  assert.equal(view.status.port, newPort)
  assert.equal(await connectError(oldPort), 'ECONNREFUSED')
  assert.equal(await echoThrough(newPort, 'after'), 'after')
  assert.equal((await status(relay, 'mover')).total_connections, 2, 'stats survive the move')
})

test('port conflict between two profiles: 409 naming the port; the second is saved with status.error', async (t) => {
  const target = await echoServer(t)
  const { relay } = await startTunnel(t, [`127.0.0.1:${target}`])
  const port = await freePort()
  await create(relay, iotmpProfile('first', port, target))
  const res = await relay.api('POST', '/v1/server/proxies', iotmpProfile('second', port, target))
  assertError(res, 409, new RegExp(`port ${port}`))

  const list = (await relay.api<ProxyView[]>('GET', '/v1/server/proxies')).body
  const second = list.find((p) => p.id === 'second')
  assert.ok(second, 'the conflicting profile is saved')
  assert.equal(second.status.listening, false)
  assert.match(second.status.error ?? '', new RegExp(`port ${port} is already in use`))
  const first = list.find((p) => p.id === 'first')
  assert.equal(first?.status.listening, true)
  assert.equal(first?.status.error, undefined)
  // Nothing else is disturbed: the first profile still serves.
  assert.equal(await echoThrough(port, 'still here'), 'still here')

  // Once the port is free, re-applying the second profile works.
  assert.equal((await relay.api('DELETE', '/v1/server/proxies/first')).status, 204)
  const view = await put(relay, iotmpProfile('second', port, target))
  assert.equal(view.status.listening, true)
  assert.equal(view.status.error, undefined)
  assert.equal(await echoThrough(port, 'second'), 'second')
})

test('source.allow refuses a client outside the CIDRs', async (t) => {
  const target = await echoServer(t)
  const { relay } = await startTunnel(t, [`127.0.0.1:${target}`])
  const view = await create(relay, iotmpProfile('allow', 0, target, { allow: ['10.0.0.0/8'] }))
  const port = view.status.port!
  assert.equal(await refusedClient(port), '', 'no bytes reach or leave a refused client')
  const now = await status(relay, 'allow')
  assert.equal(now.rejected_connections, 1)
  assert.equal(now.total_connections, 0)
  assert.equal(now.active_connections, 0)
  assert.match(now.last_error?.message ?? '', /127\.0\.0\.1 is not in source\.allow/)

  // Allowing loopback (live update, same binding) admits the next client.
  await put(relay, iotmpProfile('allow', port, target, { allow: ['10.0.0.0/8', '127.0.0.0/8'] }))
  assert.equal(await echoThrough(port, 'admitted'), 'admitted')
})

test('maxConnections: 1 refuses a second concurrent client', async (t) => {
  const target = await echoServer(t)
  const { relay } = await startTunnel(t, [`127.0.0.1:${target}`])
  const view = await create(relay, iotmpProfile('max', 0, target, { maxConnections: 1 }))
  const port = view.status.port!
  const first = await connect(port)
  const firstDone = readAll(first)
  assert.equal(await exchange(first, 'one', 3), 'one')

  assert.equal(await refusedClient(port), '')
  const now = await status(relay, 'max')
  assert.equal(now.rejected_connections, 1)
  assert.equal(now.active_connections, 1)
  assert.match(now.last_error?.message ?? '', /maxConnections \(1\) reached/)

  // The first still works; once it is gone, a new client is admitted.
  assert.equal(await exchange(first, 'two', 3), 'two')
  first.end()
  await firstDone
  await eventually(async () => (await status(relay, 'max')).active_connections === 0, 5000, 'active 0')
  assert.equal(await echoThrough(port, 'three'), 'three')
})

test('DELETE /v1/server/proxies with ids deletes several and lists the missing', async (t) => {
  const relay = await startTestRelay(t)
  const ports: number[] = []
  for (const id of ['a', 'b', 'c']) {
    const view = await create(relay, {
      id,
      protocol: 'tcp',
      source: { port: 0, address: '127.0.0.1' },
      target: { type: 'host', address: '127.0.0.1', port: 9 },
    })
    ports.push(view.status.port!)
  }
  const res = await relay.api<{ deleted: string[]; not_found: string[] }>('DELETE', '/v1/server/proxies', {
    ids: ['a', 'b', 'missing'],
  })
  assert.equal(res.status, 200, JSON.stringify(res.body))
  assert.deepEqual(res.body, { deleted: ['a', 'b'], not_found: ['missing'] })
  const left = (await relay.api<ProxyView[]>('GET', '/v1/server/proxies')).body.map((p) => p.id)
  assert.deepEqual(left, ['c'])
  // Deleted profiles' listeners are closed; the remaining one is untouched.
  assert.equal(await connectError(ports[0]!), 'ECONNREFUSED')
  assert.equal(await connectError(ports[1]!), 'ECONNREFUSED')
  assert.equal(await connectError(ports[2]!), undefined)
})

test('a user role gets 403 on every proxies route', async (t) => {
  const relay = await startTestRelay(t)
  const created = await relay.api('POST', '/v1/users', {
    username: 'bob',
    password: 'bob-password',
    role: 'user',
  })
  assert.equal(created.status, 201, JSON.stringify(created.body))
  const token = (await login(relay, 'bob', 'bob-password')).access_token
  const profile = {
    id: 'p',
    protocol: 'tcp',
    source: { port: 0, address: '127.0.0.1' },
    target: { type: 'host', address: '127.0.0.1', port: 9 },
  }
  const calls: Array<[string, string, unknown?]> = [
    ['GET', '/v1/server/proxies'],
    ['POST', '/v1/server/proxies', profile],
    ['DELETE', '/v1/server/proxies', { ids: ['p'] }],
    ['GET', '/v1/server/proxies/p'],
    ['PUT', '/v1/server/proxies/p', profile],
    ['DELETE', '/v1/server/proxies/p'],
  ]
  for (const [method, path, body] of calls) {
    const res = await relay.api(method, path, body, token)
    assertError(res, 403, /admin/)
  }
  assert.deepEqual((await relay.api('GET', '/v1/server/proxies')).body, [], 'nothing was created')
})

test('cross-field validation errors are 400 and name the field', async (t) => {
  const relay = await startTestRelay(t, { plugins: { grafana: { address: '127.0.0.1' } } })
  const post = (body: unknown) => relay.api('POST', '/v1/server/proxies', body)
  const source = { port: 0, address: '127.0.0.1' }
  const device = { type: 'device', user: 'admin', device: 'gw', address: '127.0.0.1', port: 22 }
  const host = { type: 'host', address: '127.0.0.1', port: 22 }

  assertError(await post({ id: 'x1', protocol: 'tcp', source, target: device }), 400, /body\/target\/type/)
  assertError(
    await post({ id: 'x2', protocol: 'tcp-iotmp', source, target: host }),
    400,
    /body\/target\/type/,
  )
  assertError(
    await post({ id: 'x3', protocol: 'udp-iotmp', source, target: host }),
    400,
    /body\/target\/type/,
  )
  assertError(
    await post({ id: 'x4', protocol: 'udp', source, target: { ...host, tls: true } }),
    400,
    /body\/target\/tls/,
  )
  assertError(
    await post({ id: 'x5', protocol: 'udp-iotmp', source, target: { ...device, tls: true } }),
    400,
    /body\/target\/tls/,
  )
  assertError(
    await post({
      id: 'x6',
      protocol: 'tcp',
      source,
      target: { type: 'plugin', plugin: 'nodered', port: 1880 },
    }),
    400,
    /body\/target\/plugin nodered .*configured: grafana/,
  )
  assertError(
    await post({ id: 'x7', protocol: 'tcp', source: { ...source, allow: ['10.0.0.0/33'] }, target: host }),
    400,
    /body\/source\/allow\/0/,
  )
  // The same rules hold on PUT.
  const good = await create(relay, { id: 'ok', protocol: 'tcp', source, target: host })
  assertError(
    await relay.api('PUT', '/v1/server/proxies/ok', { ...good, status: undefined, target: device }),
    400,
    /body\/target\/type/,
  )
  const ids = (await relay.api<ProxyView[]>('GET', '/v1/server/proxies')).body.map((p) => p.id)
  assert.deepEqual(ids, ['ok'], 'rejected profiles are not saved')
})

test('GET /metrics exposes per-proxy counters that match the status', async (t) => {
  const target = await echoServer(t)
  const { relay } = await startTunnel(t, [`127.0.0.1:${target}`])
  const port = (await create(relay, iotmpProfile('metered', 0, target))).status.port!
  assert.equal(await echoThrough(port, 'one'), 'one')
  assert.equal(await echoThrough(port, 'two'), 'two')
  await eventually(async () => (await status(relay, 'metered')).active_connections === 0, 5000, 'active 0')
  const now = await status(relay, 'metered')
  assert.equal(now.total_connections, 2)

  const res = await fetch(`${relay.relay.url}/metrics`)
  assert.equal(res.status, 200)
  const text = await res.text()
  const sample = (name: string) => {
    const m = new RegExp(`^${name}\\{proxy="metered",protocol="tcp-iotmp"\\} (\\d+)$`, 'm').exec(text)
    assert.ok(m, `${name} for proxy metered missing from /metrics`)
    return Number(m[1])
  }
  assert.equal(sample('tether_proxy_connections_total'), now.total_connections)
  assert.equal(sample('tether_proxy_active_connections'), now.active_connections)
  assert.equal(sample('tether_proxy_received_bytes_total'), now.rx_bytes)
  assert.equal(sample('tether_proxy_sent_bytes_total'), now.tx_bytes)
  assert.equal(sample('tether_proxy_listening'), 1)
  assert.match(text, /^tether_agents_connected 1$/m)
})

test("the device view shows the agent's allowlist and counts its refused dials", async (t) => {
  const target = await echoServer(t)
  const forbidden = await freePort()
  const allow = [`127.0.0.1:${target}`, 'localhost:22']
  const { relay } = await startTunnel(t, allow)
  type Device = { agent?: { allow: string[]; refusals: number } }
  const before = await relay.api<Device>('GET', '/v1/users/admin/devices/gw')
  assert.equal(before.status, 200)
  assert.deepEqual(before.body.agent?.allow, allow)
  assert.equal(before.body.agent?.refusals, 0)

  const port = (await create(relay, iotmpProfile('forbidden', 0, forbidden))).status.port!
  assert.equal(await refusedClient(port), '')
  const now = await status(relay, 'forbidden')
  assert.equal(now.rejected_connections, 1)
  assert.match(now.last_error?.message ?? '', /not in the agent's allowlist/)

  const after = await relay.api<Device>('GET', '/v1/users/admin/devices/gw')
  assert.deepEqual(after.body.agent?.allow, allow)
  assert.equal(after.body.agent?.refusals, 1)
})

test('UDP: a burst while the tunnel opens is queued up to a limit; every datagram is delivered or counted as dropped', async (t) => {
  const target = dgram.createSocket('udp4')
  target.bind(0, '127.0.0.1')
  await once(target, 'listening')
  t.after(() => target.close())
  let delivered = 0
  target.on('message', () => delivered++)
  const targetPort = target.address().port
  const { relay } = await startTunnel(t, [`127.0.0.1:${targetPort}`])
  const view = await create(relay, {
    id: 'burst',
    protocol: 'udp-iotmp',
    enabled: true,
    source: { port: 0, address: '127.0.0.1' },
    target: { type: 'device', user: 'admin', device: 'gw', address: '127.0.0.1', port: targetPort },
  })
  const client = dgram.createSocket('udp4')
  t.after(() => client.close())
  const SENT = 2000
  const SIZE = 8
  // All sent before the first datagram's stream to the agent can open: the relay must queue or drop, not block.
  await Promise.all(
    Array.from({ length: SENT }, (_, i) => {
      const datagram = Buffer.from(String(i).padStart(SIZE, '0'))
      return new Promise<void>((resolve) =>
        client.send(datagram, view.status.port!, '127.0.0.1', () => resolve()),
      )
    }),
  )
  let final: ProxyStatus | undefined
  await eventually(
    async () => {
      final = await status(relay, 'burst')
      return final.rx_bytes === SENT * SIZE && delivered + final.dropped_datagrams === SENT
    },
    10_000,
    'every datagram delivered to the target or counted as dropped',
  )
  assert.ok(final!.dropped_datagrams > 0, 'a burst larger than the queue drops some')
  assert.ok(delivered >= 64, 'the queued ones are delivered once the stream is open')
})
