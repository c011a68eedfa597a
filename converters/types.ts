/**
 * The converter engine's contract, shared by the relay (converters API, integrations) and the agent (remote
 * integrations). The engine runs untrusted user scripts in isolated-vm isolates; see engine.ts.
 */

/** Script conventions: ThingsBoard function bodies, TTN Device Repository codecs, Thinger plugin modules. */
export type Dialect = 'thingsboard' | 'ttn' | 'thinger'
export type Direction = 'uplink' | 'downlink'

/** Entry points by dialect: Decoder/Encoder (thingsboard), decodeUplink/encodeDownlink/decodeDownlink (ttn), uplink/downlink (thinger). */
export type ConverterFunction =
  | 'Decoder'
  | 'Encoder'
  | 'decodeUplink'
  | 'encodeDownlink'
  | 'decodeDownlink'
  | 'uplink'
  | 'downlink'

/** A script to run; `key` names one compiled version (for example `user/id@updated_ts`). */
export interface ConverterScript {
  key: string
  dialect: Dialect
  script: string
}

/**
 * Arguments by function, as the host passes them (the engine adapts them to each dialect):
 * - Decoder: `{ payload: Uint8Array, metadata }` → the script sees `payload` as an array of byte values.
 * - Encoder: `{ msg, metadata, msgType, integrationMetadata }`.
 * - decodeUplink: `{ bytes: Uint8Array, fPort?, recvTime?: Date }`; decodeDownlink: `{ bytes, fPort? }`;
 *   encodeDownlink: `{ data, fPort? }` (the script sees plain arrays of byte values for `bytes`).
 * - uplink / downlink: `{ payload }`: a Uint8Array becomes a `Buffer` inside, anything else is passed as JSON.
 */
export interface ConverterInput {
  payload?: unknown
  metadata?: Record<string, unknown>
  msg?: unknown
  msgType?: string
  integrationMetadata?: Record<string, unknown>
  bytes?: Uint8Array | number[]
  fPort?: number
  recvTime?: Date
  data?: unknown
}

/** One `console.*` line captured inside the script. */
export interface ConverterLog {
  level: 'log' | 'info' | 'warn' | 'error' | 'debug'
  message: string
}

/** What a successful call returns; byte arrays (Buffer, Uint8Array) in the output come back as Uint8Array. */
export interface ConverterResult {
  output: unknown
  logs: ConverterLog[]
  durationMs: number
}

/** Why a call failed. */
export type ConverterErrorCode =
  | 'syntax' // the script does not compile
  | 'missing-function' // the dialect's entry point is not defined
  | 'script' // the script threw
  | 'timeout' // CPU time limit exceeded
  | 'memory' // memory limit exceeded (the isolate is replaced)
  | 'output' // the result cannot leave the sandbox (functions, cycles, too large)
  | 'input' // the host passed arguments the function cannot take
