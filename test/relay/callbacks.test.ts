/** HTTP devices and their callbacks over real HTTP (Thinger-compatible paths and token). */
import assert from 'node:assert/strict'
import { EventEmitter, once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { seenRecently } from '../../relay/devices/index.ts'
import type { DeviceRecord } from '../../relay/devices/schemas.ts'
import {
  createAgentDevice,
  eventually,
  login,
  startTestAgent,
  startTestRelay,
  type TestRelay,
} from '../e2e/harness.ts'

interface Overview {
  url: string
  token: string
  authorization: string
  url_with_token: string
  curl: string
  example_body: unknown
  settings: { actions: Record<string, string | null>; properties: { timeout: number } }
}

interface Stats {
  connected: boolean
  last_seen_ts?: number
  total: { messages: number; rx_bytes: number; tx_bytes: number; ignored: number }
  daily: Array<{ day: string; messages: number; rx_bytes: number; tx_bytes: number }>
}

/** Creates HTTP device `id` for the admin and returns its callback overview. */
async function httpDevice(relay: TestRelay, id: string): Promise<Overview> {
  const created = await relay.api<{ credential?: string; type: string }>('POST', '/v1/users/admin/devices', {
    device: id,
    type: 'http',
    name: `HTTP ${id}`,
  })
  assert.equal(created.status, 201)
  assert.equal(created.body.credential, undefined, 'HTTP devices have no agent credential')
  return (await relay.api<Overview>('GET', `/v3/users/admin/devices/${id}/callback`)).body
}

/** POSTs raw `body` to a callback URL like a device would. */
async function post(url: string, token: string | undefined, body: string, type = 'application/json') {
  const res = await fetch(url, {
    method: 'POST',
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': type },
    body,
  })
  return { status: res.status, text: await res.text(), type: res.headers.get('content-type') }
}

function jwtPayload(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString())
}

test('the callback overview gives URL, Thinger token, header form, cURL example and settings', async (t) => {
  const relay = await startTestRelay(t)
  const o = await httpDevice(relay, 'sensor')
  assert.equal(o.url, `${relay.relay.url}/v3/users/admin/devices/sensor/callback/data`)
  assert.deepEqual(
    { jti: jwtPayload(o.token).jti, usr: jwtPayload(o.token).usr },
    { jti: 'DeviceCallback_sensor', usr: 'admin' },
  )
  assert.equal(o.authorization, `Bearer ${o.token}`)
  assert.equal(o.url_with_token, `${o.url}?authorization=${o.token}`)
  assert.match(
    o.curl,
    /^curl -X POST '.+\/callback\/data' -H 'Authorization: Bearer .+' -H 'Content-Type: application\/json' -d '\{/,
  )
  assert.deepEqual(o.settings, { actions: {}, properties: { timeout: 10 } })
  // The example itself works as printed.
  assert.equal((await post(o.url, o.token, JSON.stringify(o.example_body))).status, 200)
  const agent = await relay.api('GET', '/v3/users/admin/devices/nope/callback')
  assert.equal(agent.status, 404)
})

test('tokens: header or query accepted; wrong, revoked and other-device tokens get 401', async (t) => {
  const relay = await startTestRelay(t)
  const a = await httpDevice(relay, 'a')
  const b = await httpDevice(relay, 'b')
  assert.equal((await post(a.url, a.token, '{"x":1}')).status, 200)
  assert.equal((await post(a.url_with_token, undefined, '{"x":1}')).status, 200)
  assert.equal((await post(a.url, undefined, '{"x":1}')).status, 401)
  assert.equal((await post(a.url, 'not.a.token', '{"x":1}')).status, 401)
  assert.equal((await post(a.url, b.token, '{"x":1}')).status, 401, "device b's token does not open device a")
  assert.equal(
    (await post(a.url, relay.token, '{"x":1}')).status,
    401,
    'a user access token is not a callback token',
  )

  const rotated = await relay.api<Overview>('POST', '/v3/users/admin/devices/a/callback/token')
  assert.equal(rotated.status, 200)
  assert.notEqual(rotated.body.token, a.token)
  assert.equal((await post(a.url, a.token, '{"x":1}')).status, 401, 'the old token is revoked')
  assert.equal((await post(a.url, rotated.body.token, '{"x":1}')).status, 200)
})

