/**
 * Cuts a connection as soon as a packet's fixed header announces more bytes than any packet within
 * `maxPayloadBytes` can take, before the packet is buffered (an MQTT packet may announce up to 256 MiB). aedes'
 * parser (mqtt-packet) has no size limit of its own, so its length step is wrapped per connection: the same idea
 * as ws' receiver, which compares the announced length with `maxPayload` before it buffers a byte.
 *
 * The exact payload check is in the publish hook (uplink-gate.ts); this guard allows a payload plus generous room
 * for the topic, properties and credentials, and only stops what the hook would refuse anyway. It relies on
 * mqtt-packet's internals (`_parseLength`, `packet.length`); if they change, it does nothing and the hook's check
 * still disconnects oversized PUBLISHes, after they were read.
 */
import type { Client } from 'aedes'

/** Room besides the payload: topic or will topic, client id, username and password (each at most 64 KiB). */
export const HEADER_ROOM_BYTES = 4 * 65_536

interface ParserInternals {
  packet: { cmd?: string; length: number }
  _parseLength: () => boolean
  _emitError: (err: Error) => void
}

/**
 * Makes `client`'s parser fail (aedes then closes the connection) on a packet whose remaining length exceeds
 * `maxPayloadBytes + HEADER_ROOM_BYTES`; `onOversize` is told the announced size. Returns whether it is installed.
 */
export function guardPacketSize(
  client: Client,
  maxPayloadBytes: number,
  onOversize: (announcedBytes: number, cmd: string | undefined) => Error,
): boolean {
  const parser = (client as unknown as { _parser?: ParserInternals })._parser
  const parseLength = parser?._parseLength
  if (!parser || typeof parseLength !== 'function' || typeof parser._emitError !== 'function') return false
  const limit = maxPayloadBytes + HEADER_ROOM_BYTES
  parser._parseLength = function guardedParseLength(this: ParserInternals): boolean {
    const parsed = parseLength.call(this)
    if (parsed && this.packet.length > limit) {
      this._emitError(onOversize(this.packet.length, this.packet.cmd))
      return false
    }
    return parsed
  }
  return true
}
