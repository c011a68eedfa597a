/**
 * How each converter dialect is called for an integration's uplinks and downlinks, and how its result becomes
 * ThingsBoard-shaped entities (uplink) or an encoded downlink. Shared by the relay and agents (remote integrations). ThingsBoard scripts are taken as they are; TTN
 * codecs and Thinger modules return plain data, which is written to the device that the metadata names.
 */
import type { ConverterFunction, ConverterInput, Dialect } from '../converters/types.ts'
import type { EncodedDownlink, UplinkMessage } from './transport.ts'
import { UplinkOutputError } from './uplink-output.ts'

/** What these calls need to know of a converter. */
interface ConverterRecord {
  dialect: Dialect
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v)

/** The bytes of an uplink payload; parsed values (JSON or form bodies) become their JSON text. */
export function payloadBytes(payload: unknown): Uint8Array {
  if (payload instanceof Uint8Array) return payload
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8')
  return Buffer.from(JSON.stringify(payload ?? null), 'utf8')
}

/** The uplink function of a dialect and its input for one message. */
export function uplinkCall(
  converter: ConverterRecord,
  message: UplinkMessage,
): { fn: ConverterFunction; input: ConverterInput } {
  switch (converter.dialect) {
    case 'thingsboard':
      return { fn: 'Decoder', input: { payload: payloadBytes(message.payload), metadata: message.metadata } }
    case 'ttn': {
      const fPort = Number(message.metadata.fPort ?? message.metadata.fport ?? 1)
      return {
        fn: 'decodeUplink',
        input: {
          bytes: payloadBytes(message.payload),
          fPort: Number.isInteger(fPort) ? fPort : 1,
          recvTime: new Date(),
        },
      }
    }
    case 'thinger':
      return { fn: 'uplink', input: { payload: message.payload } }
  }
}

/**
 * A dialect's uplink result in ThingsBoard's shape. TTN `{data, errors}` and plain Thinger objects become
 * telemetry of the device named by metadata `deviceName` (else `fallbackDevice`); `undefined`/`null` means
 * nothing to store.
 */
export function uplinkShape(
  converter: ConverterRecord,
  output: unknown,
  metadata: Record<string, string>,
  fallbackDevice: string,
): unknown {
  if (output === undefined || output === null) return null
  const asDevice = (data: unknown) => {
    if (!isObject(data)) throw new UplinkOutputError('output data must be an object')
    return {
      deviceName: metadata.deviceName || fallbackDevice,
      deviceType: metadata.deviceType || 'default',
      telemetry: data,
    }
  }
  switch (converter.dialect) {
    case 'thingsboard':
      return output
    case 'ttn': {
      if (!isObject(output))
        throw new UplinkOutputError('decodeUplink must return an object {data, warnings?, errors?}')
      if (Array.isArray(output.errors) && output.errors.length > 0) {
        throw new UplinkOutputError(`decodeUplink errors: ${output.errors.map(String).join('; ')}`)
      }
      return output.data === undefined ? null : asDevice(output.data)
    }
    case 'thinger':
      if (Array.isArray(output) || (isObject(output) && ('deviceName' in output || 'assetName' in output)))
        return output
      return asDevice(output)
  }
}

/** What a downlink converter is asked to encode. */
export interface DownlinkRequest {
  msg: unknown
  msgType: 'ATTRIBUTES_UPDATED' | 'RPC_CALL'
  /** Device metadata: deviceName, deviceType, and the integration's metadata. */
  metadata: Record<string, string>
  integrationMetadata: Record<string, string>
  fPort?: number
}

/** The downlink function of a dialect and its input. */
export function downlinkCall(
  converter: ConverterRecord,
  request: DownlinkRequest,
): { fn: ConverterFunction; input: ConverterInput } {
  switch (converter.dialect) {
    case 'thingsboard':
      return {
        fn: 'Encoder',
        input: {
          msg: request.msg,
          metadata: request.metadata,
          msgType: request.msgType,
          integrationMetadata: request.integrationMetadata,
        },
      }
    case 'ttn':
      return {
        fn: 'encodeDownlink',
        input: { data: request.msg, ...(request.fPort !== undefined ? { fPort: request.fPort } : {}) },
      }
    case 'thinger':
      return { fn: 'downlink', input: { payload: request.msg } }
  }
}

const CONTENT_TYPES = new Set(['JSON', 'TEXT', 'BINARY'])

/** A dialect's downlink result as ThingsBoard's `{contentType, data, metadata}`; throws when it is not one. */
export function encodedDownlink(converter: ConverterRecord, output: unknown): EncodedDownlink {
  if (converter.dialect === 'ttn') {
    if (!isObject(output)) throw new UplinkOutputError('encodeDownlink must return {bytes, fPort}')
    if (Array.isArray(output.errors) && output.errors.length > 0) {
      throw new UplinkOutputError(`encodeDownlink errors: ${output.errors.map(String).join('; ')}`)
    }
    const bytes = output.bytes
    if (!(bytes instanceof Uint8Array) && !Array.isArray(bytes)) {
      throw new UplinkOutputError('encodeDownlink must return bytes (an array of byte values)')
    }
    const fPort = typeof output.fPort === 'number' ? output.fPort : undefined
    return {
      contentType: 'BINARY',
      data: Uint8Array.from(bytes as ArrayLike<number>),
      metadata: fPort ? { fPort } : {},
    }
  }
  if (isObject(output) && typeof output.contentType === 'string') {
    if (!CONTENT_TYPES.has(output.contentType)) {
      throw new UplinkOutputError(
        `output/contentType must be "JSON", "TEXT" or "BINARY", not "${output.contentType}"`,
      )
    }
    const metadata = isObject(output.metadata) ? output.metadata : {}
    return { contentType: output.contentType as EncodedDownlink['contentType'], data: output.data, metadata }
  }
  if (converter.dialect === 'thingsboard') {
    throw new UplinkOutputError('Encoder must return {contentType: "JSON"|"TEXT"|"BINARY", data, metadata}')
  }
  if (output instanceof Uint8Array) return { contentType: 'BINARY', data: output, metadata: {} }
  if (typeof output === 'string') return { contentType: 'TEXT', data: output, metadata: {} }
  return { contentType: 'JSON', data: output, metadata: {} }
}
