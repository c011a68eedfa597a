/**
 * The agent hub: accepts agents on `/iotmp`, authenticates CONNECT against the device registry, keeps one
 * live Session per device (a newer connection replaces the older, code 6) and records link statistics.
 */
import { EventEmitter } from 'node:events'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { WebSocketServer } from 'ws'
import { protocolError } from '../../protocol/errors.ts'
import { IOTMP_PATH, IOTMP_SUBPROTOCOL, WireErrorCode } from '../../protocol/messages.ts'
import { type ConnectRequest, Session } from '../../protocol/session.ts'
import { WsChannel } from '../../protocol/ws-channel.ts'
import { verifySecretOrDummy } from '../auth/passwords.ts'
import type { DevicesStore } from '../devices/devices-store.ts'
import type { AgentBufferInfo, PropertyDownlinkRule } from '../devices/schemas.ts'

export interface AgentHubOptions {
  devices: DevicesStore
  logger: Logger
  windowBytes: number
  maxWindowBytes?: number
  maxFrameBytes: number
  maxKeepAliveSec: number
  trustProxy: boolean
}

/** One connected agent. */
export interface AgentLink {
  user: string
  device: string
  session: Session
  ipAddress: string
  connectedAt: number
  agentVersion?: string
  /** The agent's DESCRIBE answer (version, allowlist, refusals), once known. */
  description?: AgentDescription
  /** The DESCRIBE in flight, shared by every caller that asks meanwhile. */
  describing?: Promise<AgentDescription | undefined>
}

/** What an agent reports in DESCRIBE. */
export interface AgentDescription {
  version: string
  allow: string[]
  refusals: number
  /** Its property → topic rules (config `downlinks`): relay/data/property-downlinks.ts applies them. */
  downlinks?: PropertyDownlinkRule[]
  /** Live figures of its store-and-forward buffer and MQTT broker; never stored on the device record. */
  buffer?: AgentBufferInfo
  broker?: Record<string, unknown>
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array)

/** The well-formed downlink rules of a DESCRIBE answer; others are left out. */
function asDownlinks(value: unknown): PropertyDownlinkRule[] {
  if (!Array.isArray(value)) return []
  return value.flatMap((r): PropertyDownlinkRule[] => {
    if (!isMap(r) || typeof r.property !== 'string' || typeof r.topic !== 'string') return []
    const qos = r.qos === 0 || r.qos === 1 || r.qos === 2 ? r.qos : 1
    return [{ property: r.property, topic: r.topic, qos, retain: r.retain === true }]
  })
}

const count = (v: unknown) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0)

/** The device view's buffer figures from the agent's BufferStats (camelCase there, snake_case in the API). */
function asBufferInfo(b: Record<string, unknown>): AgentBufferInfo {
  return {
    depth: count(b.depth),
    bytes: count(b.bytes),
    ...(typeof b.oldestAgeMs === 'number' ? { oldest_age_ms: count(b.oldestAgeMs) } : {}),
    forwarded: count(b.forwarded),
    dropped: count(b.dropped),
    rejected: count(b.rejected),
    expired: count(b.expired),
    poisoned: count(b.poisoned),
    corrupted: count(b.corrupted),
    rate: typeof b.forwardRatePerSec === 'number' && b.forwardRatePerSec >= 0 ? b.forwardRatePerSec : 0,
    ...(typeof b.policy === 'string' ? { policy: b.policy } : {}),
  }
}

function asDescription(value: unknown): AgentDescription | undefined {
  const v = value as Partial<AgentDescription> | undefined
  if (!v || typeof v !== 'object' || !Array.isArray(v.allow)) return undefined
  return {
    version: String(v.version ?? ''),
    allow: v.allow.filter((a): a is string => typeof a === 'string'),
    refusals: typeof v.refusals === 'number' ? v.refusals : 0,
    ...(v.downlinks === undefined ? {} : { downlinks: asDownlinks(v.downlinks) }),
    ...(isMap(v.buffer) ? { buffer: asBufferInfo(v.buffer) } : {}),
    ...(isMap(v.broker) ? { broker: v.broker } : {}),
  }
}

const linkKey = (user: string, device: string) => `${user}/${device}`

