/**
 * One isolate of the engine's pool: the prelude compiled once per dialect, one context per converter unit (least
 * recently used dropped first), and the batches it runs. A slot whose isolate is disposed by the memory limit,
 * or lost to a catastrophic error or the watchdog (watchdog.ts), gets a new isolate; batches in flight learn why.
 *
 * A lost isolate's thread cannot be reclaimed (isolated-vm parks it; it may still be running a builtin that
 * ignores termination, such as for-in over a 2^28-character string), so the process cannot exit cleanly
 * afterwards: the engine reports it (onCatastrophicError) and carries on, and the process should be restarted.
 */
import ivm from 'isolated-vm'
import { type DialectSpec, SCRIPT_FILENAME } from './dialects/index.ts'
import { ConverterError, classifyIsolateError, describeCompileError, describeRuntimeError } from './errors.ts'
import { decodeLogs, PRELUDE_FILENAME, type PreludeLimits, preludeSource } from './sandbox-prelude.ts'
import type { ConverterFunction, ConverterLog, ConverterScript } from './types.ts'
import { IsolateLost, Watchdog } from './watchdog.ts'

type Dispatch = (op: string, arg?: string | number, windowMs?: number, id?: number) => string | boolean

/** A loaded converter: its own context, with the prelude's dispatcher and the user's script run in it. */
export interface Unit {
  readonly key: string
  readonly context: ivm.Context
  readonly dispatch: ivm.Reference<Dispatch>
}

export interface SlotOptions {
  memoryLimitMb: number
  timeoutMs: number
  maxContexts: number
  limits: PreludeLimits
  /** Called when isolated-vm reports a catastrophic error or the watchdog gives up on an isolate. */
  onCatastrophic: (message: string) => void
}

/** How a batch ended: the records of the calls that ran, and what stopped it early. */
export interface BatchOutcome {
  records: string[]
  /**
   * What stopped the batch. `culpritKnown`: the first call without a record was running (its records are
   * kept); else the batch's records are lost with the isolate. `retry`: the batch never ran, run it again.
   */
  failure?: {
    code: 'timeout' | 'memory'
    message: string
    logs: ConverterLog[]
    culpritKnown: boolean
    retry: boolean
  }
}

// Running the prelude freezes ~800 objects: a few ms, far from any limit a call has.
const PRELUDE_TIMEOUT_MS = 5000
/** Batches queued on one isolate at once (same unit only): the next is ready when the current one ends. */
export const PIPELINE_DEPTH = 2

