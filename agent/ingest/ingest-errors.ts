/**
 * Errors of the local HTTP ingest, each with a stable code and the HTTP status it is answered with, as
 * `{error: {code, message}}` (the relay's error shape). Buffer errors (buffer-errors.ts) carry their own status:
 * TETHER_ERR_BUFFER_FULL is 507, so the device keeps its data and retries.
 */

/** An ingest error: stable `code`, HTTP `status`. */
export class IngestError extends Error {
  constructor(
    readonly code: IngestErrorCode,
    readonly status: number,
    message: string,
  ) {
    super(message)
    this.name = code
  }
}

const catalogue = {
  TETHER_ERR_INGEST_UNAUTHORIZED: [401, () => 'missing or wrong bearer token'],
  TETHER_ERR_INGEST_NOT_FOUND: [404, (path: string) => `no route ${path}; POST /data/{device}`],
  TETHER_ERR_INGEST_METHOD: [
    405,
    (method: string, allowed: string) => `${method} not allowed; use ${allowed}`,
  ],
  TETHER_ERR_INGEST_BAD_DEVICE: [
    400,
    (device: string) => `bad device id ${JSON.stringify(device)}: 1 to 64 of A-Z a-z 0-9 _ -`,
  ],
  TETHER_ERR_INGEST_BAD_TS: [400, () => 'ts must be an integer number of ms since the epoch'],
  TETHER_ERR_INGEST_BAD_JSON: [400, (why: string) => `body is not JSON: ${why}`],
  TETHER_ERR_INGEST_TOO_LARGE: [413, (max: number) => `body larger than ${max} bytes`],
} as const

type Catalogue = typeof catalogue
export type IngestErrorCode = keyof Catalogue

/** Builds the catalogue error `code` with its message template filled in. */
export function ingestError<C extends IngestErrorCode>(
  code: C,
  ...args: Parameters<Catalogue[C][1]>
): IngestError {
  const [status, template] = catalogue[code]
  return new IngestError(code, status, (template as (...a: unknown[]) => string)(...args))
}

/** Every code, for docs and tests. */
export const INGEST_ERROR_CODES = Object.keys(catalogue) as IngestErrorCode[]
