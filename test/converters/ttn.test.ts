/** TTN Device Repository codecs: decodeUplink, encodeDownlink and decodeDownlink, in ES5 and ES2015+. */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { ConverterEngine, type ConverterError } from '../../converters/index.ts'
import { fixture, inline } from './fixtures/scripts.ts'

const engine = new ConverterEngine({ isolates: 2 })
after(() => engine.close())

const lht65 = fixture('ttn', 'ttn-dragino-lht65')
const em300 = fixture('ttn', 'ttn-milesight-em300-es2015')
const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s/g, ''), 'hex'))

test('ES5 codec (Dragino LHT65): the manual example uplink decodes', async () => {
  const { output, logs } = await engine.run(lht65, 'decodeUplink', {
    bytes: hex('CBF60B0D0376010ADD7FFF'),
    fPort: 2,
    recvTime: new Date('2024-05-01T10:00:00Z'),
  })
  assert.deepEqual(output, {
    data: {
      BatV: 3.062,
      Bat_status: 'Good',
      TempC_SHT: 28.29,
      Hum_SHT: 88.6,
      Ext_sensor: 'Temperature Sensor',
      TempC_DS: 27.81,
    },
    warnings: [],
    errors: [],
  })
  assert.deepEqual(logs, [])
})

test('ES5 codec: negative temperatures, other external sensors, and a short frame reported in errors', async () => {
  const cold = await engine.run(lht65, 'decodeUplink', {
    bytes: hex('8BB8 FF38 01F4 05 0190 7FFF 00'),
    fPort: 2,
  })
  assert.deepEqual(cold.output, {
    data: {
      BatV: 3.0,
      Bat_status: 'OK',
      TempC_SHT: -2,
      Hum_SHT: 50,
      Work_mode: 'Illumination Sensor',
      ILL_lx: 400,
    },
    warnings: [],
    errors: [],
  })
  const short = await engine.run(lht65, 'decodeUplink', { bytes: hex('CBF6'), fPort: 2 })
  assert.deepEqual(short.output, { errors: ['LHT65 uplinks are 11 bytes, got 2'] })
})

test('ES5 codec: encodeDownlink and decodeDownlink round-trip the transmit interval', async () => {
  const encoded = await engine.run(lht65, 'encodeDownlink', { data: { tdcSeconds: 1200 } })
  assert.deepEqual(encoded.output, { bytes: [0x01, 0x00, 0x04, 0xb0], fPort: 2, warnings: [] })
  const decoded = await engine.run(lht65, 'decodeDownlink', { bytes: [0x01, 0x00, 0x04, 0xb0], fPort: 2 })
  assert.deepEqual(decoded.output, { data: { tdcSeconds: 1200 } })
  const invalid = await engine.run(lht65, 'encodeDownlink', { data: { tdcSeconds: 0 } })
  assert.deepEqual(invalid.output, { errors: ['tdcSeconds must be a number of seconds from 1 to 16777215'] })
})

test('ES2015 codec (Milesight EM300-TH style, top-level const arrow function and a class): uplink', async () => {
  const { output } = await engine.run(em300, 'decodeUplink', {
    bytes: hex('01755C 03673401 046865'),
    fPort: 85,
  })
  assert.deepEqual(output, { data: { battery: 92, temperature: 30.8, humidity: 50.5 }, warnings: [] })
  const below = await engine.run(em300, 'decodeUplink', { bytes: hex('0367 9cff 0999 00'), fPort: 85 })
  assert.deepEqual(below.output, { data: { temperature: -10 }, warnings: ['unknown channel 0x09 type 0x99'] })
})

test('ES2015 codec: downlinks, including errors returned as data', async () => {
  const encoded = await engine.run(em300, 'encodeDownlink', { data: { interval: 1200 }, fPort: 85 })
  assert.deepEqual(encoded.output, { bytes: [0xff, 0x03, 0xb0, 0x04], fPort: 85 })
  const decoded = await engine.run(em300, 'decodeDownlink', { bytes: [0xff, 0x03, 0xb0, 0x04], fPort: 85 })
  assert.deepEqual(decoded.output, { data: { interval: 1200 } })
  const bad = await engine.run(em300, 'encodeDownlink', { data: { interval: 5 } })
  assert.deepEqual(bad.output, { errors: ['interval must be whole seconds from 60 to 64800, got 5'] })
  const unknown = await engine.run(em300, 'decodeDownlink', { bytes: [0x01, 0x02], fPort: 10 })
  assert.deepEqual(unknown.output, { errors: ['unknown command 0x01 0x02 on port 10'] })
})

test('the input: bytes a plain array, fPort as given, recvTime a Date', async () => {
  const probe = inline(
    'ttn',
    `function decodeUplink(input) {
      return { data: { isArray: Array.isArray(input.bytes), bytes: input.bytes, fPort: input.fPort,
        isDate: input.recvTime instanceof Date, recvTime: input.recvTime.toISOString() } }
    }`,
  )
  const { output } = await engine.run(probe, 'decodeUplink', {
    bytes: new Uint8Array([0, 127, 255]),
    fPort: 7,
    recvTime: new Date('2024-05-01T10:00:00.123Z'),
  })
  assert.deepEqual(output, {
    data: {
      isArray: true,
      bytes: [0, 127, 255],
      fPort: 7,
      isDate: true,
      recvTime: '2024-05-01T10:00:00.123Z',
    },
  })
})

test('a codec without the function called: missing-function; a function of another dialect: input', async () => {
  const uplinkOnly = inline('ttn', 'function decodeUplink(input) { return { data: {} } }')
  await assert.rejects(engine.run(uplinkOnly, 'encodeDownlink', { data: {} }), (err: ConverterError) => {
    assert.equal(err.code, 'missing-function')
    assert.match(err.message, /encodeDownlink/)
    return true
  })
  await assert.rejects(engine.run(uplinkOnly, 'Decoder', { payload: new Uint8Array() }), { code: 'input' })
  await assert.rejects(engine.run(uplinkOnly, 'decodeUplink', { bytes: [1, 256] }), { code: 'input' })
  await assert.rejects(engine.run(uplinkOnly, 'decodeUplink', { bytes: [1], fPort: 300 }), { code: 'input' })
})
