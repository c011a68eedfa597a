/**
 * Runs the integrations: starts, restarts and stops their transports as configs change, converts uplinks into
 * devices, properties and bucket points, and turns property changes and downlink calls into device messages.
 */
import type { Logger } from 'pino'
import { ConverterError } from '../../converters/index.ts'
import {
  type DownlinkRequest,
  downlinkCall,
  encodedDownlink,
  payloadBytes,
  uplinkCall,
  uplinkShape,
} from '../../integrations/converter-calls.ts'
import type { EncodedDownlink, UplinkMessage } from '../../integrations/transport.ts'
import { createTransport } from '../../integrations/transports/index.ts'
import { uplinkEntities } from '../../integrations/uplink-output.ts'
import type { ConverterService } from '../converters/converter-service.ts'
import type { DebugEvents } from '../converters/debug-events.ts'
import type { ConverterRecord } from '../converters/schemas.ts'
import type { DevicesStore } from '../devices/devices-store.ts'
import { RelayErrors } from '../errors.ts'
import type { PropertyEvent, PropertyService } from '../properties/property-service.ts'
import { nextDownlink } from './downlink-queue.ts'
import { IntegrationRuntime } from './integration-runtime.ts'
import { type OutputApplier, UPLINK_ORIGIN } from './output-applier.ts'
import type { DownlinkResult, IntegrationRecord } from './schemas.ts'

/** Runs remote integrations (`runOn`) on agents; absent, such integrations report an error status. */
export interface RemoteIntegrations {
  /** Sends the config and converter scripts to the agent (again whenever either changes). */
  deploy(record: IntegrationRecord, converters: ConverterRecord[]): Promise<void>
  undeploy(record: IntegrationRecord): Promise<void>
  /** Whether the agent an integration runs on is connected. */
  online(record: IntegrationRecord): boolean
  /** Delivers an encoded downlink through the agent's transport. */
  deliver(record: IntegrationRecord, device: string, downlink: EncodedDownlink): Promise<void>
}

export interface IntegrationManagerOptions {
  converters: ConverterService
  applier: OutputApplier
  devices: DevicesStore
  properties: PropertyService
  debug: DebugEvents
  log: Logger
  remote?: RemoteIntegrations
}

/** Debug ring key of an integration. */
export const integrationDebugKey = (user: string, id: string) => `integration:${user}/${id}`

const message = (err: unknown) => (err instanceof Error ? err.message : String(err))

export class IntegrationManager {
  readonly #o: IntegrationManagerOptions
  readonly #runtimes = new Map<string, IntegrationRuntime>()
  readonly #routes = new Map<string, IntegrationRuntime>()
  /** Converter records by `user/id`: read on every uplink, so kept here rather than copied out of the store. */
  readonly #converters = new Map<string, ConverterRecord>()
  readonly #onProperty = (event: PropertyEvent) => void this.#propertyChanged(event)