/** Serves an agent's RUN; the resolved value is the OK payload, a rejection (with `wireCode`) the ERROR. */
export type AgentRunHandler = (
  link: AgentLink,
  payload: unknown,
  params: Record<string, unknown> | undefined,
  resource: string,
) => Promise<unknown>

/** Events: `connected` (AgentLink), `disconnected` (AgentLink, reason). */
export class AgentHub extends EventEmitter {
  readonly #opts: AgentHubOptions
  readonly #links = new Map<string, AgentLink>()
  readonly #sessions = new Set<Session>()
  readonly #runHandlers = new Map<string, AgentRunHandler>()
  readonly #wss: WebSocketServer

  constructor(opts: AgentHubOptions) {
    super()
    this.#opts = opts
    this.#wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      // Frames above the cap get our ERROR from the decoder; only grossly oversized ones are cut by ws itself.
      maxPayload: opts.maxFrameBytes * 2,
      handleProtocols: (protocols) => (protocols.has(IOTMP_SUBPROTOCOL) ? IOTMP_SUBPROTOCOL : false),
    })
  }

  /** Every live link. */
  links(): IterableIterator<AgentLink> {
    return this.#links.values()
  }

  /** The live link of a device, if connected. */
  get(user: string, device: string): AgentLink | undefined {
    return this.#links.get(linkKey(user, device))
  }

  /** Number of links that completed CONNECT. */
  get size(): number {
    return this.#links.size
  }

  /**
   * Serves agents' RUN of `resource` (`$data`), or of every resource under it when it ends in `/`
   * (`$integration/`); the longest match wins. Other resources are answered ERROR UNKNOWN_RESOURCE.
   */
  handleRun(resource: string, handler: AgentRunHandler): void {
    if (this.#runHandlers.has(resource)) throw new Error(`RUN ${resource} already has a handler`)
    this.#runHandlers.set(resource, handler)
  }

  /** Node `upgrade` handler: takes `/iotmp`, refuses other paths. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = (req.url ?? '').split('?')[0]
    if (path !== IOTMP_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
      return
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      if (ws.protocol !== IOTMP_SUBPROTOCOL) {
        ws.close(1002, `subprotocol ${IOTMP_SUBPROTOCOL} required`)
        return
      }
      this.#accept(new WsChannel(ws, 'server'), this.#clientAddress(req))
    })
  }

  /** Ends a device's link with ERROR `wireCode` (device disabled or deleted). */
  kick(user: string, device: string, wireCode: number, message: string): void {
    this.get(user, device)?.session.fail({ wireCode, message })
  }

  /** Asks the agent for its DESCRIBE answer, keeps it on the link and the device record. */
  describe(link: AgentLink): Promise<AgentDescription | undefined> {
    link.describing ??= this.#describe(link).finally(() => {
      link.describing = undefined
    })
    return link.describing
  }

  /**
   * The freshest description obtainable within `ms`: a slow agent must not hold up an API answer, so past the
   * deadline the last known description is returned while the DESCRIBE completes in the background.
   */
  async describeWithin(link: AgentLink, ms: number): Promise<AgentDescription | undefined> {
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms)
    })
    try {
      return (await Promise.race([this.describe(link), deadline])) ?? link.description
    } finally {
      clearTimeout(timer)
    }
  }

  async #describe(link: AgentLink): Promise<AgentDescription | undefined> {
    try {
      const description = asDescription(await link.session.describe())
      if (!description) return link.description
      link.description = description
      const record = await this.#opts.devices.get(link.user, link.device)
      // Live figures change at every DESCRIBE and mean nothing once the agent is gone: not stored.
      const { buffer: _buffer, broker: _broker, ...lasting } = description
      if (record && JSON.stringify(record.agent) !== JSON.stringify(lasting)) {
        record.agent = lasting
        await this.#opts.devices.put(record)
      }
      return description
    } catch (err) {
      this.#opts.logger.debug({ err }, 'DESCRIBE failed')
      return link.description
    }
  }

  /** Closes every link (relay shutdown). */
  async close(): Promise<void> {
    for (const session of this.#sessions) session.close('relay shutting down')
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()))
  }

  #clientAddress(req: IncomingMessage): string {
    const forwarded = req.headers['x-forwarded-for']
    if (this.#opts.trustProxy && typeof forwarded === 'string') return forwarded.split(',')[0]!.trim()
    return req.socket.remoteAddress ?? ''
  }

  #accept(channel: WsChannel, ipAddress: string): void {
    const log = this.#opts.logger.child({ ip: ipAddress })
    let link: AgentLink | undefined
    const session = new Session(channel, {
      role: 'relay',
      logger: log,
      windowBytes: this.#opts.windowBytes,
      maxWindowBytes: this.#opts.maxWindowBytes,
      maxFrameBytes: this.#opts.maxFrameBytes,
      // The session answers RUN only once open, so the link is known here.
      onRun: (resource, payload, params) => this.#run(link as AgentLink, resource, payload, params),
      authenticate: async (req) => {
        await this.#authenticate(req)
        // The agent may have left during the (slow, scrypt) check: registering it now would leave a stale link.
        if (session.closeInfo) throw protocolError('TETHER_ERR_LINK_CLOSED', session.closeInfo.reason)
        link = {
          user: req.user,
          device: req.device,
          session,
          ipAddress,
          connectedAt: Date.now(),
          agentVersion: req.params.agent,
        }
        const key = linkKey(req.user, req.device)
        const previous = this.#links.get(key)
        if (previous) {
          log.warn({ user: req.user, device: req.device }, 'device connected again: replacing the older link')
          previous.session.fail(protocolError('TETHER_ERR_REPLACED'))
        }
        this.#links.set(key, link)
        return {
          ka: Math.min(req.params.ka, this.#opts.maxKeepAliveSec),
          maxFrame: this.#opts.maxFrameBytes,
          window: this.#opts.windowBytes,
        }
      },
    })
    this.#sessions.add(session)
    session.on('open', (req: ConnectRequest) => {
      log.info(
        { user: req.user, device: req.device, agent: req.params.agent, ka: session.keepAliveSec },
        'agent connected',
      )
      if (!link) return
      this.emit('connected', link)
      void this.describe(link)
    })
    session.on('close', (info: { reason: string }) => {
      this.#sessions.delete(session)
      if (!link) {
        log.info(`link closed before CONNECT completed: ${info.reason}`)
        return
      }
      const key = linkKey(link.user, link.device)
      if (this.#links.get(key) === link) this.#links.delete(key)
      log.info({ user: link.user, device: link.device }, `agent disconnected: ${info.reason}`)
      void this.#recordSession(link).catch((err) => log.error({ err }, 'could not record session statistics'))
      this.emit('disconnected', link, info.reason)
    })
  }

  /** Async, so that even a handler that throws at once becomes an ERROR reply, never a link fault. */
  async #run(
    link: AgentLink,
    resource: string,
    payload: unknown,
    params: Record<string, unknown> | undefined,
  ) {
    let handler = this.#runHandlers.get(resource)
    for (let cut = resource.length; !handler && cut > 0; ) {
      cut = resource.lastIndexOf('/', cut - 1)
      if (cut >= 0) handler = this.#runHandlers.get(resource.slice(0, cut + 1))
    }
    if (!handler) {
      throw Object.assign(new Error(`unknown resource ${resource}`), {
        wireCode: WireErrorCode.UNKNOWN_RESOURCE,
      })
    }
    return handler(link, payload, params, resource)
  }

  async #authenticate(req: ConnectRequest): Promise<void> {
    const record = await this.#opts.devices.get(req.user, req.device)
    // Same answer for unknown device and wrong credential: no device enumeration.
    const hash = record?.type === 'agent' ? record.credentialHash : undefined
    const ok = (await verifySecretOrDummy(req.credential, hash)) && record !== undefined
    if (!ok) throw protocolError('TETHER_ERR_BAD_CREDENTIALS')
    if (!record.enabled) throw protocolError('TETHER_ERR_DEVICE_DISABLED')
  }

  async #recordSession(link: AgentLink): Promise<void> {
    const record = await this.#opts.devices.get(link.user, link.device)
    if (!record) return // deleted meanwhile
    record.last = {
      connected_ts: link.connectedAt,
      disconnected_ts: Date.now(),
      ip_address: link.ipAddress,
      rx_bytes: link.session.rxBytes,
      tx_bytes: link.session.txBytes,
    }
    await this.#opts.devices.put(record)
  }
}
