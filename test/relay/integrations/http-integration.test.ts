/** The ThingsBoard-compatible HTTP integration over real HTTP: content types, security, provisioning, downlinks. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startTestRelay, type TestRelay } from '../../e2e/harness.ts'
import { converter, integration, points, TB_ENCODER, TB_HTTP_DECODER } from './helpers.ts'

/** A decoder that stores what reached it: payload text, bytes and selected metadata. */
const ECHO_DECODER = `
var text = decodeToString(payload);
return {
  deviceName: metadata.deviceName || 'echo',
  deviceType: 'probe',
  telemetry: { text: text, bytes: payload.length, first: payload[0], ct: metadata['Header:content-type'] || '',
    custom: metadata['Header:x-custom'] || '', suffix: metadata.suffix || '', site: metadata.site || '' }
};
function decodeToString(p) { return String.fromCharCode.apply(String, p); }`

async function setup(t: Parameters<typeof startTestRelay>[0], extra: Record<string, unknown> = {}) {
  const relay = await startTestRelay(t)
  await converter(relay, 'echo', 'thingsboard', 'uplink', ECHO_DECODER)
  const view = await integration(relay, {
    id: 'echo',
    type: 'http',
    uplinkConverter: 'echo',
    metadata: { site: 'plant-1' },
    ...extra,
  })
  const url = `${relay.relay.url}/api/v1/integrations/http/${view.http?.routingKey}`
  return { relay, url, view }
}

async function last(relay: TestRelay, bucket = 'echo') {
  const all = await points(relay, bucket)
  return all.at(-1)?.val as Record<string, unknown>
}

test('ThingsBoard documented decoder: a JSON uplink provisions the device with attributes and telemetry', async (t) => {
  const relay = await startTestRelay(t)
  await converter(relay, 'tb-http', 'thingsboard', 'uplink', TB_HTTP_DECODER)
  const view = await integration(relay, {
    id: 'tb',
    name: 'TB HTTP',
    type: 'http',
    uplinkConverter: 'tb-http',
  })
  assert.match(view.http?.routingKey ?? '', /^[A-Za-z0-9_-]{8,}$/)
  assert.equal(view.status.state, 'running')
  const body = {
    deviceName: 'Thermometer A',
    deviceType: 'thermostat',
    model: 'Model A',
    param2: 'SN-7',
    temperature: 42,
  }
  const res = await fetch(`${relay.relay.url}/api/v1/integrations/http/${view.http?.routingKey}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  assert.equal(res.status, 204)

  const id = 'Thermometer_A-' // sanitised name + hash
  const devices = (
    await relay.api<Array<{ device: string; name: string; type: string; integration?: unknown }>>(
      'GET',
      '/v1/users/admin/devices',
    )
  ).body
  const device = devices.find((d) => d.name === 'Thermometer A')
  assert.ok(device, 'device provisioned')
  assert.ok(device.device.startsWith(id))
  assert.equal(device.type, 'integration')
  assert.deepEqual(device.integration, { id: 'tb', deviceType: 'thermostat' })
  const props = (
    await relay.api<Array<{ property: string; value: unknown }>>(
      'GET',
      `/v3/users/admin/devices/${device.device}/properties`,
    )
  ).body
  assert.deepEqual(Object.fromEntries(props.map((p) => [p.property, p.value])), {
    model: 'Model A',
    serialNumber: 'SN-7',
  })
  const stored = await points(relay, device.device)
  assert.equal(stored.length, 1)
  assert.deepEqual(stored[0]?.val, { temperature: 42 })
  const status = (await relay.api<{ status: { uplinks: number } }>('GET', '/v1/users/admin/integrations/tb'))
    .body
  assert.equal(status.status.uplinks, 1)
})

test('a hex value with a timestamp becomes a point at that ts; customer and group memberships are created', async (t) => {
  const relay = await startTestRelay(t)
  // After ThingsBoard's documented hex example: battery and temperature packed in a hex string, with a ts.
  await converter(
    relay,
    'hex',
    'thingsboard',
    'uplink',
    `var data = decodeToJson(payload);
var hex = data.value;
var battery = parseInt(hex.substring(0, 2), 16);
var temperature = parseInt(hex.substring(2, 6), 16) / 10;
return {
  deviceName: data.deviceName, deviceType: 'sensor', customerName: 'Customer A', groupName: 'Sensors',
  telemetry: { ts: data.ts, values: { battery: battery, temperature: temperature } }
};`,
  )
  const view = await integration(relay, { id: 'hex', type: 'http', uplinkConverter: 'hex' })
  const ts = 1_700_000_000_000
  const res = await fetch(`${relay.relay.url}/api/v1/integrations/http/${view.http?.routingKey}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ deviceName: 'S1', value: '5A00FA', ts: String(ts) }),
  })
  assert.equal(res.status, 204)
  assert.deepEqual(await points(relay, 'S1'), [{ ts, val: { battery: 90, temperature: 25 } }])
  const groups = (
    await relay.api<Array<{ name: string; kind: string; members: unknown[] }>>(
      'GET',
      '/v1/users/admin/groups',
    )
  ).body
  assert.deepEqual(
    groups.map((g) => [g.name, g.kind, g.members]),
    [
      ['Customer A', 'customer', [{ type: 'device', id: 'S1' }]],
      ['Sensors', 'group', [{ type: 'device', id: 'S1' }]],
    ],
  )
})

