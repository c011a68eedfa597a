/** Progress lines of the bench on stderr. */

/** Writes `[bench] msg` as one line to stderr. */
export function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`)
}

/** The message of an error, or the value as text. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
