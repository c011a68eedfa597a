/**
 * The converter engine: runs untrusted converter scripts in a pool of isolated-vm isolates (isolate-slot.ts),
 * one context per converter version and isolate, hardened before the script runs (sandbox-harden.ts).
 *
 * Calls wait in one queue per unit (a converter version, see DialectSpec.unitKey); isolates take units in turn
 * (round robin) and run up to MAX_BATCH of a unit's waiting calls in one crossing into the isolate, so a busy
 * relay pays the thread hop once per batch rather than once per call, while an idle one runs each call at once.
 * A second batch of the same unit may queue behind the running one (PIPELINE_DEPTH), so the isolate does not
 * wait for the host in between. One unit never runs on every isolate (`isolates - 1` at most), and only its
 * own calls ever wait behind its batches: a converter stuck in a loop cannot stall the others.
 */
import { checkFunction, type DialectSpec, dialectSpec } from './dialects/index.ts'
import {
  type EngineOptions,
  type EngineStats,
  type ResolvedOptions,
  resolveOptions,
} from './engine-options.ts'
import { ConverterError } from './errors.ts'
import { IsolateSlot, PIPELINE_DEPTH } from './isolate-slot.ts'
import { decodeRecord, recordError } from './sandbox-prelude.ts'
import type {
  ConverterFunction,
  ConverterInput,
  ConverterLog,
  ConverterResult,
  ConverterScript,
} from './types.ts'

interface Job {
  kind: 'call' | 'load'
  unit: string
  spec: DialectSpec
  script: ConverterScript
  fn: ConverterFunction | undefined
  /** The call as the dispatcher reads it: `{"f": fn, "a": arguments}`. */
  json: string
  /** Must run in a batch of its own (after a batch was lost to the memory limit). */
  solo: boolean
  started: number
  resolve: (result: ConverterResult | undefined) => void
  reject: (err: Error) => void
}

const MAX_BATCH = 128
const MAX_SYNTAX_ERRORS = 1000

export type { EngineOptions, EngineStats }

export class ConverterEngine {
  readonly #slots: IsolateSlot[]
  readonly #queues = new Map<string, Job[]>()
  readonly #syntaxErrors = new Map<string, ConverterError>()
  readonly #o: ResolvedOptions
  #catastrophic = 0
  #closed = false

  constructor(options: EngineOptions = {}) {
    this.#o = resolveOptions(options)
    const onCatastrophic = (message: string) => {
      this.#catastrophic++
      if (options.onCatastrophicError) options.onCatastrophicError(message)
      else
        process.emitWarning(`converter isolate lost: ${message}`, { code: 'TETHER_CONVERTER_CATASTROPHIC' })
    }
    const { memoryLimitMb, timeoutMs, maxContexts, limits } = this.#o
    this.#slots = Array.from(
      { length: this.#o.isolates },
      () => new IsolateSlot({ memoryLimitMb, timeoutMs, maxContexts, limits, onCatastrophic }),
    )
  }

  /** Runs one function of a script; rejects with a ConverterError (see ConverterErrorCode). */
  run(script: ConverterScript, fn: ConverterFunction, input: ConverterInput): Promise<ConverterResult> {
    const started = performance.now()
    let spec: DialectSpec
    let json: string
    try {
      spec = dialectSpec(script.dialect)
      checkFunction(script.dialect, fn)
      json = `{"f":${JSON.stringify(fn)},"a":${this.#encodeInput(spec, fn, input)}}`
    } catch (err) {
      return Promise.reject(withDuration(err, started))
    }
    return this.#enqueue('call', script, spec, fn, json, started) as Promise<ConverterResult>
  }

  /**
   * Loads a script up front: rejects with `syntax` when it does not compile, `script`/`timeout`/`memory` when its
   * top level fails, `missing-function` when `fn` is given and not defined. ThingsBoard bodies without `fn` are
   * only checked for syntax (the function header they get depends on the function).
   */
  async compile(script: ConverterScript, fn?: ConverterFunction): Promise<void> {
    const started = performance.now()
    const spec = dialectSpec(script.dialect)
    if (fn) checkFunction(script.dialect, fn)
    await this.#enqueue('load', script, spec, fn, '', started)
  }

