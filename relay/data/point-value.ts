/**
 * How a record's payload becomes a bucket point value (points are JSON objects):
 * - a JSON object → itself;
 * - any other JSON value (number, string, array, boolean, null) → `{value: <it>}`;
 * - bytes holding UTF-8 JSON → as above (so `{"t":21}` and `21` sent by an MQTT sensor are stored as data);
 * - other bytes → `{raw: <base64>}`.
 */

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' &&
  v !== null &&
  !Array.isArray(v) &&
  !(v instanceof Uint8Array) &&
  !(v instanceof Date)

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** The point value of `payload` (see above). */
export function pointValue(payload: unknown): Record<string, unknown> {
  if (!(payload instanceof Uint8Array)) return isObject(payload) ? payload : { value: payload }
  const bytes = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
  try {
    const parsed: unknown = JSON.parse(utf8.decode(bytes))
    return isObject(parsed) ? parsed : { value: parsed }
  } catch {
    return { raw: bytes.toString('base64') }
  }
}

/** Bytes the payload took on the wire (roughly, for a JSON value), for the device's traffic counters. */
export function payloadBytes(payload: unknown): number {
  if (payload instanceof Uint8Array) return payload.byteLength
  try {
    return Buffer.byteLength(JSON.stringify(payload) ?? '')
  } catch {
    return 0
  }
}
