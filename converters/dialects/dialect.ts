/** What the engine needs to know of a dialect: its entry points, its sandbox globals, how scripts and arguments are shaped. */
import { ConverterError } from '../errors.ts'
import type { ConverterFunction, ConverterInput, ConverterScript } from '../types.ts'

/** Name of the user's script in stack traces and error positions. */
export const SCRIPT_FILENAME = 'converter.js'

export interface DialectSpec {
  readonly uplink: ConverterFunction
  readonly downlink: ConverterFunction
  readonly functions: readonly ConverterFunction[]
  /** Whether the sandbox gets the `buffer` package's `Buffer` (buffer-source.ts). */
  readonly buffer: boolean
  /** Sandbox statements run before hardening: define the dialect's globals on `G` (the global object). */
  readonly globals: string
  /** Global names left writable and unfrozen (the rest of the globals are locked). */
  readonly mutableGlobals: readonly string[]
  /** Sandbox function expression `(f) => entry function or undefined`. */
  readonly entry: string
  /** Sandbox function expression `(f, a) => [thisArg, argumentList]`; `a` is what `encodeInput` returned. */
  readonly adapt: string
  /** One sandbox context per unit key: the script's key, plus the function when the compiled code depends on it. */
  unitKey(script: ConverterScript, fn: ConverterFunction | undefined): string
  /**
   * The code the sandbox compiles for `fn` (undefined: a syntax check that fits every function), and the line
   * offset that keeps error lines in the user's numbering.
   */
  wrap(source: string, fn: ConverterFunction | undefined): { code: string; lineOffset: number; runs: boolean }
  /** The host's arguments as the JSON text `adapt` receives; throws ConverterError('input'). */
  encodeInput(fn: ConverterFunction, input: ConverterInput): string
}

const DECIMAL = Array.from({ length: 256 }, (_, i) => String(i))

/** A byte array as JSON (an array of numbers; on the hot path, so a loop, faster than join); a string is taken as UTF-8. */
export function bytesJson(value: unknown, name: string): string {
  if (value instanceof Uint8Array) {
    if (value.length === 0) return '[]'
    let json = `[${DECIMAL[value[0]]}`
    for (let i = 1; i < value.length; i++) json += `,${DECIMAL[value[i]]}`
    return `${json}]`
  }
  if (typeof value === 'string') return `[${Buffer.from(value, 'utf8').join(',')}]`
  if (Array.isArray(value) && value.every((b) => Number.isInteger(b) && b >= 0 && b <= 255))
    return `[${value.join(',')}]`
  throw new ConverterError('input', `${name} must be a Uint8Array or an array of byte values`)
}

/** A value as JSON text; `undefined` becomes `null`; values JSON cannot hold throw ConverterError('input'). */
export function jsonArg(value: unknown, name: string): string {
  try {
    return JSON.stringify(value) ?? 'null'
  } catch (err) {
    throw new ConverterError('input', `${name} cannot be passed as JSON: ${(err as Error).message}`)
  }
}

/** An optional object argument (metadata) as JSON, `{}` when absent. */
export function objectJson(value: unknown, name: string): string {
  if (value === undefined || value === null) return '{}'
  if (typeof value === 'object' && !Array.isArray(value)) return jsonArg(value, name)
  throw new ConverterError('input', `${name} must be an object`)
}

/** An optional LoRaWAN port as a JSON member (`,"fPort":N`), empty when absent. */
export function portMember(value: unknown): string {
  if (value === undefined) return ''
  if (Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 255)
    return `,"fPort":${value}`
  throw new ConverterError('input', 'fPort must be an integer from 0 to 255')
}