export class IsolateSlot {
  /** Batches handed to this isolate and not finished. */
  inflight = 0
  /** The unit those batches belong to. */
  current: string | undefined
  /** Whether another batch of `current` may queue behind the running one. */
  pipelining = false
  isolatesReplaced = 0
  readonly #o: SlotOptions
  #isolate!: ivm.Isolate
  #preludes = new Map<DialectSpec, ivm.Script>()
  #units = new Map<string, Unit>()
  #loading = new Map<string, Promise<Unit | null>>()
  readonly #watchdog = new Watchdog((limitMs) =>
    this.#lose('timeout', `watchdog: the isolate did not stop within ${limitMs} ms and was replaced`),
  )
  #disposed = false
  #batchId = 0
  // Units forgotten while a batch of theirs ran: released when the slot is idle again.
  #dropLater = new Set<string>()
  // Isolates lost to catastrophic errors stay referenced: disposing them, or letting the GC do it, can block
  // on their stuck thread.
  readonly #lost: ivm.Isolate[] = []

  constructor(options: SlotOptions) {
    this.#o = options
    this.#newIsolate()
  }

  #newIsolate(): void {
    const isolate: ivm.Isolate = new ivm.Isolate({
      memoryLimit: this.#o.memoryLimitMb,
      onCatastrophicError: (message) => {
        if (isolate !== this.#isolate) return
        this.#lose(message.includes('memory') ? 'memory' : 'timeout', message)
      },
    })
    this.#isolate = isolate
  }

  /** Gives up on the isolate (kept referenced, never disposed): new isolate, every promise in flight rejected. */
  #lose(code: 'timeout' | 'memory', message: string): void {
    this.#lost.push(this.#isolate)
    this.#replace()
    this.#watchdog.abortAll(code, message)
    this.#o.onCatastrophic(message)
  }

  /** Drops every context and starts a new isolate (the old one is disposed unless it is lost). */
  #replace(): void {
    if (this.#disposed) return
    const old = this.#isolate
    this.#preludes.clear()
    this.#units.clear()
    this.#loading.clear()
    this.isolatesReplaced++
    this.#newIsolate()
    if (!this.#lost.includes(old) && !old.isDisposed) old.dispose()
  }

  /** Number of loaded contexts. */
  get contexts(): number {
    return this.#units.size
  }

  /** Whether the unit is loaded here (the pool prefers such a slot). */
  has(key: string): boolean {
    return this.#units.has(key)
  }

  /** The loaded unit for `key`, loading it (compile, new context, prelude, top level) once. Null for a syntax-only check. */
  unit(
    key: string,
    spec: DialectSpec,
    script: ConverterScript,
    fn: ConverterFunction | undefined,
  ): Promise<Unit | null> {
    const loaded = this.#units.get(key)
    if (loaded) {
      this.#units.delete(key)
      this.#units.set(key, loaded)
      return Promise.resolve(loaded)
    }
    let loading = this.#loading.get(key)
    if (!loading) {
      const isolate = this.#isolate
      loading = this.#load(key, spec, script, fn).finally(() => {
        if (isolate === this.#isolate) this.#loading.delete(key)
      })
      this.#loading.set(key, loading)
    }
    return loading
  }

  async #load(key: string, spec: DialectSpec, script: ConverterScript, fn: ConverterFunction | undefined) {
    if (this.#disposed) throw new Error('the converter engine is closed')
    const isolate = this.#isolate
    const { timeoutMs } = this.#o
    const wrapped = spec.wrap(script.script, fn)
    let compiled: ivm.Script
    try {
      compiled = await isolate.compileScript(wrapped.code, {
        filename: SCRIPT_FILENAME,
        lineOffset: wrapped.lineOffset,
      })
    } catch (err) {
      throw this.#loadError(err, 'compile', isolate)
    }
    if (!wrapped.runs) {
      compiled.release()
      return null
    }
    const context = await isolate.createContext()
    try {
      const prelude = await this.#prelude(spec)
      const dispatch = (await this.#watchdog.guard(
        prelude.run(context, { reference: true, timeout: PRELUDE_TIMEOUT_MS }),
        PRELUDE_TIMEOUT_MS,
      )) as ivm.Reference<Dispatch>
      await this.#watchdog.guard(compiled.run(context, { timeout: timeoutMs }), timeoutMs)
      this.#evict()
      const unit = { key, context, dispatch }
      if (isolate === this.#isolate) this.#units.set(key, unit)
      return unit
    } catch (err) {
      if (isolate === this.#isolate) context.release()
      throw this.#loadError(err, 'run', isolate)
    } finally {
      compiled.release()
    }
  }

  async #prelude(spec: DialectSpec): Promise<ivm.Script> {
    let script = this.#preludes.get(spec)
    if (!script) {
      script = await this.#isolate.compileScript(preludeSource(spec, this.#o.limits), {
        filename: PRELUDE_FILENAME,
      })
      this.#preludes.set(spec, script)
    }
    return script
  }

  /** Makes room for one more context: least recently used first, never the unit running here. */
  #evict(): void {
    for (const [key] of this.#units) {
      if (this.#units.size < this.#o.maxContexts) return
      if (key !== this.current) this.drop(key)
    }
  }

  /** A load failure as a ConverterError; replaces the isolate when it was the memory limit. */
  #loadError(err: unknown, phase: 'compile' | 'run', isolate: ivm.Isolate): ConverterError {
    if (err instanceof IsolateLost) return new ConverterError(err.code, err.message)
    const kind = classifyIsolateError(err)
    if (kind === 'timeout') {
      return new ConverterError(
        'timeout',
        `the script's top level ran over the ${this.#o.timeoutMs} ms limit`,
      )
    }
    if (kind === 'memory' || kind === 'disposed') {
      if (isolate === this.#isolate) this.#replace()
      return new ConverterError(
        'memory',
        `the script's top level ran over the ${this.#o.memoryLimitMb} MiB limit`,
      )
    }
    if (phase === 'compile') return new ConverterError('syntax', describeCompileError(err, SCRIPT_FILENAME))
    return new ConverterError('script', describeRuntimeError(err, SCRIPT_FILENAME))
  }

  /** Whether the loaded script defines the entry point `fn`. */
  async hasEntry(unit: Unit, fn: ConverterFunction): Promise<boolean> {
    const { timeoutMs } = this.#o
    const found = await this.#watchdog.guard(
      unit.dispatch.apply(undefined, ['has', fn], { timeout: timeoutMs }),
      timeoutMs,
    )
    return found === true
  }

  /**
   * Runs a batch of calls (each a `{"f","a"}` JSON text) in the unit's context. Calls that did not start in
   * `windowMs` have no record; the caller re-queues them.
   */
  async run(unit: Unit, calls: string[], windowMs: number): Promise<BatchOutcome> {
    const isolate = this.#isolate
    const id = ++this.#batchId
    const timeout = calls.length === 1 ? this.#o.timeoutMs : this.#o.timeoutMs + windowMs
    const batch = `[${calls.join(',')}]`
    try {
      const run = unit.dispatch.apply(undefined, ['run', batch, windowMs, id], { timeout })
      // A pipelined batch waits for the one before it: the watchdog allows for both.
      const out = await this.#watchdog.guard(run, (this.#o.timeoutMs + windowMs) * PIPELINE_DEPTH)
      return { records: typeof out === 'string' && out.length > 0 ? out.split('\n') : [] }
    } catch (err) {
      return this.#batchFailure(unit, id, err, isolate)
    }
  }

  async #batchFailure(unit: Unit, id: number, err: unknown, isolate: ivm.Isolate): Promise<BatchOutcome> {
    const lost = (code: 'timeout' | 'memory', message: string, retry: boolean) => ({
      records: [],
      failure: { code, message, logs: [], culpritKnown: false, retry },
    })
    if (err instanceof IsolateLost) return lost(err.code, err.message, !err.running)
    const kind = classifyIsolateError(err)
    if (kind === 'timeout') {
      // The calls that finished before the one that ran out of time keep their results.
      const { timeoutMs } = this.#o
      const collected = await this.#watchdog
        .guard(unit.dispatch.apply(undefined, ['collect', id], { timeout: timeoutMs }), timeoutMs)
        .catch(() => '')
      const records = typeof collected === 'string' ? collected.split('\n') : []
      const last = records.pop() ?? ''
      const logs = last.startsWith('L') ? decodeLogs(safeParse(last.slice(1))) : []
      const message = `the script ran over the ${timeoutMs} ms time limit`
      return { records, failure: { code: 'timeout', message, logs, culpritKnown: true, retry: false } }
    }
    if (kind === 'memory' || kind === 'disposed' || isolate.isDisposed) {
      // Only the batch that was executing hit the limit; one queued behind it on the same isolate never ran.
      if (isolate === this.#isolate) this.#replace()
      const message = `the script ran over the ${this.#o.memoryLimitMb} MiB memory limit (isolate replaced)`
      return lost('memory', message, kind !== 'memory')
    }
    throw err
  }

  /** Releases one unit's context. */
  drop(key: string): void {
    const unit = this.#units.get(key)
    if (!unit) return
    this.#units.delete(key)
    unit.dispatch.release()
    unit.context.release()
  }

  /** Releases every unit whose key starts with `prefix` (a unit running now, once the slot is idle). */
  forget(prefix: string): void {
    for (const key of [...this.#units.keys()]) {
      if (!key.startsWith(prefix)) continue
      if (key === this.current && this.inflight > 0) this.#dropLater.add(key)
      else this.drop(key)
    }
  }

  /** Called by the pool when the slot's last batch ended. */
  idle(): void {
    this.current = undefined
    for (const key of this.#dropLater) this.drop(key)
    this.#dropLater.clear()
  }

  /** Disposes the isolate (lost isolates are left alone, see #lost); batches in flight fail. */
  dispose(): void {
    this.#disposed = true
    this.#units.clear()
    this.#loading.clear()
    this.#preludes.clear()
    if (!this.#isolate.isDisposed) this.#isolate.dispose()
  }
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
