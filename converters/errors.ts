/** The converter engine's one error type, and how isolated-vm's own failures map onto its codes. */
import type { ConverterErrorCode, ConverterLog } from './types.ts'

export const ERROR_CODES: readonly ConverterErrorCode[] = [
  'syntax',
  'missing-function',
  'script',
  'timeout',
  'memory',
  'output',
  'input',
]

/** A failed converter call: `code` says why, `logs` holds what the script printed before it failed. */
export class ConverterError extends Error {
  readonly code: ConverterErrorCode
  readonly logs: ConverterLog[]
  durationMs: number

  constructor(code: ConverterErrorCode, message: string, logs: ConverterLog[] = [], durationMs = 0) {
    super(message)
    this.name = 'ConverterError'
    this.code = code
    this.logs = logs
    this.durationMs = durationMs
  }
}

/** True for one of the engine's error codes (records coming out of the sandbox are checked with it). */
export function isErrorCode(value: unknown): value is ConverterErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value)
}

// isolated-vm's messages for the failures it raises itself (src/isolate/*.cc, run_with_timeout.h): "Isolate was
// disposed during execution due to memory limit" for the call that hit the limit, "Isolate is disposed" for
// work sent to an isolate that is gone.
const TIMEOUT_MESSAGE = 'Script execution timed out.'
const ALLOCATION_FAILED = 'Array buffer allocation failed'

/** What an error thrown by an isolated-vm call means for the converter, or undefined if it is none of ours. */
export function classifyIsolateError(err: unknown): 'timeout' | 'memory' | 'disposed' | undefined {
  const message = err instanceof Error ? err.message : String(err)
  if (message === TIMEOUT_MESSAGE) return 'timeout'
  if (message.includes('memory limit') || message.includes(ALLOCATION_FAILED)) return 'memory'
  if (message.includes('disposed')) return 'disposed'
  return undefined
}

/**
 * A compile error from isolated-vm ("Unexpected token ';' [converter.js:3:9]") as "SyntaxError: Unexpected token
 * ';' (line 3)", the line counted in the user's script.
 */
export function describeCompileError(err: unknown, filename: string): string {
  const e = err instanceof Error ? err : new Error(String(err))
  const at = ` [${filename}:`
  const i = e.message.lastIndexOf(at)
  if (i < 0) return `${e.name}: ${e.message}`
  const line = Number.parseInt(e.message.slice(i + at.length), 10)
  return `${e.name}: ${e.message.slice(0, i)}${Number.isFinite(line) ? ` (line ${line})` : ''}`
}

/** A runtime error copied out of the isolate (a top-level throw while loading) as "Name: message (line N)". */
export function describeRuntimeError(err: unknown, filename: string): string {
  if (!(err instanceof Error)) return String(err)
  const text = `${err.name}: ${err.message}`
  const at = `${filename}:`
  const i = err.stack?.indexOf(at) ?? -1
  if (i < 0 || !err.stack) return text
  const line = Number.parseInt(err.stack.slice(i + at.length), 10)
  return Number.isFinite(line) ? `${text} (line ${line})` : text
}
