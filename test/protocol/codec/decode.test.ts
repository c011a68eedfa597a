/**
 * decodeFrame against hand-built msgpack byte sequences: every fault must surface as a TetherProtocolError
 * with a stable `.code` and the BAD_ENCODING wire code, never as another error type.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Packr } from 'msgpackr'
import { decodeFrame, isProtocolError } from '../../../protocol/codec/decode.ts'
import { encodeMessage, encodeStreamData } from '../../../protocol/codec/encode.ts'
import { TetherProtocolError } from '../../../protocol/errors.ts'
import { isKnownType, MAX_FRAME_BYTES, MessageType, WireErrorCode } from '../../../protocol/messages.ts'
import { mulberry32, randomBytes } from '../prng.ts'

const CAP = MAX_FRAME_BYTES
const bytes = (...b: number[]) => Buffer.from(b)

/** Asserts that decoding `frame` throws a TetherProtocolError with `code` (and the BAD_ENCODING wire code). */
function assertRejects(frame: Uint8Array, code: string, message?: RegExp, cap = CAP): TetherProtocolError {
  let caught: unknown
  try {
    decodeFrame(frame, cap)
  } catch (err) {
    caught = err
  }
  assert.ok(caught !== undefined, `expected ${code} for ${Buffer.from(frame).toString('hex').slice(0, 80)}`)
  assert.ok(caught instanceof TetherProtocolError, `not a TetherProtocolError: ${String(caught)}`)
  assert.equal(caught.code, code)
  assert.equal(caught.name, code)
  assert.equal(caught.wireCode, WireErrorCode.BAD_ENCODING)
  if (message) assert.match(caught.message, message)
  return caught
}

describe('decodeFrame: frame cap', () => {
  it('rejects a huge buffer of garbage as too large, before trying to decode it', () => {
    const garbage = Buffer.alloc(4 * CAP, 0xc1) // 0xc1 is "never used" in msgpack
    assertRejects(
      garbage,
      'TETHER_ERR_FRAME_TOO_LARGE',
      new RegExp(`${4 * CAP} bytes exceeds the ${CAP}-byte cap`),
    )
  })

  it('rejects one byte over the cap even when the frame is otherwise valid', () => {
    const frame = encodeStreamData(1, Buffer.alloc(100))
    assertRejects(frame, 'TETHER_ERR_FRAME_TOO_LARGE', undefined, frame.length - 1)
  })

  it('accepts a frame of exactly the cap', () => {
    const frame = encodeStreamData(1, Buffer.alloc(100))
    assert.equal(decodeFrame(frame, frame.length).type, MessageType.STREAM_DATA)
  })

  it('reports the cap it was given, not the default', () => {
    assertRejects(
      Buffer.alloc(2048),
      'TETHER_ERR_FRAME_TOO_LARGE',
      /2048 bytes exceeds the 1024-byte cap/,
      1024,
    )
  })
})

describe('decodeFrame: malformed msgpack', () => {
  const cases: Array<[string, Buffer]> = [
    ['an empty frame', bytes()],
    ['the never-used byte 0xc1', bytes(0xc1)],
    ['an array header announcing 4 elements with 2 present', bytes(0x94, 0x0a, 0x01)],
    [
      'a bin32 header announcing more bytes than present',
      bytes(0x94, 0x0a, 0x01, 0xc0, 0xc6, 0, 0, 0, 10, 1, 2),
    ],
    ['a bin8 header announcing more bytes than present', bytes(0x94, 0x0a, 0x01, 0xc0, 0xc4, 5, 1)],
    ['a str8 resource cut short', bytes(0x95, 0x06, 0x01, 0xc0, 0xc0, 0xd9, 10, 0x61)],
    ['a map16 params cut short', bytes(0x93, 0x01, 0x00, 0xde, 0x00, 0x02, 0xa1, 0x61)],
    ['an array32 header with no elements', bytes(0xdd, 0, 0, 0, 4)],
    ['a uint32 stream id cut short', bytes(0x92, 0x01, 0xce, 0x00, 0x01)],
    ['a float64 cut short', bytes(0x92, 0xcb, 0x3f)],
    ['trailing bytes after a complete message', bytes(0x92, 0x05, 0x00, 0x01)],
    ['two messages in one frame', Buffer.concat([bytes(0x92, 0x05, 0x00), bytes(0x92, 0x05, 0x00)])],
  ]
  for (const [name, frame] of cases) {
    it(`rejects ${name}`, () => {
      assertRejects(frame, 'TETHER_ERR_BAD_ENCODING', /^malformed frame: /)
    })
  }

  it('rejects pseudo-random bytes (seeded) as malformed', () => {
    const random = mulberry32(0x7e7e)
    // 0x92..0x95 + a known type would look like an envelope; start with a map header so none can decode.
    for (let i = 0; i < 50; i++) {
      const frame = Buffer.concat([bytes(0x81), randomBytes(random, 1 + Math.floor(random() * 40))])
      assertRejects(frame, 'TETHER_ERR_BAD_ENCODING')
    }
  })
})

