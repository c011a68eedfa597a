/** Error catalogue of the wire protocol. Each error carries the ERROR code it sends (or received). */
import { WireErrorCode } from './messages.ts'

/** Base of every protocol error: a stable string code plus the wire code. */
export class TetherProtocolError extends Error {
  constructor(
    readonly code: string,
    readonly wireCode: number,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options)
    this.name = code
  }
}

const catalogue = {
  TETHER_ERR_FRAME_TOO_LARGE: [
    WireErrorCode.BAD_ENCODING,
    (size: number, max: number) => `frame of ${size} bytes exceeds the ${max}-byte cap`,
  ],
  TETHER_ERR_BAD_ENCODING: [WireErrorCode.BAD_ENCODING, (why: string) => `malformed frame: ${why}`],
  TETHER_ERR_UNKNOWN_TYPE: [WireErrorCode.BAD_ENCODING, (type: number) => `unknown message type ${type}`],
  TETHER_ERR_PROTOCOL: [WireErrorCode.PROTOCOL_VIOLATION, (why: string) => `protocol violation: ${why}`],
  TETHER_ERR_REQUEST_TIMEOUT: [
    WireErrorCode.REQUEST_TIMEOUT,
    (what: string, ms: number) => `${what} got no reply within ${ms} ms`,
  ],
  TETHER_ERR_BAD_CREDENTIALS: [WireErrorCode.BAD_CREDENTIALS, () => 'bad credentials'],
  TETHER_ERR_DEVICE_DISABLED: [WireErrorCode.DEVICE_DISABLED, () => 'device disabled'],
  TETHER_ERR_REPLACED: [WireErrorCode.REPLACED, () => 'replaced by a newer connection'],
  TETHER_ERR_LINK_CLOSED: [WireErrorCode.LINK_CLOSED, (why: string) => `link closed: ${why}`],
} as const

type Catalogue = typeof catalogue
type Code = keyof Catalogue

/** Builds the catalogue error `code` with its message template filled in. */
export function protocolError<C extends Code>(
  code: C,
  ...args: Parameters<Catalogue[C][1]>
): TetherProtocolError {
  const [wireCode, template] = catalogue[code]
  return new TetherProtocolError(code, wireCode, (template as (...a: unknown[]) => string)(...args))
}

/** Every catalogue code, for docs and tests. */
export const PROTOCOL_ERROR_CODES = Object.keys(catalogue) as Code[]

/** The peer answered ERROR `{code, message}`. */
export class RemoteError extends Error {
  readonly code = 'TETHER_ERR_REMOTE'
  constructor(
    readonly wireCode: number,
    message: string,
  ) {
    super(message)
    this.name = 'RemoteError'
  }
}