test('content types reach the converter as ThingsBoard passes them, with headers, suffix and integration metadata', async (t) => {
  const { relay, url } = await setup(t)
  const send = async (path: string, init: RequestInit) => {
    const res = await fetch(url + path, init)
    assert.equal(res.status, 204, await res.text())
    return last(relay)
  }
  let v = await send('/sensors/7', {
    method: 'POST',
    headers: { 'content-type': 'text/plain', 'x-custom': 'abc' },
    body: 'hello',
  })
  assert.deepEqual(
    { text: v.text, ct: v.ct, custom: v.custom, suffix: v.suffix, site: v.site },
    { text: 'hello', ct: 'text/plain', custom: 'abc', suffix: 'sensors/7', site: 'plant-1' },
  )
  v = await send('', {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream' },
    body: new Uint8Array([0xff, 1, 2]),
  })
  assert.deepEqual([v.bytes, v.first], [3, 0xff])
  v = await send('', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"a":1}' })
  assert.equal(v.text, '{"a":1}')
  v = await send('', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'a=1&b=two',
  })
  assert.deepEqual(JSON.parse(v.text as string), { a: '1', b: 'two' })
  v = await send('?x=1&y=z', { method: 'GET' })
  assert.deepEqual(JSON.parse(v.text as string), { x: '1', y: 'z' })
  const form = new FormData()
  form.append('field', 'value')
  form.append('config', new Blob(['{"rate":5}'], { type: 'application/json' }), 'config.json')
  form.append('blob', new Blob([new Uint8Array([0, 159, 146, 150])]), 'raw.bin')
  v = await send('', { method: 'POST', body: form })
  assert.deepEqual(JSON.parse(v.text as string), { field: 'value', config: { rate: 5 }, blob: 'AJ+Slg==' })
})

test('security headers: a missing or wrong header is 403 and nothing is processed', async (t) => {
  const { relay, url } = await setup(t, {
    http: { security: { enabled: true, headers: { 'X-Api-Key': 's3cret' } } },
  })
  for (const headers of [{}, { 'x-api-key': 'wrong' }] as Array<Record<string, string>>) {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', ...headers },
      body: 'x',
    })
    assert.equal(res.status, 403)
  }
  assert.equal((await relay.api('GET', '/v1/users/admin/buckets/echo')).status, 404, 'nothing provisioned')
  const ok = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'text/plain', 'x-api-key': 's3cret' },
    body: 'x',
  })
  assert.equal(ok.status, 204)
  assert.equal((await points(relay, 'echo')).length, 1)
})

