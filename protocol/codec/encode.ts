/** Message encoder. STREAM_DATA is the hot path: its small header is written by hand and the bytes follow as they are. */
import { Packr } from 'msgpackr'
import { type Message, MessageType } from '../messages.ts'

const packr = new Packr({ useRecords: false, variableMapSize: true })

/** Encodes any message as `[type, streamId, params, payload, resource]`, trailing absent fields omitted. */
export function encodeMessage(msg: Message): Buffer {
  const fields: unknown[] = [
    msg.type,
    msg.streamId,
    msg.params ?? null,
    msg.payload ?? null,
    msg.resource ?? null,
  ]
  let length = fields.length
  while (length > 2 && fields[length - 1] === null) length--
  fields.length = length
  return packr.pack(fields)
}

/**
 * The msgpack header of STREAM_DATA `[10, streamId, nil, bin(size)]`, built by hand: the bytes follow it
 * unchanged, so a channel that can send two parts never copies them.
 */
export function encodeStreamDataHeader(streamId: number, size: number): Buffer {
  const idBytes = streamId < 0x80 ? 1 : streamId < 0x100 ? 2 : streamId < 0x10000 ? 3 : 5
  const binBytes = size < 0x100 ? 2 : size < 0x10000 ? 3 : 5
  const out = Buffer.allocUnsafe(2 + idBytes + 1 + binBytes)
  let at = 0
  out[at++] = 0x94 // fixarray of 4
  out[at++] = MessageType.STREAM_DATA
  if (idBytes === 1) out[at++] = streamId
  else if (idBytes === 2) {
    out[at++] = 0xcc
    out[at++] = streamId
  } else if (idBytes === 3) {
    out[at++] = 0xcd
    out.writeUInt16BE(streamId, at)
    at += 2
  } else {
    out[at++] = 0xce
    out.writeUInt32BE(streamId, at)
    at += 4
  }
  out[at++] = 0xc0 // params: nil
  if (binBytes === 2) {
    out[at++] = 0xc4
    out[at++] = size
  } else if (binBytes === 3) {
    out[at++] = 0xc5
    out.writeUInt16BE(size, at)
  } else {
    out[at++] = 0xc6
    out.writeUInt32BE(size, at)
  }
  return out
}

/** Encodes STREAM_DATA `[10, streamId, nil, bin]` as one buffer (one copy of `data`). */
export function encodeStreamData(streamId: number, data: Uint8Array): Buffer {
  const header = encodeStreamDataHeader(streamId, data.length)
  const out = Buffer.allocUnsafe(header.length + data.length)
  header.copy(out, 0)
  out.set(data, header.length)
  return out
}
