/**
 * Errors of the store-and-forward buffer, each with a stable code. Callers branch on `code`: a broker withholds
 * PUBACK and an HTTP ingest answers `status` (507) for TETHER_ERR_BUFFER_FULL, so the device keeps its message.
 */

/** A buffer error: stable `code`, and the HTTP status an ingest endpoint should answer. */
export class BufferError extends Error {
  constructor(
    readonly code: BufferErrorCode,
    readonly status: number,
    message: string,
  ) {
    super(message)
    this.name = code
  }
}

const catalogue = {
  TETHER_ERR_BUFFER_FULL: [
    507,
    (records: number, why: string) => `buffer full (policy reject-new): ${records} record(s) refused, ${why}`,
  ],
  TETHER_ERR_BUFFER_RECORD_INVALID: [400, (why: string) => `invalid record: ${why}`],
  TETHER_ERR_BUFFER_CLOSED: [503, () => 'buffer closed'],
} as const

type Catalogue = typeof catalogue
export type BufferErrorCode = keyof Catalogue

/** Builds the catalogue error `code` with its message template filled in. */
export function bufferError<C extends BufferErrorCode>(
  code: C,
  ...args: Parameters<Catalogue[C][1]>
): BufferError {
  const [status, template] = catalogue[code]
  return new BufferError(code, status, (template as (...a: unknown[]) => string)(...args))
}

/** Every code, for docs and tests. */
export const BUFFER_ERROR_CODES = Object.keys(catalogue) as BufferErrorCode[]
