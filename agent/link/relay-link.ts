/**
 * The agent's link to the relay: dials the WebSocket, sends CONNECT, serves the session, and reconnects
 * forever with backoff and full jitter. Never gives up, including at first start (DESIGN.md, "Reconnect").
 */
import { EventEmitter } from 'node:events'
import { readFileSync } from 'node:fs'
import type { Logger } from 'pino'
import WebSocket from 'ws'
import { RemoteError } from '../../protocol/errors.ts'
import { IOTMP_PATH, IOTMP_SUBPROTOCOL, MAX_FRAME_BYTES, WireErrorCode } from '../../protocol/messages.ts'
import { type InboundStreamRequest, Session } from '../../protocol/session.ts'
import { WsChannel } from '../../protocol/ws-channel.ts'
import type { AgentConfig } from '../config.ts'
import { AGENT_VERSION } from '../version.ts'
import { Backoff } from './backoff.ts'

export interface RelayLinkOptions {
  config: Readonly<AgentConfig>
  log: Logger
  onStartStream: (req: InboundStreamRequest) => void
  onDescribe: () => unknown
  /** RUN requests from the relay (remote integrations, downlinks); unknown resources are refused. */
  onRun?: (
    resource: string,
    payload: unknown,
    params: Record<string, unknown> | undefined,
  ) => Promise<unknown>
  /** Injected for tests; defaults to the real reconnect policy. */
  backoff?: Backoff
}

/** The WebSocket URL of the relay's IoTMP endpoint. */
export function iotmpUrl(relay: string): string {
  const url = new URL(relay)
  if (url.pathname === '/' || url.pathname === '') url.pathname = IOTMP_PATH
  return url.toString()
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname.startsWith('127.') || hostname === '[::1]' || hostname === '::1'
}

/** Events: `connected` (Session, the relay's CONNECT OK params), `disconnected` (reason). */
export class RelayLink extends EventEmitter {
  readonly #opts: RelayLinkOptions
  readonly #backoff: Backoff
  readonly #url: string
  readonly #ca?: Buffer
  readonly #zeroMask: boolean
  #session?: Session
  #ws?: WebSocket
  #timer?: NodeJS.Timeout
  #stopped = false

  constructor(opts: RelayLinkOptions) {
    super()
    this.#opts = opts
    this.#backoff = opts.backoff ?? new Backoff()
    this.#url = iotmpUrl(opts.config.relay)
    this.#ca = opts.config.ca ? readFileSync(opts.config.ca) : undefined
    const url = new URL(this.#url)
    const mask = opts.config.maskFrames
    // RFC 6455 masking only guards proxies on untrusted paths: skip the XOR under TLS or on loopback.
    this.#zeroMask = mask === 'auto' ? url.protocol === 'wss:' || isLoopback(url.hostname) : !mask
  }

  /** The open session, when connected. */
  get session(): Session | undefined {
    return this.#session?.isOpen ? this.#session : undefined
  }

  /** Starts connecting; returns at once. */
  start(): void {
    this.#stopped = false
    this.#connect()
  }

  /** Closes the link and stops reconnecting. */
  async stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    const session = this.#session
    if (session && !session.closeInfo) {
      const closed = new Promise((resolve) => session.once('close', resolve))
      session.close('agent stopping')
      await closed
    } else this.#ws?.terminate()
  }

  #connect(): void {
    if (this.#stopped) return
    const { config, log } = this.#opts
    const ws = new WebSocket(this.#url, IOTMP_SUBPROTOCOL, {
      perMessageDeflate: false,
      handshakeTimeout: 10_000,
      maxPayload: MAX_FRAME_BYTES * 2,
      ca: this.#ca,
      rejectUnauthorized: !config.insecure,
      ...(this.#zeroMask ? { generateMask: (mask: Buffer) => mask.fill(0) } : {}),
    })
    this.#ws = ws
    let failed = false
    const retry = (reason: string, wireCode?: number) => {
      if (failed) return
      failed = true
      this.#session = undefined
      this.emit('disconnected', reason)
      this.#scheduleRetry(reason, wireCode)
    }
    ws.once('error', (err) => {
      if (ws.readyState !== WebSocket.OPEN) retry(err.message)
    })
    ws.once('close', (code, reason) => {
      if (!this.#session) retry(reason.toString() || `closed (${code})`)
    })
    ws.once('open', () => {
      const session = new Session(new WsChannel(ws, this.#zeroMask ? 'client-zero-mask' : 'none'), {
        role: 'agent',
        logger: log,
        windowBytes: config.windowBytes,
        maxWindowBytes: config.maxWindowBytes,
        onStartStream: this.#opts.onStartStream,
        onDescribe: this.#opts.onDescribe,
        onRun: this.#opts.onRun,
      })
      this.#session = session
      session.once('close', (info: { reason: string; wireCode?: number }) =>
        retry(info.reason, info.wireCode),
      )
      session.connect(config.user, config.device, config.credential, config.keepAliveSec, AGENT_VERSION).then(
        (ok) => {
          this.#backoff.connected()
          log.info({ relay: this.#url, ka: ok.ka }, 'connected to relay')
          this.emit('connected', session, ok)
        },
        (err: Error) => {
          const code = err instanceof RemoteError ? err.wireCode : undefined
          session.close(err.message)
          retry(`CONNECT refused: ${err.message}`, code)
        },
      )
    })
  }

  #scheduleRetry(reason: string, wireCode?: number): void {
    if (this.#stopped) return
    this.#backoff.disconnected()
    const delayMs = this.#backoff.next()
    const attempt = this.#backoff.attempt
    const next = `retrying in ${(delayMs / 1000).toFixed(1)} s (attempt ${attempt})`
    const { log, config } = this.#opts
    if (wireCode === WireErrorCode.BAD_CREDENTIALS) {
      log.error(`relay refused the credentials of ${config.user}/${config.device}; ${next}`)
    } else if (wireCode === WireErrorCode.REPLACED) {
      log.error(`another agent connected as ${config.user}/${config.device} and replaced this one; ${next}`)
    } else if (wireCode === WireErrorCode.DEVICE_DISABLED) {
      log.error(`device ${config.user}/${config.device} is disabled on the relay; ${next}`)
    } else {
      log.warn({ attempt, delayMs }, `relay link down: ${reason}; ${next}`)
    }
    this.#timer = setTimeout(() => this.#connect(), delayMs)
  }
}
