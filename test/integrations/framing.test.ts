/** FrameSplitter: hand-built byte sequences in every chunking, the size cap, and downlink encoding. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { DEFAULT_MAX_FRAME_BYTES, FrameSplitter, FrameTooLargeError } from '../../integrations/framing.ts'
import type { TcpFraming } from '../../integrations/schemas.ts'

const b = (s: string) => Buffer.from(s)
const strings = (frames: Buffer[]) => frames.map((f) => f.toString())

/** Feeds `input` cut at every position into two chunks, and byte by byte; all must give `expected`. */
function splitsTheSame(framing: TcpFraming, input: Buffer, expected: string[]): void {
  for (let cut = 0; cut <= input.length; cut++) {
    const s = new FrameSplitter(framing)
    const got = [...s.push(input.subarray(0, cut)), ...s.push(input.subarray(cut))]
    assert.deepEqual(strings(got), expected, `cut at ${cut}`)
  }
  const s = new FrameSplitter(framing)
  const got = [...input].flatMap((byte) => s.push(Buffer.from([byte])))
  assert.deepEqual(strings(got), expected, 'byte by byte')
}

test('delimiter: frames exclude the delimiter, whatever the chunking', () => {
  splitsTheSame({ type: 'delimiter', delimiter: '0a' }, b('a:1\nbb:22\nccc\n'), ['a:1', 'bb:22', 'ccc'])
})

test('delimiter: a multi-byte delimiter split across chunks, and a partial match inside a frame', () => {
  const framing: TcpFraming = { type: 'delimiter', delimiter: '0d0a' }
  splitsTheSame(framing, b('x\ry\r\nz\r\r\n'), ['x\ry', 'z\r'])
  const s = new FrameSplitter(framing)
  assert.deepEqual(strings(s.push(b('one\r'))), [])
  assert.deepEqual(strings(s.push(b('\ntwo\r\nthr'))), ['one', 'two'])
  assert.equal(s.buffered, 3)
})

test('delimiter: empty frames are skipped; end() returns a last frame without its delimiter', () => {
  const s = new FrameSplitter({ type: 'delimiter', delimiter: '0a' })
  assert.deepEqual(strings(s.push(b('\n\na\n\nrest'))), ['a'])
  assert.deepEqual(strings(s.end()), ['rest'])
  assert.deepEqual(s.end(), [])
})

test('delimiter: a frame over maxFrameBytes throws once known, found or still buffering', () => {
  const framing: TcpFraming = { type: 'delimiter', delimiter: '0d0a', maxFrameBytes: 4 }
  const ok = new FrameSplitter(framing)
  assert.deepEqual(strings(ok.push(b('abcd\r'))), [], 'four bytes and half a delimiter still fit')
  assert.deepEqual(strings(ok.push(b('\n'))), ['abcd'])
  const buffering = new FrameSplitter(framing)
  buffering.push(b('abcd\r'))
  assert.throws(
    () => buffering.push(b('e')),
    (err: FrameTooLargeError) => {
      assert.equal(err.code, 'TETHER_ERR_FRAME_TOO_LARGE')
      assert.equal(err.maxFrameBytes, 4)
      return true
    },
  )
  const found = new FrameSplitter({ type: 'delimiter', delimiter: '0a', maxFrameBytes: 4 })
  assert.throws(() => found.push(b('abcde\n')), FrameTooLargeError)
})

test('the error carries the valid frames the same chunk completed before the oversized one', () => {
  const s = new FrameSplitter({ type: 'delimiter', delimiter: '0a', maxFrameBytes: 4 })
  assert.throws(
    () => s.push(b('ok\nfine\ntoo long')),
    (err: FrameTooLargeError) => {
      assert.deepEqual(strings(err.frames), ['ok', 'fine'])
      return true
    },
  )
  const l = new FrameSplitter({ type: 'length', bytes: 1, maxFrameBytes: 2 })
  assert.throws(
    () => l.push(Buffer.from([1, 0x61, 3])),
    (err: FrameTooLargeError) => {
      assert.deepEqual(strings(err.frames), ['a'])
      return true
    },
  )
})

