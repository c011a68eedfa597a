/**
 * Endpoint calls, in process: `call` for the API (awaited, with retries) and `enqueue` for other capabilities
 * (HTTP-device callbacks), which never waits: each endpoint has its own small queue, so a slow or failing
 * endpoint holds up neither the caller nor any other endpoint.
 */
import { EventEmitter } from 'node:events'
import { setTimeout as delay } from 'node:timers/promises'
import type { Logger } from 'pino'
import { RelayErrors } from '../errors.ts'
import type { Attempt, CallVars } from './attempt.ts'
import { CallLog } from './call-log.ts'
import type { EndpointsStore } from './endpoints-store.ts'
import { httpAttempt } from './http-target.ts'
import { MqttClients } from './mqtt-target.ts'
import type { CallLogEntry, CallResult, EndpointRecord } from './schemas.ts'

/** Attempts per call and the first backoff delay, doubled after each failed attempt (1 s, 2 s, …). */
export interface RetryPolicy {
  attempts: number
  baseDelayMs: number
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 3, baseDelayMs: 1000 }

export interface CallOptions {
  /** The device the call is made for: `{{device}}` in templates and topics, and in the call log. */
  device?: string
}

/** A final result, as the `result` event reports it. */
export interface CallEvent extends CallLogEntry {
  user: string
  endpoint: string
}

export interface EndpointServiceOptions {
  store: EndpointsStore
  log: Logger
  retry?: Partial<RetryPolicy>
  /** Enqueued calls running at once per endpoint (default 8). */
  concurrency?: number
  /** Enqueued calls waiting per endpoint beyond which new ones are dropped, and logged as such (default 1000). */
  maxQueued?: number
}

interface Queue {
  running: number
  pending: Array<() => Promise<void>>
}

const keyOf = (user: string, endpoint: string) => `${user}/${endpoint}`

export class EndpointService extends EventEmitter<{ result: [CallEvent] }> {
  /** Retry policy of every call; tests shorten it. */
  retry: RetryPolicy
  readonly #store: EndpointsStore
  readonly #log: Logger
  readonly #calls = new CallLog()
  readonly #mqtt: MqttClients
  readonly #closing = new AbortController()
  readonly #queues = new Map<string, Queue>()
  readonly #inflight = new Set<Promise<unknown>>()
  readonly #concurrency: number
  readonly #maxQueued: number

  constructor(opts: EndpointServiceOptions) {
    super()
    this.#store = opts.store
    this.#log = opts.log
    this.retry = { ...DEFAULT_RETRY, ...opts.retry }
    this.#concurrency = opts.concurrency ?? 8
    this.#maxQueued = opts.maxQueued ?? 1000
    this.#mqtt = new MqttClients(opts.log)
  }

  /** One call with retries; throws TETHER_ERR_NOT_FOUND (no such endpoint) or TETHER_ERR_CONFLICT (disabled). */
  async call(user: string, endpoint: string, payload: unknown, opts: CallOptions = {}): Promise<CallResult> {
    const record = await this.#usable(user, endpoint)
    const { device: _device, ts: _ts, ...result } = await this.#track(this.#run(record, payload, opts))
    return result
  }

  /** Fire and forget: returns at once; the call runs in the background with retries and its result is logged. */
  enqueue(user: string, endpoint: string, payload: unknown, opts: CallOptions = {}): void {
    if (this.#closing.signal.aborted) {
      this.#log.warn({ user, endpoint }, 'endpoint call dropped: relay closing')
      return
    }
    const key = keyOf(user, endpoint)
    let queue = this.#queues.get(key)
    if (!queue) {
      queue = { running: 0, pending: [] }
      this.#queues.set(key, queue)
    }
    if (queue.pending.length >= this.#maxQueued) {
      const error = `dropped: ${this.#maxQueued} calls already waiting for this endpoint`
      this.#record(user, endpoint, { ok: false, error, duration_ms: 0, attempts: 0 }, opts.device)
      return
    }
    queue.pending.push(() => this.#background(user, endpoint, payload, opts))
    this.#pump(key, queue)
  }

  /** The endpoint's last results (at most 100, in memory: lost on restart), newest first. */
  logs(user: string, endpoint: string): CallLogEntry[] {
    return this.#calls.list(keyOf(user, endpoint))
  }

  /** The endpoint's definition changed: its MQTT client (if any) reconnects with the new one at the next call. */
  async changed(user: string, endpoint: string): Promise<void> {
    await this.#mqtt.close(keyOf(user, endpoint))
  }

  /** The endpoint was deleted: waiting calls, its MQTT client and its call log go. */
  async removed(user: string, endpoint: string): Promise<void> {
    const key = keyOf(user, endpoint)
    const queue = this.#queues.get(key)
    if (queue) queue.pending.length = 0
    this.#calls.drop(key)
    await this.#mqtt.close(key)
  }

  /** Aborts running calls, drops waiting ones and closes every MQTT client (relay shutdown). */
  async close(): Promise<void> {
    this.#closing.abort()
    for (const queue of this.#queues.values()) queue.pending.length = 0
    await Promise.allSettled([...this.#inflight])
    await this.#mqtt.closeAll()
  }

  /** The stored endpoint, if it exists and is enabled. */
  async #usable(user: string, endpoint: string): Promise<EndpointRecord> {
    const record = await this.#store.get(user, endpoint)
    if (!record) throw new RelayErrors.TETHER_ERR_NOT_FOUND(`endpoint ${user}/${endpoint}`)
    if (!record.enabled) throw new RelayErrors.TETHER_ERR_CONFLICT(`endpoint ${endpoint} is disabled`)
    return record
  }

  #pump(key: string, queue: Queue): void {
    while (queue.running < this.#concurrency && queue.pending.length > 0) {
      const job = queue.pending.shift() as () => Promise<void>
      queue.running++
      void this.#track(job()).finally(() => {
        queue.running--
        if (queue.running === 0 && queue.pending.length === 0) this.#queues.delete(key)
        else this.#pump(key, queue)
      })
    }
  }

