/** ThingsBoard converters: Decoder/Encoder function bodies and ThingsBoard's helper functions. */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { ConverterEngine, type ConverterError } from '../../converters/index.ts'
import { fixture, inline } from './fixtures/scripts.ts'

const engine = new ConverterEngine({ isolates: 2 })
after(() => engine.close())

const utf8 = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'))

test("ThingsBoard's documented uplink decoder runs unchanged", async () => {
  const { output } = await engine.run(fixture('thingsboard', 'thingsboard-decoder-docs'), 'Decoder', {
    payload: utf8('{"temperature": 42}'),
    metadata: { integrationName: 'HTTP integration' },
  })
  assert.deepEqual(output, {
    deviceName: 'Device A',
    deviceType: 'thermostat',
    customerName: 'customer',
    groupName: 'thermostat devices',
    attributes: { model: 'Model A', serialNumber: 'SN111', integrationName: 'HTTP integration' },
    telemetry: { temperature: 42, humidity: 80, rawData: '{"temperature": 42}' },
  })
})

test('a hex reading in a JSON payload: parseInt of hex slices, telemetry with ts and values', async () => {
  const payload = utf8(
    JSON.stringify({
      deviceName: 'Sensor A',
      deviceType: 'temperature-sensor',
      ts: 1690000000000,
      value: '0x4BFF9C',
    }),
  )
  const { output } = await engine.run(fixture('thingsboard', 'thingsboard-decoder-hex'), 'Decoder', {
    payload,
    metadata: {},
  })
  assert.deepEqual(output, {
    deviceName: 'Sensor A',
    deviceType: 'temperature-sensor',
    telemetry: { ts: 1690000000000, values: { battery: 75, temperature: -10 } },
  })
})

test("ThingsBoard's documented downlink encoder runs unchanged", async () => {
  const { output } = await engine.run(fixture('thingsboard', 'thingsboard-encoder-docs'), 'Encoder', {
    msg: { temperatureUploadFrequency: 60, humidityUploadFrequency: 30 },
    metadata: { ss_serialNumber: 'SN-001', deviceType: 'thermostat', deviceName: 'Device A' },
    msgType: 'ATTRIBUTES_UPDATED',
    integrationMetadata: {},
  })
  assert.deepEqual(output, {
    contentType: 'JSON',
    data: '{"tempFreq":60,"humFreq":30,"devSerialNumber":"SN-001"}',
    metadata: { topic: 'thermostat/Device A/upload' },
  })
})

test('Decoder arguments: payload a plain array of byte values, metadata as given; Encoder gets all four', async () => {
  const decoder = inline(
    'thingsboard',
    'return { isArray: Array.isArray(payload), payload: payload, metadata: metadata, self: this === globalThis }',
  )
  const decoded = await engine.run(decoder, 'Decoder', {
    payload: new Uint8Array([1, 2, 255]),
    metadata: { a: 'b' },
  })
  assert.deepEqual(decoded.output, { isArray: true, payload: [1, 2, 255], metadata: { a: 'b' }, self: true })
  const encoder = inline('thingsboard', 'return [msg, metadata, msgType, integrationMetadata]')
  const encoded = await engine.run(encoder, 'Encoder', {
    msg: { x: 1 },
    metadata: { m: '1' },
    msgType: 'POST_TELEMETRY_REQUEST',
    integrationMetadata: { i: '2' },
  })
  assert.deepEqual(encoded.output, [{ x: 1 }, { m: '1' }, 'POST_TELEMETRY_REQUEST', { i: '2' }])
})

test('the global helpers: decodeToString decodes UTF-8, decodeToJson parses it, btoa and atob', async () => {
  const helpers = inline(
    'thingsboard',
    `return {
      text: decodeToString(payload),
      json: decodeToJson([123, 34, 107, 34, 58, 49, 125]),
      invalid: decodeToString([0x61, 0xff, 0x62, 0xc3]),
      b64: btoa('hello'),
      binary: atob('aGVsbG8='),
      roundTrip: atob(btoa('\\u00ff\\u0000a')),
      spaced: atob(' aGk= '),
    }`,
  )
  const { output } = await engine.run(helpers, 'Decoder', { payload: utf8('héllo €𝄞'), metadata: {} })
  assert.deepEqual(output, {
    text: 'héllo €𝄞',
    json: { k: 1 },
    invalid: 'a\ufffdb\ufffd',
    b64: 'aGVsbG8=',
    binary: 'hello',
    roundTrip: '\u00ff\u0000a',
    spaced: 'hi',
  })
  const bad = inline('thingsboard', "return btoa('€')")
  await assert.rejects(engine.run(bad, 'Decoder', { payload: [], metadata: {} }), (err: ConverterError) => {
    assert.equal(err.code, 'script')
    assert.match(err.message, /InvalidCharacterError/)
    return true
  })
})

test('errors report the line in the body as written: a throw, a bad JSON payload, a syntax error', async () => {
  const thrower = inline('thingsboard', "var a = 1;\nvar b = 2;\nthrow new Error('bad frame ' + a);")
  await assert.rejects(
    engine.run(thrower, 'Decoder', { payload: [], metadata: {} }),
    (err: ConverterError) => {
      assert.equal(err.code, 'script')
      assert.equal(err.message, 'Error: bad frame 1 (line 3)')
      return true
    },
  )
  const json = inline('thingsboard', '\nvar data = decodeToJson(payload);\nreturn data;')
  await assert.rejects(
    engine.run(json, 'Decoder', { payload: utf8('not json'), metadata: {} }),
    (err: ConverterError) => {
      assert.equal(err.code, 'script')
      assert.match(err.message, /^SyntaxError: .*JSON.* \(line 2\)$/)
      return true
    },
  )
  const syntax = inline('thingsboard', 'var a = 1;\nvar = 2;\nreturn a;')
  await assert.rejects(
    engine.run(syntax, 'Decoder', { payload: [], metadata: {} }),
    (err: ConverterError) => {
      assert.equal(err.code, 'syntax')
      assert.equal(err.message, "SyntaxError: Unexpected token '=' (line 2)")
      return true
    },
  )
})

test('compile checks a body up front; the parameter names of each function are in scope', async () => {
  await assert.rejects(engine.compile(inline('thingsboard', 'return {')), { code: 'syntax' })
  await engine.compile(inline('thingsboard', 'return { ok: true }'))
  // `let msg` is legal in a Decoder body (no `msg` parameter) but not in an Encoder body.
  const letMsg = inline('thingsboard', 'let msg = 1; return msg')
  await engine.compile(letMsg, 'Decoder')
  await assert.rejects(engine.compile(letMsg, 'Encoder'), { code: 'syntax' })
  assert.deepEqual((await engine.run(letMsg, 'Decoder', { payload: [], metadata: {} })).output, 1)
})
