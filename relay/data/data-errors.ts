/**
 * Errors of the `$data` uplink, answered as RUN ERROR {code, message}. The wire code tells the agent what to
 * do: BAD_ENCODING means the batch can never be accepted (the agent narrows it down to the offending record);
 * any other code means "not stored, resend later".
 */
import { TetherProtocolError } from '../../protocol/errors.ts'
import { WireErrorCode } from '../../protocol/messages.ts'

const catalogue = {
  TETHER_ERR_DATA_BAD_BATCH: [WireErrorCode.BAD_ENCODING, (why: string) => `bad $data batch: ${why}`],
  TETHER_ERR_DATA_OUT_OF_SEQUENCE: [
    WireErrorCode.PROTOCOL_VIOLATION,
    (after: number, stored: number) =>
      `$data batch follows seq ${after} but the relay has stored up to ${stored}: resend from the oldest unacknowledged record`,
  ],
  TETHER_ERR_DATA_NOT_STORED: [
    WireErrorCode.HANDLER_FAILED,
    (why: string) => `records not stored, resend later: ${why}`,
  ],
} as const

type Catalogue = typeof catalogue
export type DataErrorCode = keyof Catalogue

/** Builds the catalogue error `code` with its message template filled in. */
export function dataError<C extends DataErrorCode>(
  code: C,
  ...args: Parameters<Catalogue[C][1]>
): TetherProtocolError {
  const [wireCode, template] = catalogue[code]
  return new TetherProtocolError(code, wireCode, (template as (...a: unknown[]) => string)(...args))
}

/** Every code, for docs and tests. */
export const DATA_ERROR_CODES = Object.keys(catalogue) as DataErrorCode[]
