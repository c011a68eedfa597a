/**
 * Message decoder. Checks the frame cap before msgpack decoding, validates the envelope, rejects unknown
 * types and ignores unknown params keys. Every fault becomes a TetherProtocolError, never a crash.
 */
import { Unpackr } from 'msgpackr'
import { protocolError, TetherProtocolError } from '../errors.ts'
import { isKnownType, type Message } from '../messages.ts'

// Records and structured clones are msgpackr extensions, not IoTMP: a peer must not be able to switch them on.
const unpackr = new Unpackr({
  useRecords: false,
  structuredClone: false,
  mapsAsObjects: true,
  int64AsType: 'number',
})

const MAX_STREAM_ID = 0xffffffff

/** Decodes one frame into a message, or throws a TetherProtocolError naming the fault. */
export function decodeFrame(frame: Uint8Array, maxFrameBytes: number): Message {
  if (frame.length > maxFrameBytes)
    throw protocolError('TETHER_ERR_FRAME_TOO_LARGE', frame.length, maxFrameBytes)
  let value: unknown
  try {
    value = unpackr.unpack(frame)
  } catch (err) {
    throw protocolError('TETHER_ERR_BAD_ENCODING', (err as Error).message)
  }
  if (!Array.isArray(value) || value.length < 2 || value.length > 5) {
    throw protocolError('TETHER_ERR_BAD_ENCODING', 'expected an array of 2 to 5 fields')
  }
  const [type, streamId, params, payload, resource] = value
  if (!Number.isInteger(type)) throw protocolError('TETHER_ERR_BAD_ENCODING', 'type is not an integer')
  if (!isKnownType(type)) throw protocolError('TETHER_ERR_UNKNOWN_TYPE', type)
  if (!Number.isInteger(streamId) || streamId < 0 || streamId > MAX_STREAM_ID) {
    throw protocolError('TETHER_ERR_BAD_ENCODING', 'stream id is not a uint32')
  }
  if (params != null && (typeof params !== 'object' || Object.getPrototypeOf(params) !== Object.prototype)) {
    throw protocolError('TETHER_ERR_BAD_ENCODING', 'params is not a map')
  }
  if (resource != null && typeof resource !== 'string') {
    throw protocolError('TETHER_ERR_BAD_ENCODING', 'resource is not a string')
  }
  const msg: Message = { type, streamId }
  if (params != null) msg.params = params as Record<string, unknown>
  if (payload != null) msg.payload = payload
  if (resource != null) msg.resource = resource
  return msg
}

/** True when `err` came from the decoder or a protocol check (as opposed to a bug). */
export function isProtocolError(err: unknown): err is TetherProtocolError {
  return err instanceof TetherProtocolError
}