test('bad requests: unknown routing key 404, malformed JSON 400, converter failure 422 with an error event', async (t) => {
  const { relay, url } = await setup(t, { debug: true })
  assert.equal(
    (await fetch(`${relay.relay.url}/api/v1/integrations/http/nope-nope-nope`, { method: 'POST' })).status,
    404,
  )
  const bad = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"a":',
  })
  assert.equal(bad.status, 400)
  assert.match(((await bad.json()) as { error: { message: string } }).error.message, /not valid JSON/)

  await converter(relay, 'thrower', 'thingsboard', 'uplink', 'throw new Error("bad frame " + payload.length)')
  const view = await integration(relay, {
    id: 'thrower',
    type: 'http',
    uplinkConverter: 'thrower',
    debug: true,
  })
  const res = await fetch(`${relay.relay.url}/api/v1/integrations/http/${view.http?.routingKey}`, {
    method: 'POST',
    body: 'abc',
  })
  assert.equal(res.status, 422)
  assert.match(((await res.json()) as { error: { message: string } }).error.message, /bad frame 3/)
  const events = (
    await relay.api<Array<{ kind: string; error?: string }>>(
      'GET',
      '/v1/users/admin/integrations/thrower/events',
    )
  ).body
  assert.equal(events.length, 1)
  assert.match(events[0]?.error ?? '', /bad frame 3/)
  const status = (
    await relay.api<{ status: { errors: number; last_error?: { message: string } } }>(
      'GET',
      '/v1/users/admin/integrations/thrower',
    )
  ).body.status
  assert.equal(status.errors, 1)
  assert.match(status.last_error?.message ?? '', /bad frame/)
  // The other integration is unaffected.
  assert.equal((await fetch(url, { method: 'POST', body: 'still fine' })).status, 204)
})

test('disable and enable live; replaceNoContentToOk answers 200', async (t) => {
  const { relay, url } = await setup(t)
  assert.equal(
    (await relay.api('PATCH', '/v1/users/admin/integrations/echo', { enabled: false })).status,
    200,
  )
  assert.equal((await fetch(url, { method: 'POST', body: 'x' })).status, 404)
  const view = (
    await relay.api<{ http: Record<string, unknown> }>('GET', '/v1/users/admin/integrations/echo')
  ).body
  const { status: _s, created_ts: _c, updated_ts: _u, ...config } = view as unknown as Record<string, unknown>
  const put = await relay.api('PUT', '/v1/users/admin/integrations/echo', {
    ...config,
    enabled: true,
    http: { ...view.http, replaceNoContentToOk: true },
  })
  assert.equal(put.status, 200, JSON.stringify(put.body))
  const res = await fetch(url, { method: 'POST', body: 'x' })
  assert.equal(res.status, 200)
})

test('downlinks wait for the device’s next uplink, are answered once with their content type, then cleared', async (t) => {
  const relay = await startTestRelay(t)
  await converter(relay, 'tb-http', 'thingsboard', 'uplink', TB_HTTP_DECODER)
  await converter(relay, 'enc', 'thingsboard', 'downlink', TB_ENCODER, true)
  const view = await integration(relay, {
    id: 'tb',
    type: 'http',
    uplinkConverter: 'tb-http',
    downlinkConverter: 'enc',
    http: { downlinkQueueSize: 2 },
  })
  const url = `${relay.relay.url}/api/v1/integrations/http/${view.http?.routingKey}`
  const uplink = () =>
    fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        deviceName: 'T1',
        deviceType: 'thermostat',
        model: 'M',
        param2: 'SN-1',
        temperature: 20,
      }),
    })
  assert.equal((await uplink()).status, 204)

  // An RPC call is queued, not delivered: the device only talks HTTP.
  const rpc = await relay.api<{ status: string }>('POST', '/v1/users/admin/devices/T1/downlink', {
    temperatureUploadFrequency: 60,
    humidityUploadFrequency: 120,
  })
  assert.equal(rpc.status, 200, JSON.stringify(rpc.body))
  assert.equal(rpc.body.status, 'queued')
  const answer = await uplink()
  assert.equal(answer.status, 200)
  assert.equal(answer.headers.get('content-type'), 'application/json')
  assert.deepEqual(await answer.json(), { tempFreq: 60, humFreq: 120, devSerialNumber: 'SN-1' })
  assert.equal((await uplink()).status, 204, 'answered once, then cleared')

  // A property change by a user is an ATTRIBUTES_UPDATED downlink; updates merge into one answer.
  for (const [property, value] of [
    ['temperatureUploadFrequency', 30],
    ['humidityUploadFrequency', 90],
  ] as const) {
    const res = await relay.api('POST', '/v3/users/admin/devices/T1/properties', { property, value })
    assert.equal(res.status, 201, JSON.stringify(res.body))
  }
  await eventuallyPending(relay, 2)
  const merged = await uplink()
  assert.deepEqual(await merged.json(), { tempFreq: 30, humFreq: 90, devSerialNumber: 'SN-1' })

  // Attributes the uplink itself reports are not echoed back as downlinks.
  assert.equal((await uplink()).status, 204)

  // The queue is bounded: the oldest is dropped and counted.
  for (let i = 1; i <= 3; i++)
    await relay.api('POST', '/v1/users/admin/devices/T1/downlink', { temperatureUploadFrequency: i })
  const status = (
    await relay.api<{ status: { downlinks_pending: number; downlinks_dropped: number } }>(
      'GET',
      '/v1/users/admin/integrations/tb',
    )
  ).body.status
  assert.deepEqual([status.downlinks_pending, status.downlinks_dropped], [2, 1])
  const events = (await relay.api<Array<{ kind: string }>>('GET', '/v1/users/admin/converters/enc/events'))
    .body
  assert.ok(
    events.length >= 2 && events.every((e) => e.kind === 'downlink'),
    'debug converter keeps its calls',
  )
})

