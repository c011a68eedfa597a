/** Thinger plugin modules: module.exports.uplink/downlink with Node's Buffer (the `buffer` package). */
import assert from 'node:assert/strict'
import { after, test } from 'node:test'
import { ConverterEngine, type ConverterError } from '../../converters/index.ts'
import { fixture, inline } from './fixtures/scripts.ts'

const engine = new ConverterEngine({ isolates: 2 })
after(() => engine.close())

const plugin = fixture('thinger', 'thinger-sensor-plugin')

/** The uplink frame of the fixture, built with Node's own Buffer. */
function frame(): Buffer {
  const b = Buffer.alloc(23)
  b.writeUInt8(2, 0)
  b.writeInt16BE(-1234, 1)
  b.writeUInt32LE(101325, 3)
  b.writeFloatBE(0.75, 7)
  b.writeDoubleLE(1234.5678, 11)
  Buffer.from('deadbeef', 'hex').copy(b, 19)
  return Buffer.concat([b, Buffer.from('Kitchen ☕', 'utf8')])
}

test('uplink: a Uint8Array payload arrives as a Buffer; read methods, slice, subarray, toString', async () => {
  const bytes = frame()
  const { output } = await engine.run(plugin, 'uplink', { payload: new Uint8Array(bytes) })
  assert.deepEqual(output, {
    version: 2,
    temperature: -12.34,
    pressure: 101325,
    ratio: 0.75,
    energy: 1234.5678,
    serial: 'deadbeef',
    label: 'Kitchen ☕',
    length: bytes.length,
    base64: bytes.toString('base64'),
  })
})

test('uplink: a JSON payload arrives as is', async () => {
  const { output } = await engine.run(plugin, 'uplink', { payload: { temperature: 21.5, tags: ['a'] } })
  assert.deepEqual(output, { json: true, payload: { temperature: 21.5, tags: ['a'] } })
})

test('downlink: Buffer.alloc, write methods, Buffer.concat; a returned Buffer comes back as a Uint8Array', async () => {
  const { output } = await engine.run(plugin, 'downlink', {
    payload: { interval: 600, offset: -2, flags: 0x81, name: 'zone-1' },
  })
  assert.ok(output instanceof Uint8Array && !Buffer.isBuffer(output), 'a plain Uint8Array on the host')
  const expected = Buffer.alloc(8)
  expected.write('a501', 'hex')
  expected.writeUInt16BE(600, 2)
  expected.writeInt16LE(-2, 4)
  expected.writeUInt8(0x81, 6)
  let crc = 0
  for (const b of expected.subarray(0, 7)) crc ^= b
  expected[7] = crc
  assert.deepEqual(Buffer.from(output), Buffer.concat([expected, Buffer.from('zone-1')]))
})

test('Buffer encodings and helpers behave as in Node', async () => {
  const probe = inline(
    'thinger',
    `module.exports.uplink = function (payload) {
      const b = Buffer.from('héllo', 'utf8');
      return {
        isBuffer: Buffer.isBuffer(b) && !Buffer.isBuffer(new Uint8Array(1)),
        utf8Length: b.length,
        hex: Buffer.from('0a1B', 'hex')[1],
        base64: Buffer.from('aGk=', 'base64').toString(),
        toBase64: b.toString('base64'),
        toHex: b.toString('hex'),
        fromArray: Buffer.from([1, 2, 3]).readUInt16LE(1),
        u32be: Buffer.from([1, 2, 3, 4]).readUInt32BE(0),
        i8: Buffer.from([0xff]).readInt8(0),
        i32le: Buffer.from([0xfe, 0xff, 0xff, 0xff]).readInt32LE(0),
        floatLE: Buffer.from([0, 0, 0xc0, 0x3f]).readFloatLE(0),
        doubleBE: Buffer.from('3ff8000000000000', 'hex').readDoubleBE(0),
        index: b[1],
        equals: b.equals(Buffer.from('héllo')),
        json: JSON.parse(JSON.stringify(Buffer.from([7]))),
        nested: { raw: Buffer.from([9, 8]), view: new Uint8Array([1]), floats: new Float32Array([0.5]) },
      };
    };`,
  )
  const { output } = await engine.run(probe, 'uplink', { payload: null })
  assert.deepEqual(output, {
    isBuffer: true,
    utf8Length: 6,
    hex: 0x1b,
    base64: 'hi',
    toBase64: Buffer.from('héllo').toString('base64'),
    toHex: Buffer.from('héllo').toString('hex'),
    fromArray: 0x0302,
    u32be: 0x01020304,
    i8: -1,
    i32le: -2,
    floatLE: 1.5,
    doubleBE: 1.5,
    index: 0xc3,
    equals: true,
    json: { type: 'Buffer', data: [7] },
    nested: { raw: new Uint8Array([9, 8]), view: new Uint8Array([1]), floats: [0.5] },
  })
})

test('module.exports = {…} and exports.x = … both work; this is module.exports; top-level vars stay local', async () => {
  const assigned = inline(
    'thinger',
    `var counter = 41;
    function uplink(payload) { return { n: ++counter, same: this === module.exports, global: typeof globalThis.counter } }
    module.exports = { uplink: uplink, downlink: (p) => p * 2 };`,
  )
  assert.deepEqual((await engine.run(assigned, 'uplink', { payload: 1 })).output, {
    n: 42,
    same: true,
    global: 'undefined',
  })
  assert.equal((await engine.run(assigned, 'downlink', { payload: 21 })).output, 42)
  const viaExports = inline('thinger', 'exports.uplink = function (p) { return p.length; };')
  assert.equal((await engine.run(viaExports, 'uplink', { payload: new Uint8Array(5) })).output, 5)
})

test('a module without the function: missing-function; require is not there; errors give the line', async () => {
  const uplinkOnly = inline('thinger', 'module.exports.uplink = function (p) { return p; };')
  await assert.rejects(engine.run(uplinkOnly, 'downlink', { payload: {} }), { code: 'missing-function' })
  const requires = inline('thinger', "const fs = require('fs');\nmodule.exports.uplink = () => 1;")
  await assert.rejects(engine.compile(requires), (err: ConverterError) => {
    assert.equal(err.code, 'script')
    assert.equal(err.message, 'ReferenceError: require is not defined (line 1)')
    return true
  })
  const thrower = inline('thinger', 'module.exports.uplink = function (p) {\n  return p.readUInt8(10);\n};')
  await assert.rejects(
    engine.run(thrower, 'uplink', { payload: new Uint8Array(2) }),
    (err: ConverterError) => {
      assert.equal(err.code, 'script')
      assert.equal(err.message, 'RangeError: Trying to access beyond buffer length (line 2)')
      return true
    },
  )
})
