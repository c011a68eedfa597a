import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Packr } from 'msgpackr'
import { decodeFrame } from '../../../protocol/codec/decode.ts'
import { encodeMessage, encodeStreamData } from '../../../protocol/codec/encode.ts'
import { type Message, MessageType } from '../../../protocol/messages.ts'

const CAP = 1024 * 1024
const reference = new Packr({ useRecords: false, variableMapSize: true })
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')

/** Deterministic, non-constant payload so a misplaced header byte would show up in the comparison. */
function payload(size: number): Buffer {
  const out = Buffer.allocUnsafe(size)
  for (let i = 0; i < size; i++) out[i] = (i * 31 + 7) & 0xff
  return out
}

describe('encodeStreamData', () => {
  const ids = [0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1]
  const sizes = [0, 1, 255, 256, 65535, 65536, 200000]

  for (const id of ids) {
    it(`stream id ${id}: round-trips and matches msgpackr byte for byte at every bin size`, () => {
      for (const size of sizes) {
        const data = payload(size)
        const frame = encodeStreamData(id, data)
        const expected = reference.pack([MessageType.STREAM_DATA, id, null, data])
        const headerLength = frame.length - size
        assert.equal(frame.length, expected.length, `id ${id} size ${size}: frame length`)
        assert.equal(
          hex(frame.subarray(0, headerLength)),
          hex(expected.subarray(0, headerLength)),
          `id ${id} size ${size}: header`,
        )
        assert.ok(frame.subarray(headerLength).equals(data), `id ${id} size ${size}: payload bytes`)

        const msg = decodeFrame(frame, CAP)
        assert.equal(msg.type, MessageType.STREAM_DATA)
        assert.equal(msg.streamId, id)
        assert.ok(!('params' in msg) && !('resource' in msg))
        assert.ok(msg.payload instanceof Uint8Array, `id ${id} size ${size}: payload type`)
        assert.ok(Buffer.from(msg.payload).equals(data), `id ${id} size ${size}: decoded payload`)
      }
    })
  }

  const headers: Array<[number, number, string]> = [
    [0, 0, '940a00c0c400'],
    [127, 1, '940a7fc0c401'],
    [128, 255, '940acc80c0c4ff'],
    [256, 256, '940acd0100c0c50100'],
    [65536, 65536, '940ace00010000c0c600010000'],
    [2 ** 32 - 1, 200000, '940aceffffffffc0c600030d40'],
  ]
  for (const [id, size, header] of headers) {
    it(`writes the header ${header} for stream ${id} with ${size} bytes`, () => {
      const frame = encodeStreamData(id, payload(size))
      assert.equal(hex(frame.subarray(0, frame.length - size)), header)
    })
  }

  it('copies the bytes of a view with an offset, not its whole buffer', () => {
    const backing = payload(64)
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 10, 5)
    const frame = encodeStreamData(3, view)
    assert.equal(hex(frame), `940a03c0c405${hex(view)}`)
  })

  it('copies the data, so later changes to the source do not alter the frame', () => {
    const data = Buffer.from('abc')
    const frame = encodeStreamData(1, data)
    data.fill(0)
    assert.equal(Buffer.from(decodeFrame(frame, CAP).payload as Uint8Array).toString(), 'abc')
  })
})

describe('encodeMessage', () => {
  const cases: Array<[string, Message, string]> = [
    ['KEEP_ALIVE is exactly 92 05 00', { type: MessageType.KEEP_ALIVE, streamId: 0 }, '920500'],
    ['DISCONNECT omits every optional field', { type: MessageType.DISCONNECT, streamId: 0 }, '920400'],
    [
      'params only: a 3-element array',
      { type: MessageType.STOP_STREAM, streamId: 2, params: { half: true } },
      '930902' + '81a468616c66c3',
    ],
    [
      'payload without params keeps a nil params slot',
      { type: MessageType.STREAM_CREDIT, streamId: 1, payload: 1024 },
      '940b01c0cd0400',
    ],
    [
      'resource alone keeps nil params and payload slots',
      { type: MessageType.RUN, streamId: 3, resource: 'x' },
      '950603c0c0a178',
    ],
    [
      'explicitly undefined fields count as absent',
      { type: MessageType.OK, streamId: 5, params: undefined, payload: undefined, resource: undefined },
      '920105',
    ],
    [
      'a zero payload is kept, not taken for absent',
      { type: MessageType.OK, streamId: 1, payload: 0 },
      '940101c000',
    ],
    [
      'a false payload is kept, not taken for absent',
      { type: MessageType.OK, streamId: 1, payload: false },
      '940101c0c2',
    ],
    [
      'an empty-string resource is kept',
      { type: MessageType.RUN, streamId: 1, resource: '' },
      '950601c0c0a0',
    ],
  ]
  for (const [name, msg, expected] of cases) {
    it(name, () => {
      assert.equal(hex(encodeMessage(msg)), expected)
    })
  }

  it('round-trips through decodeFrame, with absent fields still absent', () => {
    for (const [, msg] of cases) {
      const present = Object.fromEntries(Object.entries(msg).filter(([, v]) => v !== undefined))
      assert.deepEqual(decodeFrame(encodeMessage(msg), CAP), present)
    }
  })

  it('encodes binary payloads as msgpack bin', () => {
    const frame = encodeMessage({
      type: MessageType.RUN,
      streamId: 7,
      payload: Buffer.from([1, 2]),
      resource: 'b',
    })
    assert.equal(hex(frame), '950607c0c4020102a162')
  })

  it('writes uint32 stream ids the same way encodeStreamData does', () => {
    const frame = encodeMessage({ type: MessageType.STREAM_CREDIT, streamId: 2 ** 32 - 1, payload: 1 })
    assert.equal(hex(frame), '940bceffffffffc001')
  })
})
