/**
 * The IoTMP vocabulary: message type codes, wire error codes and the params shapes both sides exchange.
 * DESIGN.md, "Wire protocol". agent/ and relay/ declare no wire shapes of their own.
 */
import { type Static, Type } from 'typebox'

/** WebSocket path and subprotocol of the tunnel. */
export const IOTMP_PATH = '/iotmp'
export const IOTMP_SUBPROTOCOL = 'iotmp.msgpack.v1'
/** Protocol version sent in CONNECT `pv`. */
export const PROTOCOL_VERSION = 1

/** Default and hard limits, with units in the names. */
export const MAX_FRAME_BYTES = 1024 * 1024
/** Per-stream receive window granted at first (DESIGN.md). */
export const DEFAULT_WINDOW_BYTES = 256 * 1024
/**
 * A stream's window doubles up to this while its peer runs out of credit and its consumer keeps up (see
 * ReceiveWindow.grow): one stream's throughput is capped near window / credit round trip.
 */
export const DEFAULT_MAX_WINDOW_BYTES = 4 * 1024 * 1024
export const MAX_WINDOW_BYTES = 16 * 1024 * 1024
export const DEFAULT_KEEP_ALIVE_SEC = 60
export const MIN_KEEP_ALIVE_SEC = 1
export const MAX_KEEP_ALIVE_SEC = 1800
/** IoTMP: a link is dead after ka * 1.15 s without any inbound message. */
export const KEEP_ALIVE_GRACE = 1.15
export const DEFAULT_REQUEST_TIMEOUT_MS = 15_000
export const DIAL_TIMEOUT_MS = 10_000

/** IoTMP message type codes; 11 is Tether's extension. */
export const MessageType = {
  OK: 1,
  ERROR: 2,
  CONNECT: 3,
  DISCONNECT: 4,
  KEEP_ALIVE: 5,
  RUN: 6,
  DESCRIBE: 7,
  START_STREAM: 8,
  STOP_STREAM: 9,
  STREAM_DATA: 10,
  STREAM_CREDIT: 11,
} as const
export type MessageType = (typeof MessageType)[keyof typeof MessageType]

const TYPE_NAMES = new Map<number, string>(Object.entries(MessageType).map(([name, code]) => [code, name]))

/** Human name of a type code, for logs. */
export function messageTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `UNKNOWN(${type})`
}

/** True when `type` is a code this version understands. */
export function isKnownType(type: number): type is MessageType {
  return TYPE_NAMES.has(type)
}

/** One decoded message: `[type, streamId, params, payload, resource]` on the wire. */
export interface Message {
  type: MessageType
  streamId: number
  params?: Record<string, unknown>
  payload?: unknown
  resource?: string
}

/**
 * Codes carried in ERROR params. 1-4 are IoTMP's CONNECT codes, 5-6 Tether's CONNECT additions,
 * 10+ are Tether's stream and request errors.
 */
export const WireErrorCode = {
  REDIRECT: 1,
  BAD_CREDENTIALS: 2,
  INVALID_KEEP_ALIVE: 3,
  BAD_ENCODING: 4,
  DEVICE_DISABLED: 5,
  REPLACED: 6,
  PROTOCOL_VIOLATION: 10,
  UNKNOWN_RESOURCE: 11,
  TARGET_NOT_ALLOWED: 12,
  DIAL_FAILED: 13,
  DIAL_TIMEOUT: 14,
  REQUEST_TIMEOUT: 15,
  HANDLER_FAILED: 16,
  LINK_CLOSED: 17,
} as const
export type WireErrorCode = (typeof WireErrorCode)[keyof typeof WireErrorCode]

/** ERROR params. */
export const ErrorParams = Type.Object({ code: Type.Integer(), message: Type.String() })
export type ErrorParams = Static<typeof ErrorParams>

/** CONNECT params; payload is `[user, device, credential]`. */
export const ConnectParams = Type.Object({
  pv: Type.Integer({ minimum: 1 }),
  ka: Type.Integer({ minimum: MIN_KEEP_ALIVE_SEC, maximum: MAX_KEEP_ALIVE_SEC }),
  agent: Type.Optional(Type.String({ maxLength: 64 })),
  window: Type.Optional(Type.Integer({ minimum: 1024, maximum: MAX_WINDOW_BYTES })),
})
export type ConnectParams = Static<typeof ConnectParams>

export const ConnectPayload = Type.Tuple([
  Type.String({ minLength: 1, maxLength: 64 }),
  Type.String({ minLength: 1, maxLength: 64 }),
  Type.String({ minLength: 1, maxLength: 256 }),
])

/** OK params answering CONNECT. */
export const ConnectOkParams = Type.Object({
  ka: Type.Integer({ minimum: MIN_KEEP_ALIVE_SEC, maximum: MAX_KEEP_ALIVE_SEC }),
  maxFrame: Type.Integer({ minimum: 1024 }),
  window: Type.Integer({ minimum: 1024, maximum: MAX_WINDOW_BYTES }),
})
export type ConnectOkParams = Static<typeof ConnectOkParams>

/** START_STREAM params for resource `$proxy/<proxyId>`. */
export const StartStreamParams = Type.Object({
  protocol: Type.Union([Type.Literal('tcp'), Type.Literal('udp')]),
  address: Type.String({ minLength: 1, maxLength: 255 }),
  port: Type.Integer({ minimum: 1, maximum: 65535 }),
  secure: Type.Optional(Type.Boolean()),
  servername: Type.Optional(Type.String({ maxLength: 255 })),
  verify: Type.Optional(Type.Boolean()),
  window: Type.Integer({ minimum: 1024, maximum: MAX_WINDOW_BYTES }),
})
export type StartStreamParams = Static<typeof StartStreamParams>

/** OK params answering START_STREAM. */
export const StartStreamOkParams = Type.Object({
  window: Type.Integer({ minimum: 1024, maximum: MAX_WINDOW_BYTES }),
})

/** STOP_STREAM params: `half` ends one direction (TCP FIN); `error` marks an abnormal close. */
export const StopStreamParams = Type.Object({
  half: Type.Optional(Type.Boolean()),
  error: Type.Optional(Type.String()),
})
export type StopStreamParams = Static<typeof StopStreamParams>

/** Resource prefix of proxy streams. */
export const PROXY_RESOURCE_PREFIX = '$proxy/'