  constructor(opts: IntegrationManagerOptions) {
    this.#o = opts
    opts.properties.on('changed', this.#onProperty)
  }

  /** The runtime of `user/id`, if configured. */
  get(user: string, id: string): IntegrationRuntime | undefined {
    return this.#runtimes.get(`${user}/${id}`)
  }

  /** Whether a remote integration's agent is connected (undefined for integrations on the relay). */
  agentOnline(rt: IntegrationRuntime): boolean | undefined {
    return rt.record.runOn ? (this.#o.remote?.online(rt.record) ?? false) : undefined
  }

  /** The HTTP integration that owns a routing key. */
  byRoutingKey(routingKey: string): IntegrationRuntime | undefined {
    return this.#routes.get(routingKey)
  }

  /** The dialect of an integration's uplink converter (transports shape payloads for Thinger modules). */
  async uplinkDialect(rt: IntegrationRuntime): Promise<ConverterRecord['dialect']> {
    return (await this.#converter(rt.record.user, rt.record.uplinkConverter)).dialect
  }

  /** Starts (or restarts) an integration from its config; a transport that fails to start is kept as an error status. */
  async apply(record: IntegrationRecord): Promise<IntegrationRuntime> {
    // A remote one that stays on the same agent is replaced there by the new deploy, not removed first.
    const previous = this.#runtimes.get(`${record.user}/${record.id}`)?.record.runOn?.device
    const redeploy =
      record.enabled !== false && record.runOn !== undefined && record.runOn.device === previous
    await this.#stop(`${record.user}/${record.id}`, !redeploy)
    const rt = new IntegrationRuntime(record)
    this.#runtimes.set(rt.key, rt)
    if (record.type === 'http' && record.http?.routingKey) this.#routes.set(record.http.routingKey, rt)
    if (!rt.enabled) return rt
    try {
      if (record.runOn) {
        if (!this.#o.remote) throw new Error('remote integrations are not available on this relay')
        await this.#o.remote.deploy(record, await this.#convertersOf(record))
      } else if (record.type !== 'http') {
        const log = this.#o.log.child({ integration: rt.key })
        rt.transport = createTransport(record, { uplink: (m) => this.uplink(rt, m), log })
        await rt.transport.start()
      }
    } catch (err) {
      rt.startError = message(err)
      this.#o.log.warn({ integration: rt.key, err: rt.startError }, 'integration did not start')
    }
    return rt
  }

  /** Stops and forgets an integration. */
  async remove(user: string, id: string): Promise<void> {
    await this.#stop(`${user}/${id}`, true)
    this.#o.debug.clear(integrationDebugKey(user, id))
  }

  /** A converter was saved or deleted: later calls use the new version; remote integrations get it too. */
  async converterChanged(record: ConverterRecord, deleted = false): Promise<void> {
    const key = `${record.user}/${record.id}`
    if (deleted) this.#converters.delete(key)
    else this.#converters.set(key, record)
    for (const rt of this.#runtimes.values()) {
      const r = rt.record
      if (r.user !== record.user || !r.runOn || !rt.enabled) continue
      if (r.uplinkConverter === record.id || r.downlinkConverter === record.id) await this.apply(r)
    }
  }

  /** The integration of `user` that uses converter `id`, if any. */
  usedBy(user: string, id: string): string | undefined {
    for (const rt of this.#runtimes.values()) {
      const r = rt.record
      if (r.user === user && (r.uplinkConverter === id || r.downlinkConverter === id)) return r.id
    }
    return undefined
  }

  /**
   * Converts one uplink and stores what it says. Rejects (after counting and logging the error event) when the
   * converter fails, its output is not applicable, or storage refuses; resolves with the devices written to.
   */
  async uplink(rt: IntegrationRuntime, msg: UplinkMessage): Promise<{ devices: string[] }> {
    const { user, id } = rt.record
    const started = performance.now()
    const metadata = { integrationName: rt.record.name ?? id, ...rt.record.metadata, ...msg.metadata }
    let output: unknown
    try {
      const converter = await this.#converter(user, rt.record.uplinkConverter)
      const call = uplinkCall(converter, { payload: msg.payload, metadata })
      output = (await this.#o.converters.run(converter, call.fn, call.input, 'uplink')).output
      const shaped = uplinkShape(converter, output, metadata, id)
      const entities = shaped === null ? [] : uplinkEntities(shaped)
      const rx =
        msg.payload instanceof Uint8Array ? msg.payload.byteLength : payloadBytes(msg.payload).byteLength
      const applied = await this.#o.applier.apply(user, id, entities, rx)
      rt.uplinks++
      rt.lastUplinkTs = Date.now()
      this.#event(rt, { kind: 'uplink', in: msg.payload, out: output, metadata, started })
      return { devices: applied.devices }
    } catch (err) {
      const text = err instanceof ConverterError ? `converter ${err.code}: ${err.message}` : message(err)
      rt.failed(text)
      this.#event(rt, { kind: 'uplink', in: msg.payload, out: output, metadata, started, error: text })
      this.#o.log.warn({ integration: rt.key, err: text }, 'uplink failed')
      throw new IntegrationUplinkError(text)
    }
  }

  /**
   * A downlink for a device an integration provisioned: encoded and delivered at once (mqtt, tcp, udp, remote),
   * or queued until the device's next uplink (http).
   */
  async downlink(
    user: string,
    device: string,
    msg: unknown,
    msgType: DownlinkRequest['msgType'],
  ): Promise<DownlinkResult> {
    const record = await this.#o.devices.get(user, device)
    if (!record) throw new RelayErrors.TETHER_ERR_NOT_FOUND(`device ${user}/${device}`)
    const ref = record.integration
    if (!ref)
      throw new RelayErrors.TETHER_ERR_CONFLICT(`device ${device} was not provisioned by an integration`)
    const rt = this.get(user, ref.id)
    if (!rt)
      throw new RelayErrors.TETHER_ERR_CONFLICT(`integration ${ref.id} of device ${device} no longer exists`)
    if (!rt.enabled) throw new RelayErrors.TETHER_ERR_CONFLICT(`integration ${ref.id} is disabled`)
    if (!rt.record.downlinkConverter) {
      throw new RelayErrors.TETHER_ERR_CONFLICT(`integration ${ref.id} has no downlink converter`)
    }
    const request: DownlinkRequest = {
      msg,
      msgType,
      metadata: await this.#deviceMetadata(rt, user, device, record.name, ref.deviceType),
      integrationMetadata: { ...rt.record.metadata },
    }
    if (rt.record.type === 'http' && !rt.record.runOn) {
      rt.queue.push(device, request)
      return { status: 'queued', integration: ref.id }
    }
    const encoded = await this.#encode(rt, request)
    try {
      if (rt.record.runOn) await this.#o.remote?.deliver(rt.record, device, encoded)
      else if (rt.transport) await rt.transport.deliver(device, encoded)
      else throw new Error(`integration ${ref.id} is not running`)
    } catch (err) {
      rt.failed(`downlink to ${device}: ${message(err)}`)
      throw new RelayErrors.TETHER_ERR_CONFLICT(`downlink to ${device} not delivered: ${message(err)}`)
    }
    rt.downlinks++
    return { status: 'delivered', integration: ref.id, output: encoded }
  }

  /** The downlink an HTTP uplink's answer carries for the devices it wrote to, if any is pending. */
  async httpAnswer(rt: IntegrationRuntime, devices: string[]): Promise<EncodedDownlink | undefined> {
    for (const device of devices) {
      const { send, rest } = nextDownlink(rt.queue.take(device))
      rt.queue.unshift(device, rest)
      if (!send) continue
      try {
        const encoded = await this.#encode(rt, send)
        rt.downlinks++
        return encoded
      } catch {
        // Already counted and logged as the integration's error; the next pending one may still go.
      }
    }
    return undefined
  }

  /** Stops every integration (relay shutdown); remote ones keep running on their agents, buffering. */
  async close(): Promise<void> {
    this.#o.properties.off('changed', this.#onProperty)
    await Promise.all([...this.#runtimes.keys()].map((key) => this.#stop(key, false)))
  }

  /** Stops an integration here; `undeploy` also stops a remote one on its agent. */
  async #stop(key: string, undeploy: boolean): Promise<void> {
    const rt = this.#runtimes.get(key)
    if (!rt) return
    this.#runtimes.delete(key)
    const routingKey = rt.record.type === 'http' ? rt.record.http?.routingKey : undefined
    if (routingKey && this.#routes.get(routingKey) === rt) this.#routes.delete(routingKey)
    await rt.transport?.stop().catch(() => undefined)
    if (undeploy && rt.record.runOn && rt.enabled)
      await this.#o.remote?.undeploy(rt.record).catch(() => undefined)
  }

  async #encode(rt: IntegrationRuntime, request: DownlinkRequest): Promise<EncodedDownlink> {
    const started = performance.now()
    let output: unknown
    try {
      const converter = await this.#converter(rt.record.user, rt.record.downlinkConverter as string)
      const call = downlinkCall(converter, request)
      output = (await this.#o.converters.run(converter, call.fn, call.input, 'downlink')).output
      const encoded = encodedDownlink(converter, output)
      this.#event(rt, { kind: 'downlink', in: request.msg, out: output, metadata: request.metadata, started })
      return encoded
    } catch (err) {
      const text = err instanceof ConverterError ? `converter ${err.code}: ${err.message}` : message(err)
      rt.failed(`downlink: ${text}`)
      this.#event(rt, {
        kind: 'downlink',
        in: request.msg,
        out: output,
        metadata: request.metadata,
        started,
        error: text,
      })
      throw new RelayErrors.TETHER_ERR_CONFLICT(`downlink converter failed: ${text}`)
    }
  }

  /** Encoder metadata: device name and type, the integration's metadata, and properties as `ss_<name>`. */
  async #deviceMetadata(rt: IntegrationRuntime, user: string, device: string, name: string, type: string) {
    const metadata: Record<string, string> = { ...rt.record.metadata, deviceName: name, deviceType: type }
    for (const p of await this.#o.properties.list(user, device)) {
      metadata[`ss_${p.property}`] = typeof p.value === 'string' ? p.value : JSON.stringify(p.value)
    }
    return metadata
  }

  async #propertyChanged(event: PropertyEvent): Promise<void> {
    if (event.origin === UPLINK_ORIGIN) return
    const record = await this.#o.devices.get(event.user, event.device)
    const ref = record?.integration
    if (!ref) return
    const rt = this.get(event.user, ref.id)
    if (!rt?.enabled || !rt.record.downlinkConverter) return
    await this.downlink(
      event.user,
      event.device,
      { [event.property]: event.value },
      'ATTRIBUTES_UPDATED',
    ).catch((err) =>
      this.#o.log.info(
        { integration: rt.key, device: event.device, err: message(err) },
        'attribute downlink failed',
      ),
    )
  }

  async #converter(user: string, id: string): Promise<ConverterRecord> {
    const key = `${user}/${id}`
    const cached = this.#converters.get(key)
    if (cached) return cached
    const record = await this.#o.converters.load(user, id)
    this.#converters.set(key, record)
    return record
  }

  async #convertersOf(record: IntegrationRecord): Promise<ConverterRecord[]> {
    const ids = [record.uplinkConverter, record.downlinkConverter].filter((c): c is string => c !== undefined)
    return Promise.all(ids.map((c) => this.#converter(record.user, c)))
  }

  #event(
    rt: IntegrationRuntime,
    e: { kind: string; in: unknown; out: unknown; metadata: unknown; started: number; error?: string },
  ): void {
    if (!rt.record.debug) return
    this.#o.debug.add(integrationDebugKey(rt.record.user, rt.record.id), {
      ts: Date.now(),
      kind: e.kind,
      in: e.in,
      out: e.out,
      metadata: e.metadata,
      duration_ms: performance.now() - e.started,
      ...(e.error ? { error: e.error } : {}),
    })
  }
}

/** An uplink that was not stored; the message says why (converter, output or storage). */
export class IntegrationUplinkError extends Error {}
