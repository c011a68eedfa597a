/**
 * What an integration transport (mqtt, tcp, udp; the relay adds http) does: receive device messages and hand
 * them to the uplink pipeline, and deliver encoded downlinks. The same transports run on the relay and, for
 * remote integrations, on an agent; only the `uplink` function they are given differs.
 */
import type { Logger } from 'pino'

/** Metadata values reach converters as strings, as ThingsBoard passes them. */
export type UplinkMetadata = Record<string, string>

/** One message received from a device or a broker. */
export interface UplinkMessage {
  /** Raw bytes, or (http JSON/form bodies) a parsed value. */
  payload: Uint8Array | unknown
  /** Transport metadata: `topic` (mqtt), `remoteAddress`/`remotePort` (tcp, udp), `Header:<name>`, `suffix` (http). */
  metadata: UplinkMetadata
}

/** Device names the converter addressed in this uplink (so downlinks find the device's connection/address). */
export interface UplinkOutcome {
  devices: string[]
}

/** A downlink converter's result, as ThingsBoard's Encoder returns it. */
export interface EncodedDownlink {
  contentType: 'JSON' | 'TEXT' | 'BINARY'
  /** JSON: any value (sent as JSON text); TEXT: a string; BINARY: bytes (Uint8Array) or a base64 string. */
  data: unknown
  metadata: Record<string, unknown>
}

export interface TransportContext {
  /** Runs the uplink converter and applies its output; rejects when the converter fails (already logged). */
  uplink(message: UplinkMessage): Promise<UplinkOutcome>
  log: Logger
}

export interface TransportStatus {
  state: 'starting' | 'running' | 'stopped' | 'error'
  error?: string
  /** tcp/udp: bound port; mqtt: broker URL. */
  port?: number
  url?: string
  /** tcp: open connections; mqtt: 1 when connected. */
  connections?: number
  received: number
  sent: number
}

export interface Transport {
  /** Binds or connects; resolves once listening (tcp/udp) or once the first connect was tried (mqtt). */
  start(): Promise<void>
  stop(): Promise<void>
  /** Delivers a downlink to `device` (its last connection/address, or an mqtt topic); rejects when it cannot. */
  deliver(device: string, downlink: EncodedDownlink): Promise<void>
  status(): TransportStatus
}

/** Bytes of an encoded downlink: JSON → JSON text, TEXT → UTF-8, BINARY → bytes (base64 strings decoded). */
export function downlinkBytes(downlink: EncodedDownlink): Buffer {
  const { contentType, data } = downlink
  if (contentType === 'BINARY') {
    if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength)
    if (Array.isArray(data)) return Buffer.from(data as number[])
    if (typeof data === 'string') return Buffer.from(data, 'base64')
    throw new Error('BINARY downlink data must be bytes, an array of bytes or a base64 string')
  }
  if (contentType === 'TEXT') return Buffer.from(typeof data === 'string' ? data : String(data), 'utf8')
  return Buffer.from(typeof data === 'string' ? data : JSON.stringify(data), 'utf8')
}