test('set_property and send_property: the body is stored and the response carries the property', async (t) => {
  const relay = await startTestRelay(t)
  const o = await httpDevice(relay, 'meter')
  const changes: unknown[] = []
  relay.relay.properties.on('changed', (e) => changes.push(e.value))

  // send_property alone, unset: an empty 200; then set by the API, it comes back on POST and on GET.
  await relay.api('PUT', '/v3/users/admin/devices/meter/callback', { actions: { send_property: 'config' } })
  const empty = await post(o.url, o.token, '{"reading":1}')
  assert.deepEqual([empty.status, empty.text], [200, ''])
  await relay.api('PUT', '/v3/users/admin/devices/meter/properties/config', { value: { interval: 60 } })
  const answer = await post(o.url, o.token, '{"reading":2}')
  assert.deepEqual([answer.status, JSON.parse(answer.text)], [200, { interval: 60 }])
  const got = await fetch(o.url, { headers: { authorization: `Bearer ${o.token}` } })
  assert.deepEqual(await got.json(), { interval: 60 })

  // set_property alone, then both on the same property: the device gets back what it sent.
  const put = await relay.api<{ actions: unknown }>('PUT', '/v3/users/admin/devices/meter/callback', {
    actions: { set_property: 'last', send_property: null },
  })
  assert.deepEqual(put.body.actions, { send_property: null, set_property: 'last' })
  assert.equal((await post(o.url, o.token, '[{"v":1},{"v":2}]')).text, '')
  const last = await relay.api<{ value: unknown; updated_ts: number }>(
    'GET',
    '/v3/users/admin/devices/meter/properties/last',
  )
  assert.deepEqual(last.body.value, [{ v: 1 }, { v: 2 }])
  await relay.api('PUT', '/v3/users/admin/devices/meter/callback', { actions: { send_property: 'last' } })
  assert.deepEqual(JSON.parse((await post(o.url, o.token, '{"echo":true}')).text), { echo: true })
  assert.deepEqual(changes.at(-1), { echo: true }, 'property changes are in-process events')
})

test('a body that is not JSON is answered 200, stores nothing and counts as ignored', async (t) => {
  const relay = await startTestRelay(t)
  const o = await httpDevice(relay, 'legacy')
  await relay.api('PUT', '/v3/users/admin/devices/legacy/callback', { actions: { set_property: 'raw' } })
  for (const [body, type] of [
    ['temperature=21', 'application/x-www-form-urlencoded'],
    ['{broken', 'application/json'],
    ['42', 'application/json'],
  ]) {
    const res = await post(o.url, o.token, body as string, type)
    assert.deepEqual([res.status, res.text], [200, ''], body)
  }
  assert.equal((await relay.api('GET', '/v3/users/admin/devices/legacy/properties/raw')).status, 404)
  const stats = await relay.api<Stats>('GET', '/v3/users/admin/devices/legacy/stats')
  assert.equal(stats.body.total.ignored, 3)
  assert.equal(stats.body.total.messages, 3)
})

test('stats: connected while callbacks arrive, bytes, and 30 days of daily transmission', async (t) => {
  const relay = await startTestRelay(t)
  const o = await httpDevice(relay, 'daily')
  const before = await relay.api<{ connection: { active: boolean } }>('GET', '/v1/users/admin/devices/daily')
  assert.equal(before.body.connection.active, false)
  const payload = '{"t":1}'
  await post(o.url, o.token, payload)
  await post(o.url, o.token, payload)
  const device = await relay.api<{ connection: { active: boolean; ts: number } }>(
    'GET',
    '/v1/users/admin/devices/daily',
  )
  assert.equal(device.body.connection.active, true)
  const stats = (await relay.api<Stats>('GET', '/v3/users/admin/devices/daily/stats')).body
  assert.equal(stats.connected, true)
  assert.equal(stats.total.messages, 2)
  assert.equal(stats.total.rx_bytes, 2 * payload.length)
  assert.equal(stats.daily.length, 30)
  const today = new Date().toISOString().slice(0, 10)
  assert.deepEqual(stats.daily.at(-1), { day: today, messages: 2, rx_bytes: 2 * payload.length, tx_bytes: 0 })
  assert.ok(stats.daily.slice(0, -1).every((d) => d.messages === 0))
})

test('connection timeout: connected within the timeout after the last callback, disconnected after', () => {
  const record = {
    type: 'http',
    callback: { token_id: 'x', actions: {}, properties: { timeout: 5 } },
  } as DeviceRecord
  const seen = 1_000_000
  assert.equal(seenRecently(record, seen, seen + 4 * 60_000), true)
  assert.equal(seenRecently(record, seen, seen + 5 * 60_000), false)
  assert.equal(seenRecently(record, undefined, seen), false)
  const defaults = { ...record, callback: { token_id: 'x', actions: {}, properties: {} } }
  assert.equal(seenRecently(defaults, seen, seen + 9 * 60_000), true)
  assert.equal(seenRecently(defaults, seen, seen + 10 * 60_000), false)
})

test('agents get daily transmission counters too', async (t) => {
  const relay = await startTestRelay(t, { statsFlushMs: 100 })
  const credential = await createAgentDevice(relay, 'gw')
  const { agent } = await startTestAgent(t, {
    relay: relay.relay.iotmpUrl,
    device: 'gw',
    credential,
    allow: [],
  })
  await agent.connected()
  const stats = (await eventually(async () => {
    const s = (await relay.api<Stats>('GET', '/v3/users/admin/devices/gw/stats')).body
    return s.total.messages > 0 ? s : undefined
  })) as Stats
  assert.ok(stats.total.rx_bytes > 0)
  assert.equal(stats.daily.at(-1)?.messages, stats.total.messages)
})

