/**
 * Frames of a TCP integration (settings `framing`): splits a byte stream into messages and frames downlinks the
 * same way. Pure (no sockets): the transport feeds it chunks as they arrive.
 *  - `delimiter`: a frame ends at the delimiter bytes, which are not part of it;
 *  - `length`: a 1, 2 or 4 byte unsigned prefix (big-endian unless `LE`) counts the payload bytes after it;
 *  - `connection`: the whole connection is one message, known when the peer ends it.
 * Memory stays bounded: a frame longer than `maxFrameBytes` throws FrameTooLargeError as soon as it is known.
 */
import type { TcpFraming } from './schemas.ts'

/** Default cap of one frame's payload, in bytes (64 KiB). */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024

/** A frame longer than the cap: the stream cannot be resynchronised, so the connection must be closed. */
export class FrameTooLargeError extends Error {
  readonly code = 'TETHER_ERR_FRAME_TOO_LARGE'
  /** Frames the same push() completed before the oversized one: they are valid and still to be used. */
  frames: Buffer[] = []

  constructor(
    /** Bytes known so far (buffered, or announced by a length prefix). */
    readonly bytes: number,
    readonly maxFrameBytes: number,
  ) {
    super(`frame of ${bytes}+ bytes exceeds maxFrameBytes ${maxFrameBytes}`)
    this.name = 'FrameTooLargeError'
  }
}

const EMPTY = Buffer.alloc(0)

export class FrameSplitter {
  readonly framing: TcpFraming
  readonly maxFrameBytes: number
  readonly #delimiter: Buffer
  /** Bytes received and not yet part of an emitted frame. */
  #parts: Buffer[] = []
  #size = 0
  /** length framing: payload size announced by the prefix already consumed. */
  #expected: number | undefined