describe('decodeFrame: envelope', () => {
  const notAnArray: Array<[string, Buffer]> = [
    ['nil', bytes(0xc0)],
    ['true', bytes(0xc3)],
    ['an integer', bytes(0x05)],
    ['a string', bytes(0xa2, 0x68, 0x69)],
    ['binary', bytes(0xc4, 0x02, 0x92, 0x05)],
    ['a map', bytes(0x82, 0x00, 0x05, 0x01, 0x00)],
    ['an empty map', bytes(0x80)],
  ]
  for (const [name, frame] of notAnArray) {
    it(`rejects ${name} instead of an array`, () => {
      assertRejects(frame, 'TETHER_ERR_BAD_ENCODING', /expected an array of 2 to 5 fields/)
    })
  }

  const wrongLength: Array<[string, Buffer]> = [
    ['an empty array', bytes(0x90)],
    ['an array of 1', bytes(0x91, 0x05)],
    ['an array of 6', bytes(0x96, 0x06, 0x01, 0xc0, 0xc0, 0xa1, 0x78, 0xc0)],
    ['an array16 of 7', bytes(0xdc, 0x00, 0x07, 0x05, 0x00, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0)],
  ]
  for (const [name, frame] of wrongLength) {
    it(`rejects ${name}`, () => {
      assertRejects(frame, 'TETHER_ERR_BAD_ENCODING', /expected an array of 2 to 5 fields/)
    })
  }

  const nonIntegerType: Array<[string, Buffer]> = [
    ['a float', bytes(0x92, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0x00)], // 1.5
    ['a string', bytes(0x92, 0xa1, 0x31, 0x00)],
    ['nil', bytes(0x92, 0xc0, 0x00)],
    ['true', bytes(0x92, 0xc3, 0x00)],
    ['binary', bytes(0x92, 0xc4, 0x01, 0x01, 0x00)],
  ]
  for (const [name, frame] of nonIntegerType) {
    it(`rejects a type that is ${name}`, () => {
      assertRejects(frame, 'TETHER_ERR_BAD_ENCODING', /type is not an integer/)
    })
  }

  const unknownType: Array<[number, Buffer]> = [
    [99, bytes(0x92, 99, 0x00)],
    [0, bytes(0x92, 0x00, 0x00)],
    [12, bytes(0x92, 12, 0x00)],
    [-1, bytes(0x92, 0xff, 0x00)],
    [65535, bytes(0x92, 0xcd, 0xff, 0xff, 0x00)],
  ]
  for (const [type, frame] of unknownType) {
    it(`rejects unknown type ${type} as TETHER_ERR_UNKNOWN_TYPE`, () => {
      assertRejects(frame, 'TETHER_ERR_UNKNOWN_TYPE', new RegExp(`unknown message type ${type}$`))
    })
  }

  it('accepts every known type', () => {
    for (const type of Object.values(MessageType))
      assert.deepEqual(decodeFrame(bytes(0x92, type, 0x00), CAP), { type, streamId: 0 })
  })

  const badStreamId: Array<[string, Buffer]> = [
    ['negative (fixint -1)', bytes(0x92, 0x01, 0xff)],
    ['negative (int32 -2^31)', bytes(0x92, 0x01, 0xd2, 0x80, 0, 0, 0)],
    ['2^32 (uint64)', bytes(0x92, 0x01, 0xcf, 0, 0, 0, 0x01, 0, 0, 0, 0)],
    ['2^64-1 (uint64)', bytes(0x92, 0x01, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)],
    ['a float (1.5)', bytes(0x92, 0x01, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0)],
    ['NaN', bytes(0x92, 0x01, 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0)],
    ['nil', bytes(0x92, 0x01, 0xc0)],
    ['a string', bytes(0x92, 0x01, 0xa1, 0x31)],
  ]
  for (const [name, frame] of badStreamId) {
    it(`rejects a stream id that is ${name}`, () => {
      assertRejects(frame, 'TETHER_ERR_BAD_ENCODING', /stream id is not a uint32/)
    })
  }

  it('accepts stream ids 0 and 2^32-1, however they are encoded', () => {
    assert.equal(decodeFrame(bytes(0x92, 0x01, 0x00), CAP).streamId, 0)
    assert.equal(decodeFrame(bytes(0x92, 0x01, 0xce, 0xff, 0xff, 0xff, 0xff), CAP).streamId, 0xffffffff)
    assert.equal(
      decodeFrame(bytes(0x92, 0x01, 0xcf, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff), CAP).streamId,
      0xffffffff,
    )
    assert.equal(decodeFrame(bytes(0x92, 0x01, 0xd3, 0, 0, 0, 0, 0, 0, 0, 7), CAP).streamId, 7)
  })

  const badParams: Array<[string, Buffer]> = [
    ['an array', bytes(0x93, 0x01, 0x00, 0x90)],
    ['a non-empty array', bytes(0x93, 0x01, 0x00, 0x91, 0x01)],
    ['binary', bytes(0x93, 0x01, 0x00, 0xc4, 0x01, 0x00)],
    ['a string', bytes(0x93, 0x01, 0x00, 0xa1, 0x78)],
    ['an integer', bytes(0x93, 0x01, 0x00, 0x07)],
    ['true', bytes(0x93, 0x01, 0x00, 0xc3)],
  ]
  for (const [name, frame] of badParams) {
    it(`rejects params that are ${name}`, () => {
      assertRejects(frame, 'TETHER_ERR_BAD_ENCODING', /params is not a map/)
    })
  }

  const badResource: Array<[string, Buffer]> = [
    ['an integer', bytes(0x95, 0x06, 0x01, 0xc0, 0xc0, 0x05)],
    ['binary', bytes(0x95, 0x06, 0x01, 0xc0, 0xc0, 0xc4, 0x01, 0x78)],
    ['an array', bytes(0x95, 0x06, 0x01, 0xc0, 0xc0, 0x91, 0xa1, 0x78)],
    ['a map', bytes(0x95, 0x06, 0x01, 0xc0, 0xc0, 0x81, 0xa1, 0x78, 0x01)],
    ['false', bytes(0x95, 0x06, 0x01, 0xc0, 0xc0, 0xc2)],
  ]
  for (const [name, frame] of badResource) {
    it(`rejects a resource that is ${name}`, () => {
      assertRejects(frame, 'TETHER_ERR_BAD_ENCODING', /resource is not a string/)
    })
  }
})