  /** Drops the compiled versions (contexts, cached syntax errors) whose key starts with `keyPrefix`. */
  forget(keyPrefix: string): void {
    for (const key of [...this.#syntaxErrors.keys()])
      if (key.startsWith(keyPrefix)) this.#syntaxErrors.delete(key)
    for (const slot of this.#slots) slot.forget(keyPrefix)
  }

  /** Disposes the isolates; queued calls reject, later calls too. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    for (const queue of this.#queues.values()) for (const job of queue) job.reject(closedError())
    this.#queues.clear()
    for (const slot of this.#slots) slot.dispose()
  }

  /** Pool counters. */
  stats(): EngineStats {
    let queued = 0
    for (const q of this.#queues.values()) queued += q.length
    return {
      isolates: this.#slots.length,
      busyIsolates: this.#slots.filter((s) => s.inflight > 0).length,
      queued,
      contexts: this.#slots.reduce((n, s) => n + s.contexts, 0),
      isolatesReplaced: this.#slots.reduce((n, s) => n + s.isolatesReplaced, 0),
      catastrophicErrors: this.#catastrophic,
    }
  }

  #encodeInput(spec: DialectSpec, fn: ConverterFunction, input: ConverterInput): string {
    const json = spec.encodeInput(fn, input ?? {})
    if (json.length > this.#o.maxInputChars) {
      throw new ConverterError(
        'input',
        `the input is ${json.length} characters of JSON, over ${this.#o.maxInputChars}`,
      )
    }
    return json
  }

  #enqueue(
    kind: Job['kind'],
    script: ConverterScript,
    spec: DialectSpec,
    fn: ConverterFunction | undefined,
    json: string,
    started: number,
  ): Promise<ConverterResult | undefined> {
    if (this.#closed) return Promise.reject(closedError())
    const unit = spec.unitKey(script, fn)
    const known = this.#syntaxErrors.get(unit)
    if (known) return Promise.reject(new ConverterError('syntax', known.message, [], elapsed(started)))
    return new Promise((resolve, reject) => {
      const job: Job = { kind, unit, spec, script, fn, json, solo: false, started, resolve, reject }
      const queue = this.#queues.get(unit)
      if (queue) queue.push(job)
      else this.#queues.set(unit, [job])
      this.#pump()
    })
  }

  /** Hands waiting work to isolates, one batch at a time, units in turn (round robin). */
  #pump(): void {
    while (!this.#closed) {
      let launched = false
      for (const [unit, queue] of this.#queues) {
        const slot = this.#slotFor(unit, queue[0])
        if (!slot) continue
        const jobs = queue.splice(0, batchSize(queue))
        this.#queues.delete(unit)
        if (queue.length > 0) this.#queues.set(unit, queue)
        void this.#launch(slot, unit, jobs)
        launched = true
        break
      }
      if (!launched) return
    }
  }

  /**
   * Where a unit's next batch goes: an idle isolate (one with the unit loaded first) while the unit runs on
   * fewer than its share of the pool, else behind its own batch on an isolate it already runs on, so that the
   * isolate never waits for the host between batches. Only the unit's own calls ever wait behind its batches.
   */
  #slotFor(unit: string, head: Job): IsolateSlot | undefined {
    const mine = this.#slots.filter((s) => s.current === unit)
    if (mine.length < this.#o.unitMaxSlots) {
      const idle = this.#slots.filter((s) => s.inflight === 0)
      const slot = idle.find((s) => s.has(unit)) ?? idle[0]
      if (slot) return slot
    }
    if (head.kind === 'load' || head.solo) return undefined
    return mine.find((s) => s.pipelining && s.inflight < PIPELINE_DEPTH)
  }

  async #launch(slot: IsolateSlot, unit: string, jobs: Job[]): Promise<void> {
    if (slot.inflight === 0) {
      slot.current = unit
      // A load or a call suspected of exhausting memory runs with nothing queued behind it.
      slot.pipelining = jobs[0].kind === 'call' && !jobs[0].solo
    }
    slot.inflight++
    // Callers hear back only after the slot is released and the next batch is on its way: the isolate is kept
    // busy, and a caller sees the pool as it is after its call (forget, stats).
    const settle: Array<() => void> = []
    try {
      await this.#execute(slot, unit, jobs, settle)
    } catch (err) {
      // Not a converter failure: a bug or a closed engine. Nothing may stay pending.
      for (const job of jobs) settle.push(() => job.reject(this.#closed ? closedError() : (err as Error)))
    } finally {
      slot.inflight--
      if (slot.inflight === 0) slot.idle()
      this.#pump()
      for (const fn of settle) fn()
    }
  }

  async #execute(slot: IsolateSlot, unitKey: string, jobs: Job[], settle: Array<() => void>): Promise<void> {
    const fail = (job: Job, code: ConverterError['code'], message: string, logs: ConverterLog[] = []) =>
      settle.push(() => job.reject(new ConverterError(code, message, logs, elapsed(job.started))))
    const head = jobs[0]
    let unit: Awaited<ReturnType<IsolateSlot['unit']>>
    try {
      unit = await slot.unit(unitKey, head.spec, head.script, head.fn)
    } catch (err) {
      if (!(err instanceof ConverterError)) throw err
      if (err.code === 'syntax') this.#rememberSyntaxError(unitKey, err)
      for (const job of jobs) fail(job, err.code, err.message)
      return
    }
    if (head.kind === 'load') {
      if (unit && head.fn && !(await slot.hasEntry(unit, head.fn))) {
        fail(head, 'missing-function', `the script defines no function ${head.fn}`)
      } else settle.push(() => head.resolve(undefined))
      return
    }
    if (!unit) throw new Error(`unit ${unitKey} did not load for a call`)
    const outcome = await slot.run(
      unit,
      jobs.map((j) => j.json),
      this.#o.windowMs,
    )
    const records = outcome.records
    for (let i = 0; i < records.length && i < jobs.length; i++) {
      const job = jobs[i]
      const text = records[i]
      // Decoded when settled, after the next batch is on its way.
      settle.push(() => {
        const record = decodeRecord(text)
        const durationMs = elapsed(job.started)
        if (record.ok) job.resolve({ output: record.output, logs: record.logs, durationMs })
        else job.reject(recordError(record, durationMs))
      })
    }
    let rest = jobs.slice(records.length)
    if (this.#closed) {
      for (const job of rest) settle.push(() => job.reject(closedError()))
      return
    }
    const failure = outcome.failure
    if (failure && !failure.retry && rest.length > 0) {
      if (failure.culpritKnown || rest.length === 1) {
        // The call that was running when the isolate stopped is the one at fault.
        fail(rest[0], failure.code, failure.message, failure.logs)
        rest = rest.slice(1)
      } else {
        // The whole batch was lost with the isolate and it is not known which call did it: each runs alone.
        for (const job of rest) job.solo = true
      }
    }
    if (rest.length > 0) this.#requeue(unitKey, rest)
  }

  /** Keeps a version's syntax error so later calls fail at once (bounded: the oldest are dropped). */
  #rememberSyntaxError(unit: string, err: ConverterError): void {
    if (this.#syntaxErrors.size >= MAX_SYNTAX_ERRORS) {
      const oldest = this.#syntaxErrors.keys().next().value
      if (oldest !== undefined) this.#syntaxErrors.delete(oldest)
    }
    this.#syntaxErrors.set(unit, err)
  }

  /** Puts calls that did not run back at the front of their unit's queue. */
  #requeue(unit: string, jobs: Job[]): void {
    const queue = this.#queues.get(unit)
    if (queue) queue.unshift(...jobs)
    else this.#queues.set(unit, jobs)
  }
}

/** How many of a queue's first jobs go in one batch: a load or a solo call alone, else calls up to MAX_BATCH. */
function batchSize(queue: Job[]): number {
  if (queue[0].kind === 'load' || queue[0].solo) return 1
  let n = 1
  while (n < queue.length && n < MAX_BATCH && queue[n].kind === 'call' && !queue[n].solo) n++
  return n
}

function elapsed(started: number): number {
  return performance.now() - started
}

function withDuration(err: unknown, started: number): unknown {
  if (err instanceof ConverterError) err.durationMs = elapsed(started)
  return err
}

function closedError(): Error {
  return new Error('the converter engine is closed')
}