  constructor(framing: TcpFraming) {
    this.framing = framing
    this.maxFrameBytes = framing.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES
    this.#delimiter = framing.type === 'delimiter' ? Buffer.from(framing.delimiter, 'hex') : EMPTY
    // The schema enforces this; a hand-built config must not make indexOf match everywhere.
    if (framing.type === 'delimiter' && this.#delimiter.length === 0) throw new Error('empty delimiter')
  }

  /** Bytes buffered towards the next frame (for `length`, the consumed prefix is not counted). */
  get buffered(): number {
    return this.#size
  }

  /**
   * Adds received bytes; returns the frames they complete (empty frames are skipped). Throws FrameTooLargeError,
   * carrying the frames completed before the oversized one; the splitter is unusable afterwards.
   */
  push(chunk: Uint8Array): Buffer[] {
    const data = Buffer.isBuffer(chunk)
      ? chunk
      : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    const frames: Buffer[] = []
    if (data.length === 0) return frames
    try {
      switch (this.framing.type) {
        case 'delimiter':
          this.#pushDelimited(data, frames)
          break
        case 'length':
          this.#pushLengthPrefixed(data, this.framing.bytes, this.framing.endian ?? 'BE', frames)
          break
        case 'connection':
          this.#append(data)
          this.#checkBuffered(0)
          break
      }
    } catch (err) {
      if (err instanceof FrameTooLargeError) err.frames = frames
      throw err
    }
    return frames
  }

  /**
   * The peer ended the stream: `connection` returns the whole message, `delimiter` a last frame that lacked its
   * delimiter; an incomplete `length` frame is dropped (check `buffered` first to report it).
   */
  end(): Buffer[] {
    const rest = this.#drain()
    this.#expected = undefined
    if (this.framing.type === 'length' || rest.length === 0) return []
    return [rest]
  }

  /** Frames one downlink payload; throws when it cannot be framed (too long for the prefix, holds the delimiter). */
  encode(payload: Uint8Array): Buffer {
    const data = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
    const framing = this.framing
    if (framing.type === 'connection') return data
    if (framing.type === 'delimiter') {
      // The device would split the payload at the delimiter and see two broken messages.
      if (data.includes(this.#delimiter)) throw new Error('downlink payload contains the frame delimiter')
      return Buffer.concat([data, this.#delimiter])
    }
    const max = framing.bytes === 4 ? 0xffff_ffff : framing.bytes === 2 ? 0xffff : 0xff
    if (data.length > max) {
      throw new Error(`downlink of ${data.length} bytes does not fit a ${framing.bytes}-byte length prefix`)
    }
    const prefix = Buffer.alloc(framing.bytes)
    prefix.writeUIntBE(data.length, 0, framing.bytes)
    if (framing.endian === 'LE') prefix.reverse()
    return Buffer.concat([prefix, data])
  }

  #pushDelimited(chunk: Buffer, frames: Buffer[]): void {
    const delimiter = this.#delimiter
    let data = chunk
    while (data.length > 0) {
      // A delimiter may start in the buffered tail: search from its last delimiter-1 bytes, not from the start,
      // so a long frame arriving in small chunks costs linear time.
      const carried = Math.min(this.#size, delimiter.length - 1)
      const probe = carried > 0 ? Buffer.concat([this.#tail(carried), data]) : data
      const at = probe.indexOf(delimiter)
      if (at === -1) {
        this.#append(data)
        this.#checkBuffered(delimiter.length - 1)
        break
      }
      const inData = at - carried // where the frame ends in `data`; negative when the delimiter began earlier
      const frame = this.#drain(inData > 0 ? data.subarray(0, inData) : undefined)
      const payload = inData >= 0 ? frame : frame.subarray(0, frame.length + inData)
      if (payload.length > this.maxFrameBytes)
        throw new FrameTooLargeError(payload.length, this.maxFrameBytes)
      if (payload.length > 0) frames.push(payload)
      data = data.subarray(inData + delimiter.length)
    }
  }

  #pushLengthPrefixed(chunk: Buffer, bytes: 1 | 2 | 4, endian: 'BE' | 'LE', frames: Buffer[]): void {
    this.#append(chunk)
    for (;;) {
      if (this.#expected === undefined) {
        if (this.#size < bytes) break
        const prefix = this.#take(bytes)
        const length = endian === 'LE' ? prefix.readUIntLE(0, bytes) : prefix.readUIntBE(0, bytes)
        // Checked before buffering any payload (as ws does with maxPayload).
        if (length > this.maxFrameBytes) throw new FrameTooLargeError(length, this.maxFrameBytes)
        this.#expected = length
      }
      if (this.#size < this.#expected) break
      const frame = this.#take(this.#expected)
      this.#expected = undefined
      if (frame.length > 0) frames.push(frame)
    }
  }

  #append(data: Buffer): void {
    this.#parts.push(data)
    this.#size += data.length
  }

  /** Throws when the buffered bytes (less `slack`, a partial delimiter) already exceed the cap. */
  #checkBuffered(slack: number): void {
    if (this.#size - slack > this.maxFrameBytes) throw new FrameTooLargeError(this.#size, this.maxFrameBytes)
  }

  /** The last `n` buffered bytes (n ≤ size), without consuming them; only the parts holding them are copied. */
  #tail(n: number): Buffer {
    const last = this.#parts[this.#parts.length - 1]
    if (last.length >= n) return last.subarray(last.length - n)
    const parts: Buffer[] = []
    let have = 0
    for (let i = this.#parts.length - 1; have < n; i--) {
      parts.unshift(this.#parts[i])
      have += this.#parts[i].length
    }
    return Buffer.concat(parts).subarray(have - n)
  }

  /** Removes and returns the first `n` buffered bytes. */
  #take(n: number): Buffer {
    const all = this.#parts.length === 1 ? this.#parts[0] : Buffer.concat(this.#parts, this.#size)
    const rest = all.subarray(n)
    this.#parts = rest.length > 0 ? [rest] : []
    this.#size = rest.length
    return all.subarray(0, n)
  }

  /** Removes and returns every buffered byte, followed by `extra` (not buffered), copying once at most. */
  #drain(extra?: Buffer): Buffer {
    const parts = extra ? [...this.#parts, extra] : this.#parts
    const frame = parts.length === 1 ? parts[0] : Buffer.concat(parts)
    this.#parts = []
    this.#size = 0
    return frame
  }
}