test('downlink API: devices not provisioned by an integration get 409', async (t) => {
  const relay = await startTestRelay(t)
  await relay.api('POST', '/v1/users/admin/devices', { device: 'plain', type: 'http' })
  const res = await relay.api<{ error: { message: string } }>(
    'POST',
    '/v1/users/admin/devices/plain/downlink',
    { a: 1 },
  )
  assert.equal(res.status, 409)
  assert.match(res.body.error.message, /not provisioned by an integration/)
  assert.equal((await relay.api('POST', '/v1/users/admin/devices/ghost/downlink', {})).status, 404)
})

/** Waits until the integration holds `n` pending downlinks (property events are handled asynchronously). */
async function eventuallyPending(relay: TestRelay, n: number) {
  for (let i = 0; i < 200; i++) {
    const s = (
      await relay.api<{ status: { downlinks_pending: number } }>('GET', '/v1/users/admin/integrations/tb')
    ).body.status
    if (s.downlinks_pending === n) return
    await new Promise((r) => setTimeout(r, 10))
  }
  assert.fail(`downlinks_pending never reached ${n}`)
}

test('ttn and thinger dialects behind an integration: plain data goes to the device the metadata names', async (t) => {
  const relay = await startTestRelay(t)
  await converter(
    relay,
    'codec',
    'ttn',
    'uplink',
    `function decodeUplink(input) {
  return { data: { temperature: ((input.bytes[0] << 8) | input.bytes[1]) / 100, port: input.fPort }, warnings: [] };
}`,
  )
  const ttn = await integration(relay, {
    id: 'lora',
    type: 'http',
    uplinkConverter: 'codec',
    metadata: { deviceName: 'lht65-1', fPort: '2' },
  })
  const sent = await fetch(`${relay.relay.url}/api/v1/integrations/http/${ttn.http?.routingKey}`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream' },
    body: new Uint8Array([0x0a, 0x28]),
  })
  assert.equal(sent.status, 204)
  assert.deepEqual(
    (await points(relay, 'lht65-1')).map((p) => p.val),
    [{ temperature: 26, port: 2 }],
  )

  // Thinger modules get parsed JSON; an object naming a device is used as is, a plain one goes to the integration.
  await converter(
    relay,
    'mod',
    'thinger',
    'uplink',
    `module.exports.uplink = function (payload) {
  if (payload.id) return { deviceName: payload.id, deviceType: 'meter', telemetry: { kwh: payload.kwh } };
  return { kwh: payload.kwh, raw: Buffer.from(JSON.stringify(payload)).toString('base64').length };
};`,
  )
  const thinger = await integration(relay, { id: 'meters', type: 'http', uplinkConverter: 'mod' })
  const url = `${relay.relay.url}/api/v1/integrations/http/${thinger.http?.routingKey}`
  for (const body of [{ id: 'meter-7', kwh: 12.5 }, { kwh: 3 }]) {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    assert.equal(res.status, 204)
  }
  assert.deepEqual(
    (await points(relay, 'meter-7')).map((p) => p.val),
    [{ kwh: 12.5 }],
  )
  assert.deepEqual(
    (await points(relay, 'meters')).map((p) => p.val),
    [{ kwh: 3, raw: 12 }],
  )
})