test('length: 1, 2 and 4 byte prefixes, big- and little-endian, whatever the chunking', () => {
  splitsTheSame({ type: 'length', bytes: 1 }, Buffer.from([3, 0x61, 0x62, 0x63, 1, 0x7a]), ['abc', 'z'])
  splitsTheSame({ type: 'length', bytes: 2 }, Buffer.from([0, 2, 0x68, 0x69, 0, 1, 0x21]), ['hi', '!'])
  splitsTheSame({ type: 'length', bytes: 2, endian: 'LE' }, Buffer.from([2, 0, 0x68, 0x69]), ['hi'])
  splitsTheSame({ type: 'length', bytes: 4 }, Buffer.from([0, 0, 0, 2, 0x6f, 0x6b]), ['ok'])
  splitsTheSame({ type: 'length', bytes: 4, endian: 'LE' }, Buffer.from([2, 0, 0, 0, 0x6f, 0x6b]), ['ok'])
})

test('length: a zero-length frame is skipped; an incomplete one is dropped at end()', () => {
  const s = new FrameSplitter({ type: 'length', bytes: 2 })
  assert.deepEqual(strings(s.push(Buffer.from([0, 0, 0, 1, 0x61, 0, 5, 0x62]))), ['a'])
  assert.equal(s.buffered, 1)
  assert.deepEqual(s.end(), [])
})

test('length: an announced length over maxFrameBytes throws before any payload is buffered', () => {
  const s = new FrameSplitter({ type: 'length', bytes: 4, maxFrameBytes: 1000 })
  assert.throws(
    () => s.push(Buffer.from([0, 0, 0x03, 0xe9])),
    (err: FrameTooLargeError) => {
      assert.equal(err.bytes, 1001)
      return true
    },
  )
  const def = new FrameSplitter({ type: 'length', bytes: 4 })
  assert.equal(def.maxFrameBytes, DEFAULT_MAX_FRAME_BYTES)
  assert.throws(() => def.push(Buffer.from([0, 1, 0, 1])), FrameTooLargeError)
})

test('connection: everything until end() is one message, capped', () => {
  const s = new FrameSplitter({ type: 'connection', maxFrameBytes: 7 })
  assert.deepEqual(s.push(b('abc')), [])
  assert.deepEqual(s.push(b('\ndef')), [])
  assert.deepEqual(strings(s.end()), ['abc\ndef'])
  assert.deepEqual(new FrameSplitter({ type: 'connection' }).end(), [], 'an empty connection is no message')
  const big = new FrameSplitter({ type: 'connection', maxFrameBytes: 6 })
  big.push(b('abcdef'))
  assert.throws(() => big.push(b('g')), FrameTooLargeError)
})

test('encode: delimiter appended, length prefix prepended, connection raw', () => {
  const payload = b('hi')
  assert.deepEqual(new FrameSplitter({ type: 'delimiter', delimiter: '0d0a' }).encode(payload), b('hi\r\n'))
  assert.deepEqual(
    new FrameSplitter({ type: 'length', bytes: 2 }).encode(payload),
    Buffer.from([0, 2, 104, 105]),
  )
  assert.deepEqual(
    new FrameSplitter({ type: 'length', bytes: 4, endian: 'LE' }).encode(payload),
    Buffer.from([2, 0, 0, 0, 104, 105]),
  )
  assert.deepEqual(new FrameSplitter({ type: 'connection' }).encode(payload), payload)
})

test('encode: refuses what the device could not split back', () => {
  assert.throws(
    () => new FrameSplitter({ type: 'delimiter', delimiter: '0a' }).encode(b('a\nb')),
    /delimiter/,
  )
  assert.throws(() => new FrameSplitter({ type: 'length', bytes: 1 }).encode(Buffer.alloc(256)), /1-byte/)
  assert.equal(new FrameSplitter({ type: 'length', bytes: 1 }).encode(Buffer.alloc(255)).length, 256)
})

test('encode and push round-trip', () => {
  for (const framing of [
    { type: 'delimiter', delimiter: '00ff' },
    { type: 'length', bytes: 2, endian: 'LE' },
  ] satisfies TcpFraming[]) {
    const s = new FrameSplitter(framing)
    const wire = Buffer.concat([s.encode(b('first')), s.encode(b('second'))])
    assert.deepEqual(strings(s.push(wire)), ['first', 'second'], framing.type)
  }
})