  /** An enqueued call: never throws; a missing endpoint is only logged, a disabled one is also in its call log. */
  async #background(user: string, endpoint: string, payload: unknown, opts: CallOptions): Promise<void> {
    try {
      await this.#run(await this.#usable(user, endpoint), payload, opts)
    } catch (err) {
      const e = err as { code?: string; message?: string }
      if (e.code === 'TETHER_ERR_CONFLICT') {
        this.#record(
          user,
          endpoint,
          { ok: false, error: e.message, duration_ms: 0, attempts: 0 },
          opts.device,
        )
      } else {
        this.#log.warn({ user, endpoint, err: e.message }, 'endpoint call could not run')
      }
    }
  }

  /** Attempts until one succeeds, a failure is final, or the policy's attempts are used up; logs the result. */
  async #run(record: EndpointRecord, payload: unknown, opts: CallOptions): Promise<CallLogEntry> {
    const { user, endpoint } = record
    const started = performance.now()
    const policy = { ...this.retry }
    let vars: CallVars
    try {
      vars = { payload: JSON.stringify(payload ?? null), device: opts.device ?? '' }
    } catch (err) {
      const error = `payload is not JSON: ${(err as Error).message}`
      return this.#record(user, endpoint, { ok: false, error, duration_ms: 0, attempts: 0 }, opts.device)
    }
    let current = record
    let attempts = 0
    let outcome: Attempt
    for (;;) {
      attempts++
      outcome = await this.#attempt(current, vars)
      if (outcome.ok || !outcome.retryable || attempts >= policy.attempts) break
      const backoff = policy.baseDelayMs * 2 ** (attempts - 1)
      const waited = await delay(backoff, true, { signal: this.#closing.signal }).catch(() => false)
      if (!waited) {
        outcome = { ok: false, error: 'relay closing', retryable: false }
        break
      }
      // The definition may have changed during the backoff: the next attempt uses the stored one.
      const fresh = await this.#store.get(user, endpoint)
      if (!fresh?.enabled) {
        outcome = {
          ok: false,
          error: `endpoint ${fresh ? 'disabled' : 'deleted'} while retrying`,
          retryable: false,
        }
        break
      }
      current = fresh
    }
    const { ok, status, error } = outcome
    const result = {
      ok,
      ...(status !== undefined ? { status } : {}),
      ...(error !== undefined ? { error } : {}),
      duration_ms: Math.round(performance.now() - started),
      attempts,
    }
    return this.#record(user, endpoint, result, opts.device)
  }

  #attempt(record: EndpointRecord, vars: CallVars): Promise<Attempt> {
    const closing = this.#closing.signal
    if (record.type === 'http') return httpAttempt(record.config, vars, closing)
    return this.#mqtt.publish(keyOf(record.user, record.endpoint), record.config, vars, closing)
  }

  /** Keeps the result in the endpoint's call log and reports it (`result` event, and the relay log on failure). */
  #record(user: string, endpoint: string, result: CallResult, device: string | undefined): CallLogEntry {
    const entry: CallLogEntry = { ts: Date.now(), ...result, ...(device !== undefined ? { device } : {}) }
    this.#calls.add(keyOf(user, endpoint), entry)
    if (!entry.ok) this.#log.warn({ user, endpoint, ...result, device }, 'endpoint call failed')
    try {
      this.emit('result', { user, endpoint, ...entry })
    } catch (err) {
      this.#log.error({ err }, 'endpoint result listener threw')
    }
    return entry
  }

  /** Counts a call as running until it settles, so `close` can wait for it. */
  #track<T>(promise: Promise<T>): Promise<T> {
    this.#inflight.add(promise)
    void promise.finally(() => this.#inflight.delete(promise)).catch(() => {})
    return promise
  }
}
