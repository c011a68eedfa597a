/**
 * The relay's converters: definitions from the store run in the shared engine (one isolate pool per relay), each
 * version compiled once, with debug events for converters that ask for them. Integrations call `run`; the API
 * calls `test`.
 */
import type { Logger } from 'pino'
import {
  type ConverterEngine,
  ConverterError,
  type ConverterFunction,
  type ConverterInput,
  type ConverterResult,
  type ConverterScript,
  defaultFunction,
} from '../../converters/index.ts'
import { RelayErrors } from '../errors.ts'
import type { ConvertersStore } from './converters-store.ts'
import type { DebugEvents } from './debug-events.ts'
import type { ConverterRecord, ConverterTestInput, ConverterTestResult } from './schemas.ts'

export interface ConverterServiceOptions {
  store: ConvertersStore
  engine: ConverterEngine
  debug: DebugEvents
  log: Logger
}

/** Debug ring key of a converter. */
export const converterDebugKey = (user: string, id: string) => `converter:${user}/${id}`

/** The engine's view of a stored converter: the key changes with every update, so each version compiles once. */
export function scriptOf(record: ConverterRecord): ConverterScript {
  return {
    key: `${record.user}/${record.id}@${record.updated_ts}`,
    dialect: record.dialect,
    script: record.script,
  }
}

/** A JSON-friendly copy of converter output: byte arrays become arrays of numbers. */
export function jsonOutput(value: unknown): unknown {
  if (value instanceof Uint8Array) return Array.from(value)
  if (Array.isArray(value)) return value.map(jsonOutput)
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonOutput(v)]))
  }
  return value
}

/** Bytes of a test input: hex, base64 or text (empty when none is given). */
function testBytes(input: ConverterTestInput): Uint8Array {
  if (input.payload_hex !== undefined) return Buffer.from(input.payload_hex, 'hex')
  if (input.payload_base64 !== undefined) return Buffer.from(input.payload_base64, 'base64')
  if (input.payload_text !== undefined) return Buffer.from(input.payload_text, 'utf8')
  return new Uint8Array(0)
}

/** The engine input a function takes, built from a test sample. */
function testCall(fn: ConverterFunction, input: ConverterTestInput): ConverterInput {
  const metadata = input.metadata ?? {}
  switch (fn) {
    case 'Decoder':
      return { payload: testBytes(input), metadata }
    case 'Encoder':
      return {
        msg: input.data ?? {},
        metadata,
        msgType: input.msgType ?? 'ATTRIBUTES_UPDATED',
        integrationMetadata: input.integrationMetadata ?? {},
      }
    case 'decodeUplink':
      return { bytes: testBytes(input), fPort: input.fPort ?? 1, recvTime: new Date() }
    case 'decodeDownlink':
      return { bytes: testBytes(input), fPort: input.fPort ?? 1 }
    case 'encodeDownlink':
      return { data: input.data ?? {}, ...(input.fPort !== undefined ? { fPort: input.fPort } : {}) }
    case 'uplink':
      return { payload: input.payload_json !== undefined ? input.payload_json : testBytes(input) }
    case 'downlink':
      return { payload: input.data ?? {} }
  }
}

export class ConverterService {
  readonly store: ConvertersStore
  readonly engine: ConverterEngine
  readonly #debug: DebugEvents
  readonly #log: Logger

  constructor(opts: ConverterServiceOptions) {
    this.store = opts.store
    this.engine = opts.engine
    this.#debug = opts.debug
    this.#log = opts.log
  }

  /** A stored converter, or 404. */
  async load(user: string, id: string): Promise<ConverterRecord> {
    const record = await this.store.get(user, id)
    if (!record) throw new RelayErrors.TETHER_ERR_NOT_FOUND(`converter ${user}/${id}`)
    return record
  }

  /** Compiles a script version up front, so a syntax error is a 400 at save time rather than an event later. */
  async check(record: ConverterRecord): Promise<void> {
    try {
      await this.engine.compile(scriptOf(record))
    } catch (err) {
      if (err instanceof ConverterError)
        throw new RelayErrors.TETHER_ERR_BAD_REQUEST(`body/script: ${err.message}`)
      throw err
    }
  }

  /** Drops compiled versions and debug events of a converter that changed or went away. */
  forget(record: ConverterRecord, keepDebug = false): void {
    this.engine.forget(`${record.user}/${record.id}@`)
    if (!keepDebug) this.#debug.clear(converterDebugKey(record.user, record.id))
  }

  /**
   * Runs a converter's function; a debug converter records the call. Rejects with a ConverterError, which
   * callers turn into their own error events.
   */
  async run(
    record: ConverterRecord,
    fn: ConverterFunction,
    input: ConverterInput,
    kind: string = record.direction,
  ): Promise<ConverterResult> {
    const started = performance.now()
    try {
      const result = await this.engine.run(scriptOf(record), fn, input)
      if (record.debug) {
        this.#debug.add(converterDebugKey(record.user, record.id), {
          ts: Date.now(),
          kind,
          in: input,
          out: result.output,
          metadata: input.metadata,
          duration_ms: result.durationMs,
        })
      }
      return result
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err)
      if (record.debug) {
        this.#debug.add(converterDebugKey(record.user, record.id), {
          ts: Date.now(),
          kind,
          in: input,
          metadata: input.metadata,
          error: message,
          duration_ms: err instanceof ConverterError ? err.durationMs : performance.now() - started,
        })
      }
      if (!(err instanceof ConverterError))
        this.#log.error({ err, converter: record.id }, 'converter engine failed')
      throw err
    }
  }

  /** The test tool: runs the converter on a sample and answers output or error, logs and timing. */
  async test(record: ConverterRecord, input: ConverterTestInput): Promise<ConverterTestResult> {
    const fn = (input.function ?? defaultFunction(record.dialect, record.direction)) as ConverterFunction
    try {
      const result = await this.run(record, fn, testCall(fn, input), 'test')
      return {
        ok: true,
        function: fn,
        output: jsonOutput(result.output),
        logs: result.logs,
        duration_ms: result.durationMs,
      }
    } catch (err) {
      if (!(err instanceof ConverterError)) throw err
      return {
        ok: false,
        function: fn,
        error: { code: err.code, message: err.message },
        logs: err.logs,
        duration_ms: err.durationMs,
      }
    }
  }

  /** Debug events of a converter, oldest first. */
  events(record: ConverterRecord) {
    return this.#debug.list(converterDebugKey(record.user, record.id))
  }
}
