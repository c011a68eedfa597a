/** The converters API: CRUD with validation, the test tool (output, logs, timing) and debug events. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createUserWithToken, startTestRelay } from '../../e2e/harness.ts'
import { converter, integration, TB_ENCODER } from './helpers.ts'

const TTN_CODEC = `function decodeUplink(input) {
  console.log('port', input.fPort);
  return { data: { temperature: ((input.bytes[0] << 8) | input.bytes[1]) / 100, port: input.fPort } };
}
function encodeDownlink(input) { return { bytes: [input.data.led ? 1 : 0], fPort: 3 }; }`

interface TestResult {
  ok: boolean
  function: string
  output?: unknown
  error?: { code: string; message: string }
  logs: Array<{ level: string; message: string }>
  duration_ms: number
}

test('converters CRUD: create, read, list, update, delete; ids never change', async (t) => {
  const relay = await startTestRelay(t)
  await converter(relay, 'ttn1', 'ttn', 'uplink', TTN_CODEC)
  const got = await relay.api<Record<string, unknown>>('GET', '/v1/users/admin/converters/ttn1')
  assert.equal(got.status, 200)
  assert.deepEqual(
    {
      id: got.body.id,
      name: got.body.name,
      dialect: got.body.dialect,
      direction: got.body.direction,
      debug: got.body.debug,
    },
    { id: 'ttn1', name: 'ttn1', dialect: 'ttn', direction: 'uplink', debug: false },
  )
  assert.equal(
    (
      await relay.api('POST', '/v1/users/admin/converters', {
        id: 'ttn1',
        dialect: 'ttn',
        direction: 'uplink',
        script: 'x',
      })
    ).status,
    409,
  )
  const put = await relay.api<{ name: string; updated_ts: number }>(
    'PUT',
    '/v1/users/admin/converters/ttn1',
    {
      name: 'Renamed',
      dialect: 'ttn',
      direction: 'uplink',
      script: TTN_CODEC.replace('/ 100', '/ 10'),
    },
  )
  assert.equal(put.status, 200)
  assert.equal(put.body.name, 'Renamed')
  const renamed = await relay.api('PUT', '/v1/users/admin/converters/ttn1', {
    id: 'other',
    dialect: 'ttn',
    direction: 'uplink',
    script: 'x',
  })
  assert.equal(renamed.status, 400)
  const list = await relay.api<Array<{ id: string }>>('GET', '/v1/users/admin/converters')
  assert.deepEqual(
    list.body.map((c) => c.id),
    ['ttn1'],
  )
  // The new version runs, not the cached old one.
  const run = await relay.api<TestResult>('POST', '/v1/users/admin/converters/ttn1/test', {
    payload_hex: '0a28',
    fPort: 2,
  })
  assert.deepEqual(run.body.output, { data: { temperature: 260, port: 2 } })
  assert.equal((await relay.api('DELETE', '/v1/users/admin/converters/ttn1')).status, 204)
  assert.equal((await relay.api('GET', '/v1/users/admin/converters/ttn1')).status, 404)
})

test('validation: bad dialect lists the allowed values; a syntax error is a 400 at save time', async (t) => {
  const relay = await startTestRelay(t)
  const bad = await relay.api<{ error: { message: string } }>('POST', '/v1/users/admin/converters', {
    id: 'x',
    dialect: 'lua',
    direction: 'uplink',
    script: 'return 1',
  })
  assert.equal(bad.status, 400)
  assert.match(bad.body.error.message, /thingsboard/)
  const syntax = await relay.api<{ error: { message: string } }>('POST', '/v1/users/admin/converters', {
    id: 'x',
    dialect: 'ttn',
    direction: 'uplink',
    script: 'function decodeUplink(input) { return {',
  })
  assert.equal(syntax.status, 400)
  assert.match(syntax.body.error.message, /script/)
  assert.equal((await relay.api('GET', '/v1/users/admin/converters/x')).status, 404, 'nothing saved')
})

test('test tool: output, captured console.log and timing; a failing script answers ok:false with its logs', async (t) => {
  const relay = await startTestRelay(t)
  await converter(relay, 'ttn1', 'ttn', 'uplink', TTN_CODEC)
  const ok = await relay.api<TestResult>('POST', '/v1/users/admin/converters/ttn1/test', {
    payload_hex: '0a28',
    fPort: 5,
  })
  assert.equal(ok.status, 200)
  assert.equal(ok.body.ok, true)
  assert.equal(ok.body.function, 'decodeUplink')
  assert.deepEqual(ok.body.output, { data: { temperature: 26, port: 5 } })
  assert.deepEqual(ok.body.logs, [{ level: 'log', message: 'port 5' }])
  assert.ok(ok.body.duration_ms >= 0)
  const down = await relay.api<TestResult>('POST', '/v1/users/admin/converters/ttn1/test', {
    function: 'encodeDownlink',
    data: { led: true },
  })
  assert.deepEqual(down.body.output, { bytes: [1], fPort: 3 })
  const wrongFn = await relay.api('POST', '/v1/users/admin/converters/ttn1/test', { function: 'Decoder' })
  assert.equal(wrongFn.status, 400)

  await converter(
    relay,
    'boom',
    'thingsboard',
    'uplink',
    'console.warn("about to fail"); throw new Error("no good")',
  )
  const failed = await relay.api<TestResult>('POST', '/v1/users/admin/converters/boom/test', {
    payload_text: 'x',
  })
  assert.equal(failed.status, 200)
  assert.equal(failed.body.ok, false)
  assert.equal(failed.body.error?.code, 'script')
  assert.match(failed.body.error?.message ?? '', /no good/)
  assert.deepEqual(failed.body.logs, [{ level: 'warn', message: 'about to fail' }])

  await converter(relay, 'enc', 'thingsboard', 'downlink', TB_ENCODER)
  const encoded = await relay.api<TestResult>('POST', '/v1/users/admin/converters/enc/test', {
    data: { temperatureUploadFrequency: 5, humidityUploadFrequency: 6 },
    metadata: { deviceName: 'D', deviceType: 'T', ss_serialNumber: 'SN' },
  })
  assert.deepEqual(encoded.body.output, {
    contentType: 'JSON',
    data: JSON.stringify({ tempFreq: 5, humFreq: 6, devSerialNumber: 'SN' }),
    metadata: { topic: 'T/D/upload' },
  })
})

test('debug events: kept only while debug is on; a converter in use cannot be deleted; users see only their own', async (t) => {
  const relay = await startTestRelay(t)
  await converter(relay, 'ttn1', 'ttn', 'uplink', TTN_CODEC, true)
  await relay.api('POST', '/v1/users/admin/converters/ttn1/test', { payload_hex: '0001' })
  await relay.api('POST', '/v1/users/admin/converters/ttn1/test', { payload_hex: 'zz' }) // 400: never runs
  const events = (
    await relay.api<Array<{ kind: string; in: unknown; out: unknown; duration_ms: number }>>(
      'GET',
      '/v1/users/admin/converters/ttn1/events',
    )
  ).body
  assert.equal(events.length, 1)
  assert.equal(events[0]?.kind, 'test')
  assert.deepEqual(events[0]?.out, { data: { temperature: 0.01, port: 1 } })

  await relay.api('PUT', '/v1/users/admin/converters/ttn1', {
    dialect: 'ttn',
    direction: 'uplink',
    script: TTN_CODEC,
    debug: false,
  })
  assert.deepEqual((await relay.api('GET', '/v1/users/admin/converters/ttn1/events')).body, [])

  await integration(relay, { id: 'i1', type: 'http', uplinkConverter: 'ttn1' })
  const del = await relay.api<{ error: { message: string } }>('DELETE', '/v1/users/admin/converters/ttn1')
  assert.equal(del.status, 409)
  assert.match(del.body.error.message, /integration i1/)
  const wrongDirection = await relay.api('POST', '/v1/users/admin/integrations', {
    id: 'i2',
    type: 'http',
    uplinkConverter: 'ttn1',
    downlinkConverter: 'ttn1',
  })
  assert.equal(wrongDirection.status, 400)

  const bob = await createUserWithToken(relay, 'bob')
  assert.equal((await relay.api('GET', '/v1/users/admin/converters/ttn1', undefined, bob.token)).status, 404)
  assert.deepEqual((await relay.api('GET', '/v1/users/bob/converters', undefined, bob.token)).body, [])
})