describe('decodeFrame: valid messages', () => {
  it('decodes the shortest message and leaves absent fields out', () => {
    const msg = decodeFrame(bytes(0x92, 0x05, 0x00), CAP)
    assert.deepEqual(msg, { type: MessageType.KEEP_ALIVE, streamId: 0 })
    assert.deepEqual(Object.keys(msg), ['type', 'streamId'])
  })

  it('treats nil params, payload and resource as absent', () => {
    const msg = decodeFrame(bytes(0x95, 0x06, 0x03, 0xc0, 0xc0, 0xa1, 0x78), CAP)
    assert.deepEqual(msg, { type: MessageType.RUN, streamId: 3, resource: 'x' })
    assert.ok(!('params' in msg) && !('payload' in msg))
  })

  it('keeps falsy payloads (0, false, empty string, empty binary)', () => {
    assert.equal(decodeFrame(bytes(0x94, 0x0b, 0x01, 0xc0, 0x00), CAP).payload, 0)
    assert.equal(decodeFrame(bytes(0x94, 0x06, 0x01, 0xc0, 0xc2), CAP).payload, false)
    assert.equal(decodeFrame(bytes(0x94, 0x06, 0x01, 0xc0, 0xa0), CAP).payload, '')
    assert.equal(
      (decodeFrame(bytes(0x94, 0x0a, 0x01, 0xc0, 0xc4, 0x00), CAP).payload as Uint8Array).length,
      0,
    )
  })

  it('accepts an empty params map', () => {
    assert.deepEqual(decodeFrame(bytes(0x93, 0x01, 0x01, 0x80), CAP).params, {})
  })

  it('preserves unknown params keys instead of rejecting them', () => {
    const frame = new Packr({ useRecords: false }).pack([
      MessageType.ERROR,
      0,
      { code: 4, message: 'bad', future: { nested: [1, 2] }, 'x-vendor': true },
    ])
    assert.deepEqual(decodeFrame(frame, CAP), {
      type: MessageType.ERROR,
      streamId: 0,
      params: { code: 4, message: 'bad', future: { nested: [1, 2] }, 'x-vendor': true },
    })
  })

  it('does not let a __proto__ params key reach the prototype', () => {
    // fixmap{1}: "__proto__" → fixmap{1}: "polluted" → true
    const key = Buffer.from('__proto__')
    const inner = Buffer.from('polluted')
    const frame = Buffer.concat([
      bytes(0x93, 0x01, 0x00, 0x81, 0xa0 | key.length),
      key,
      bytes(0x81, 0xa0 | inner.length),
      inner,
      bytes(0xc3),
    ])
    const msg = decodeFrame(frame, CAP)
    assert.equal(({} as Record<string, unknown>).polluted, undefined)
    assert.equal((msg.params as Record<string, unknown>).polluted, undefined)
  })

  it('round-trips every message shape the session sends', () => {
    const messages = [
      {
        type: MessageType.CONNECT,
        streamId: 1,
        params: { pv: 1, ka: 60, agent: 'tether/0.1.0', window: 262144 },
        payload: ['alice', 'gw', 'secret'],
      },
      { type: MessageType.OK, streamId: 1, params: { ka: 60, maxFrame: CAP, window: 262144 } },
      { type: MessageType.ERROR, streamId: 3, params: { code: 12, message: 'not allowed' } },
      { type: MessageType.RUN, streamId: 5, resource: '$data', payload: [{ seq: 1, ts: 2, source: 'm' }] },
      {
        type: MessageType.START_STREAM,
        streamId: 2,
        resource: '$proxy/web',
        params: { protocol: 'tcp', address: '10.0.0.5', port: 443, secure: true, window: 262144 },
      },
      { type: MessageType.STOP_STREAM, streamId: 2, params: { half: true } },
      { type: MessageType.STREAM_CREDIT, streamId: 2, payload: 65536 },
      { type: MessageType.DISCONNECT, streamId: 0 },
    ] as const
    for (const msg of messages) assert.deepEqual(decodeFrame(encodeMessage(msg), CAP), msg)
  })
})

