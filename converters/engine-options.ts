/** The engine's options, their defaults, and the limits derived from them. */
import { availableParallelism } from 'node:os'
import type { PreludeLimits } from './sandbox-prelude.ts'

export interface EngineOptions {
  /** Heap limit of each isolate, in MiB (default 32): what one call may allocate, roughly. */
  memoryLimitMb?: number
  /** Time limit of one call (and of a script's top level), in ms (default 200). */
  timeoutMs?: number
  /** Isolates in the pool (default min(4, available parallelism)). */
  isolates?: number
  /** `console.*` lines kept per call (default 100; each cut at 1000 characters). */
  maxLogLines?: number
  /** Largest output, in characters of JSON (default 1 MiB). */
  maxOutputBytes?: number
  /** Contexts (loaded converter versions) kept per isolate, least recently used dropped first (default 32). */
  maxContextsPerIsolate?: number
  /**
   * Told when an isolate is lost: isolated-vm reported a catastrophic error, or the watchdog gave up on a thread
   * that ignored its time limit (default: a process warning). The engine goes on with a new isolate, but the
   * process should be restarted when convenient: the lost thread cannot be reclaimed and blocks a clean exit.
   */
  onCatastrophicError?: (message: string) => void
}

/** Counters for health checks and tests. */
export interface EngineStats {
  isolates: number
  busyIsolates: number
  queued: number
  contexts: number
  isolatesReplaced: number
  catastrophicErrors: number
}

export interface ResolvedOptions {
  memoryLimitMb: number
  timeoutMs: number
  isolates: number
  maxContexts: number
  /** A call in a batch starts only this early in it, so each call keeps (almost) its whole time limit. */
  windowMs: number
  maxInputChars: number
  /** Isolates one unit may run on at once: all but one, so a stuck converter cannot stall the others. */
  unitMaxSlots: number
  limits: PreludeLimits
}

const MAX_LOG_CHARS = 1000

/** A whole number ≥ `min`, or a TypeError naming the option (as ws does for contradictory options). */
function atLeast(name: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) throw new TypeError(`${name} must be an integer >= ${min}`)
  return value
}

/** Fills in the defaults, checks the values and derives the limits. */
export function resolveOptions(options: EngineOptions): ResolvedOptions {
  // isolated-vm's own floor for an isolate's heap is 8 MiB.
  const memoryLimitMb = atLeast('memoryLimitMb', options.memoryLimitMb ?? 32, 8)
  const timeoutMs = atLeast('timeoutMs', options.timeoutMs ?? 200, 1)
  const isolates = atLeast('isolates', options.isolates ?? Math.min(4, availableParallelism()), 1)
  atLeast('maxLogLines', options.maxLogLines ?? 100, 0)
  atLeast('maxOutputBytes', options.maxOutputBytes ?? 1024 * 1024, 1)
  atLeast('maxContextsPerIsolate', options.maxContextsPerIsolate ?? 32, 1)
  const memoryBytes = memoryLimitMb * 1024 * 1024
  return {
    memoryLimitMb,
    timeoutMs,
    isolates,
    maxContexts: options.maxContextsPerIsolate ?? 32,
    windowMs: Math.max(1, Math.min(10, timeoutMs / 10)),
    maxInputChars: memoryBytes / 4,
    unitMaxSlots: Math.max(1, isolates - 1),
    limits: {
      maxLogLines: options.maxLogLines ?? 100,
      maxLogChars: MAX_LOG_CHARS,
      maxOutputChars: options.maxOutputBytes ?? 1024 * 1024,
      // Beyond these a dense array or string could not fit the heap anyway (8-byte elements, 4-byte chars margin).
      maxArrayLength: Math.floor(memoryBytes / 8),
      maxStringLength: Math.floor(memoryBytes / 4),
    },
  }
}
