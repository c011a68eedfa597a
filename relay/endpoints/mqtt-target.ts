/**
 * Calls of `mqtt` endpoints: one client per endpoint, connected at its first call and reused, closed when the
 * endpoint changes or goes away and when the relay closes.
 */
import { connect, type MqttClient } from 'mqtt'
import type { Logger } from 'pino'
import { type Attempt, abortReason, attemptSignal, type CallVars, untilAborted } from './attempt.ts'
import { DEFAULT_TIMEOUT_MS, type MqttConfig } from './schemas.ts'

/** How often a client whose broker went away tries again (mqtt.js default). */
const RECONNECT_PERIOD_MS = 1000

interface Entry {
  client: MqttClient
  /** The connection settings the client was made with: a change needs a new client. */
  settings: string
}

export class MqttClients {
  readonly #clients = new Map<string, Entry>()
  readonly #log: Logger

  constructor(log: Logger) {
    this.#log = log
  }

  /**
   * One publish of the payload (JSON text) to the rendered topic: done once the broker acknowledged it (qos ≥ 1)
   * or it was written (qos 0). A timeout may still deliver it later (at least once, as MQTT qos 1 is).
   */
  async publish(key: string, config: MqttConfig, vars: CallVars, closing: AbortSignal): Promise<Attempt> {
    const timeoutMs = config.timeout_ms ?? DEFAULT_TIMEOUT_MS
    // After closeAll no client may be made again: it would outlive the relay.
    if (closing.aborted) return abortReason(closing, timeoutMs)
    // Only {{device}} belongs in a topic; a payload there would make one topic per message.
    const topic = config.topic.replace(/\{\{\s*device\s*\}\}/g, vars.device)
    if (topic.length === 0 || /[#+]/.test(topic) || topic.includes('\u0000')) {
      return { ok: false, error: `not a topic to publish to: "${topic}"`, retryable: false }
    }
    const signal = attemptSignal(closing, timeoutMs)
    const client = this.#client(key, config, timeoutMs)
    try {
      await connected(client, signal)
    } catch (err) {
      if (signal.aborted && !closing.aborted) {
        return { ok: false, error: `no connection to ${config.url} within ${timeoutMs} ms`, retryable: true }
      }
      if (signal.aborted) return abortReason(closing, timeoutMs)
      return { ok: false, error: `broker connection failed: ${(err as Error).message}`, retryable: true }
    }
    try {
      const publishing = client.publishAsync(topic, vars.payload, {
        qos: config.qos,
        retain: config.retain ?? false,
      })
      await untilAborted(publishing, signal)
      return { ok: true, retryable: false }
    } catch (err) {
      if (signal.aborted) return abortReason(closing, timeoutMs)
      return { ok: false, error: `publish failed: ${(err as Error).message}`, retryable: true }
    }
  }

  /** Closes the endpoint's client (its settings changed or it was deleted); the next call connects anew. */
  async close(key: string): Promise<void> {
    const entry = this.#clients.get(key)
    if (!entry) return
    this.#clients.delete(key)
    await entry.client.endAsync(true)
  }

  /** Closes every client (relay shutdown). */
  async closeAll(): Promise<void> {
    await Promise.all([...this.#clients.keys()].map((key) => this.close(key)))
  }

  #client(key: string, config: MqttConfig, timeoutMs: number): MqttClient {
    const settings = JSON.stringify([config.url, config.username, config.password, config.client_id])
    const existing = this.#clients.get(key)
    if (existing?.settings === settings) return existing.client
    if (existing) this.close(key).catch(() => {})
    const client = connect(config.url, {
      clientId: config.client_id,
      username: config.username,
      password: config.password,
      connectTimeout: timeoutMs,
      reconnectPeriod: RECONNECT_PERIOD_MS,
      // A qos 0 message must not wait offline for a broker that may never come back: calls time out instead.
      queueQoSZero: false,
    })
    // Every call waiting for the connection listens for it (and stops when its attempt is over): no fixed cap.
    client.setMaxListeners(0)
    // Reconnects repeat the same error every second: log each distinct one once.
    let lastError = ''
    client.on('error', (err) => {
      // A refused CONNACK (reason code) stops mqtt.js reconnecting: drop the client, the next call makes a new one.
      if (typeof (err as { code?: unknown }).code === 'number' && this.#clients.get(key)?.client === client) {
        this.close(key).catch(() => {})
      }
      if (err.message === lastError) return
      lastError = err.message
      this.#log.warn({ endpoint: key, err: err.message }, 'mqtt endpoint: broker error')
    })
    client.on('connect', () => {
      lastError = ''
    })
    this.#clients.set(key, { client, settings })
    return client
  }
}

/** Resolves once the client is connected; rejects on a refused CONNACK (bad credentials…) or on abort. */
function connected(client: MqttClient, signal: AbortSignal): Promise<void> {
  if (client.connected) return Promise.resolve()
  return new Promise<void>((resolve, reject) => {
    // Listeners go as soon as this attempt is over: calls waiting on a dead broker must not pile them up.
    const done = (err?: unknown) => {
      client.off('connect', onConnect)
      client.off('error', onError)
      signal.removeEventListener('abort', onAbort)
      if (err) reject(err)
      else resolve()
    }
    const onConnect = () => done()
    const onError = (err: Error) => done(err)
    const onAbort = () => done(signal.reason)
    if (signal.aborted) return onAbort()
    client.on('connect', onConnect)
    client.on('error', onError)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