describe('decodeFrame: msgpackr extensions are not IoTMP', () => {
  it('rejects structured-clone references, so a peer cannot send cyclic values', () => {
    const cyclic: Record<string, unknown> = { a: 1 }
    cyclic.self = cyclic
    const frame = new Packr({ structuredClone: true }).pack([MessageType.RUN, 1, null, cyclic, 'x'])
    assertRejects(frame, 'TETHER_ERR_BAD_ENCODING')
  })

  it('rejects params that are msgpackr extension objects rather than maps (Set, Date)', () => {
    const packr = new Packr({ structuredClone: true })
    assertRejects(packr.pack([MessageType.RUN, 1, new Set([1])]), 'TETHER_ERR_BAD_ENCODING', /params/)
    assertRejects(packr.pack([MessageType.RUN, 1, new Date(0)]), 'TETHER_ERR_BAD_ENCODING', /params/)
  })
})

describe('decodeFrame: fuzz (seeded)', () => {
  const goodFrame = bytes(0x92, 0x05, 0x00)
  const seeds = [
    encodeMessage({
      type: MessageType.CONNECT,
      streamId: 1,
      params: { pv: 1, ka: 60, agent: '0.1.0', window: 262144 },
      payload: ['u', 'd', 'secret'],
    }),
    encodeMessage({
      type: MessageType.START_STREAM,
      streamId: 2,
      params: { protocol: 'tcp', address: '10.0.0.1', port: 80, window: 262144 },
      resource: '$proxy/web',
    }),
    encodeMessage({ type: MessageType.RUN, streamId: 3, payload: [{ seq: 1, ts: 2 }], resource: '$data' }),
    encodeMessage({ type: MessageType.ERROR, streamId: 0, params: { code: 4, message: 'x' } }),
    encodeMessage({ type: MessageType.STREAM_CREDIT, streamId: 7, payload: 65536 }),
    encodeStreamData(300, Buffer.from('hello world')),
  ]

  /** Decodes or throws a decode-catalogue TetherProtocolError; a decoded message must satisfy the envelope. */
  function check(frame: Buffer, label: string): 'ok' | 'rejected' {
    try {
      const msg = decodeFrame(frame, 256)
      assert.ok(isKnownType(msg.type), label)
      assert.ok(Number.isInteger(msg.streamId) && msg.streamId >= 0 && msg.streamId <= 0xffffffff, label)
      assert.ok(
        msg.params === undefined || (typeof msg.params === 'object' && !Array.isArray(msg.params)),
        label,
      )
      assert.ok(msg.resource === undefined || typeof msg.resource === 'string', label)
      return 'ok'
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err
      assert.ok(isProtocolError(err), `${label}: threw ${String(err)}`)
      assert.ok(
        ['TETHER_ERR_BAD_ENCODING', 'TETHER_ERR_UNKNOWN_TYPE', 'TETHER_ERR_FRAME_TOO_LARGE'].includes(
          err.code,
        ),
        `${label}: ${err.code}`,
      )
      assert.equal(err.wireCode, WireErrorCode.BAD_ENCODING, label)
      return 'rejected'
    } finally {
      // msgpackr keeps module-level decoder state; a bad frame must not poison the next good one.
      assert.deepEqual(decodeFrame(goodFrame, 256), { type: MessageType.KEEP_ALIVE, streamId: 0 }, label)
    }
  }

  it('random buffers either decode or throw TetherProtocolError', () => {
    const seed = 20240601
    const random = mulberry32(seed)
    const outcomes = { ok: 0, rejected: 0 }
    for (let i = 0; i < 3000; i++) {
      const frame = randomBytes(random, Math.floor(random() * 48))
      // Bias towards envelope-shaped input so the field checks get exercised too.
      if (frame.length > 0 && random() < 0.7) frame[0] = 0x92 + Math.floor(random() * 4)
      if (frame.length > 1 && random() < 0.5) frame[1] = 1 + Math.floor(random() * 11)
      outcomes[check(frame, `seed ${seed} case ${i}: ${frame.toString('hex').slice(0, 64)}`)]++
    }
    assert.ok(outcomes.ok > 0 && outcomes.rejected > 0, JSON.stringify(outcomes))
  })

  it('mutated and truncated valid frames either decode or throw TetherProtocolError', () => {
    const seed = 42
    const random = mulberry32(seed)
    const outcomes = { ok: 0, rejected: 0 }
    for (let i = 0; i < 2000; i++) {
      const frame = Buffer.from(seeds[i % seeds.length])
      const flips = 1 + Math.floor(random() * 4)
      for (let k = 0; k < flips; k++) frame[Math.floor(random() * frame.length)] = Math.floor(random() * 256)
      const cut = random() < 0.2 ? Math.floor(random() * frame.length) : frame.length
      const sample = frame.subarray(0, cut)
      outcomes[check(sample, `seed ${seed} case ${i}: ${sample.toString('hex')}`)]++
    }
    assert.ok(outcomes.ok > 0 && outcomes.rejected > 0, JSON.stringify(outcomes))
  })
})