test('properties: CRUD with Thinger paths, merge PATCH, bulk delete, and another user sees 404', async (t) => {
  const relay = await startTestRelay(t)
  await httpDevice(relay, 'dev')
  const base = '/v3/users/admin/devices/dev/properties'
  assert.equal((await relay.api('POST', base, { property: 'cfg', value: { a: 1, b: { c: 2 } } })).status, 201)
  assert.equal((await relay.api('POST', base, { property: 'cfg', value: 1 })).status, 409)
  assert.equal((await relay.api('POST', base, { property: 'bad/id', value: 1 })).status, 400)
  const patched = await relay.api<{ value: unknown }>('PATCH', `${base}/cfg`, {
    value: { b: { c: null, d: 3 } },
  })
  assert.deepEqual(patched.body.value, { a: 1, b: { d: 3 } })
  await relay.api('PUT', `${base}/other`, { value: 'x' })
  const list = await relay.api<Array<{ property: string; updated_ts: number }>>('GET', base)
  assert.deepEqual(
    list.body.map((p) => p.property),
    ['cfg', 'other'],
  )
  assert.ok(list.body.every((p) => p.updated_ts > 0))
  const bulk = await relay.api('DELETE', base, { properties: ['other', 'ghost'] })
  assert.deepEqual(bulk.body, { deleted: ['other'], not_found: ['ghost'] })
  assert.equal((await relay.api('DELETE', `${base}/cfg`)).status, 204)
  assert.equal((await relay.api('GET', `${base}/cfg`)).status, 404)

  await relay.api('POST', '/v1/users', { username: 'bob', password: 'bob-password-1', role: 'user' })
  const bob = (await login(relay, 'bob', 'bob-password-1')).access_token
  for (const [method, path] of [
    ['GET', base],
    ['PUT', `${base}/x`],
    ['GET', '/v3/users/admin/devices/dev/callback'],
    ['POST', '/v3/users/admin/devices/dev/callback/token'],
    ['GET', '/v3/users/admin/devices/dev/stats'],
  ] as const) {
    const res = await relay.api(method, path, method === 'PUT' ? { value: 1 } : undefined, bob)
    assert.equal(res.status, 404, `${method} ${path}`)
  }
})

test('write_bucket stores each element as a point, ts honoured; call_endpoint never delays the device', async (t) => {
  const relay = await startTestRelay(t)
  const o = await httpDevice(relay, 'logger')
  // An endpoint target that holds every request until the test lets it go.
  const received: unknown[] = []
  const held: http.ServerResponse[] = []
  const arrived = new EventEmitter()
  const target = http.createServer((req, res) => {
    let text = ''
    req.on('data', (c) => {
      text += c
    })
    req.on('end', () => {
      received.push(JSON.parse(text))
      held.push(res)
      arrived.emit('request')
    })
  })
  await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    for (const res of held) res.end()
    target.close()
  })
  const port = (target.address() as AddressInfo).port
  assert.equal((await relay.api('POST', '/v1/users/admin/buckets', { bucket: 'readings' })).status, 201)
  const endpoint = await relay.api('POST', '/v1/users/admin/endpoints', {
    endpoint: 'forward',
    type: 'http',
    config: { method: 'POST', url: `http://127.0.0.1:${port}/in` },
  })
  assert.equal(endpoint.status, 201, JSON.stringify(endpoint.body))
  const missing = await relay.api<{ error: { message: string } }>(
    'PUT',
    '/v3/users/admin/devices/logger/callback',
    {
      actions: { write_bucket: 'nope' },
    },
  )
  assert.equal(missing.status, 400)
  assert.match(missing.body.error.message, /body\/actions\/write_bucket: bucket nope does not exist/)
  await relay.api('PUT', '/v3/users/admin/devices/logger/callback', {
    actions: {
      write_bucket: 'readings',
      call_endpoint: 'forward',
      set_property: 'last',
      send_property: 'last',
    },
  })

  const body = [
    { ts: 1_700_000_000_000, temp: 20 },
    { ts: 1_700_000_001_000, temp: 21 },
  ]
  const first = arrivedOnce(arrived)
  const res = await post(o.url, o.token, JSON.stringify(body))
  // The device has its answer (the stored property) while the endpoint still holds the forwarded call.
  assert.equal(res.status, 200)
  assert.deepEqual(JSON.parse(res.text), body)
  await first
  assert.equal(held.length, 1)
  assert.deepEqual(received, [body])

  const points = await relay.api<Array<{ ts: number; val: unknown }>>(
    'GET',
    '/v1/users/admin/buckets/readings/data?sort=asc',
  )
  assert.deepEqual(points.body, [
    { ts: 1_700_000_000_000, val: { temp: 20 } },
    { ts: 1_700_000_001_000, val: { temp: 21 } },
  ])

  // A disabled bucket refuses the write, and the device is told.
  await relay.api('PUT', '/v1/users/admin/buckets/readings', { enabled: false })
  const refused = await post(o.url, o.token, '{"temp":22}')
  assert.equal(refused.status, 409)
  assert.match(refused.text, /disabled/)
})

function arrivedOnce(emitter: EventEmitter): Promise<unknown> {
  return once(emitter, 'request')
}
