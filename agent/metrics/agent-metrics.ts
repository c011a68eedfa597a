/**
 * The agent's Prometheus `/metrics` on a local port (issue 7, "Observability"): buffer depth, bytes, oldest record
 * age, drops, forward rate, link state, bridge, HTTP ingest and broker figures. Every value is read from live
 * state when scraped (prom-client `collect`), on a Registry of its own: no global state, several agents per
 * process (tests) do not collide.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import type { BridgeStats } from '../bridge/site-bridge.ts'
import type { BrokerStats } from '../broker/broker-stats.ts'
import type { BufferStats } from '../buffer/data-buffer.ts'
import type { ForwarderStats } from '../buffer/forwarder.ts'
import type { MetricsConfig } from '../data-config.ts'
import type { IngestStats } from '../ingest/http-ingest.ts'

/** What the metrics are read from; the optional parts are absent when not configured. */
export interface MetricsSources {
  buffer: { stats(): BufferStats }
  forwarder: { stats(): ForwarderStats }
  /** The relay link: connected while it has an open session. */
  link: { readonly session: unknown }
  bridge?: { stats(): BridgeStats }
  ingest?: { stats(): IngestStats }
  broker?: { stats(): BrokerStats }
}

export interface AgentMetricsOptions {
  config: MetricsConfig
  sources: MetricsSources
  log: Logger
}

type Read = () => number

export class AgentMetrics {
  /** The registry (tests and embedders can read it without HTTP). */
  readonly registry = new Registry()
  readonly #server: http.Server

  private constructor(sources: MetricsSources) {
    register(this.registry, sources)
    this.#server = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]
      if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; GET /metrics\n')
        return
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      )
    })
  }

  /** Listens on `config.host:config.port`; resolves once listening. */
  static async start(opts: AgentMetricsOptions): Promise<AgentMetrics> {
    const metrics = new AgentMetrics(opts.sources)
    await new Promise<void>((resolve, reject) => {
      metrics.#server.once('error', reject)
      metrics.#server.listen(opts.config.port, opts.config.host, () => {
        metrics.#server.off('error', reject)
        resolve()
      })
    })
    opts.log.info({ host: opts.config.host, port: metrics.port }, 'metrics listening on /metrics')
    return metrics
  }

  /** The bound port (useful with port 0). */
  get port(): number {
    return (this.#server.address() as AddressInfo).port
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()))
    this.#server.closeAllConnections()
    await closed
  }
}

/** Declares every metric on `registry`. */
function register(registry: Registry, s: MetricsSources): void {
  collectDefaultMetrics({ register: registry, prefix: 'tether_agent_' })
  const gauge = (name: string, help: string, read: Read) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read())
      },
    })
  // Counters mirror monotonic totals kept elsewhere (persisted ones survive restarts): reset + inc republishes them.
  const counter = (name: string, help: string, read: Read) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset()
        this.inc(read())
      },
    })

  // Store and forward.
  gauge(
    'tether_agent_buffer_depth_records',
    'Records buffered, waiting to be forwarded',
    () => s.buffer.stats().depth,
  )
  gauge('tether_agent_buffer_bytes', 'Bytes of buffered records', () => s.buffer.stats().bytes)
  gauge(
    'tether_agent_buffer_oldest_record_age_seconds',
    'Age of the oldest buffered record by its ts (0 when empty)',
    () => (s.buffer.stats().oldestAgeMs ?? 0) / 1000,
  )
  gauge('tether_agent_buffer_max_records', 'Buffer bound: records', () => s.buffer.stats().maxRecords)
  gauge('tether_agent_buffer_max_bytes', 'Buffer bound: bytes', () => s.buffer.stats().maxBytes)
  const buffered: Array<[keyof BufferStats, string]> = [
    ['appended', 'Records accepted into the buffer'],
    ['forwarded', 'Records the relay stored and acknowledged'],
    ['dropped', 'Records deleted to make room (policy drop-oldest)'],
    ['rejected', 'Records refused because the buffer was full (policy reject-new)'],
    ['expired', 'Records deleted for being older than maxAgeDays'],
    ['poisoned', 'Records the relay refused for good, deleted'],
    ['corrupted', 'Records unreadable on disk, skipped and deleted'],
  ]
  for (const [key, help] of buffered) {
    counter(`tether_agent_buffer_${key}_records_total`, help, () => s.buffer.stats()[key] as number)
  }
  gauge(
    'tether_agent_forward_rate_records_per_second',
    'Records forwarded per second over the last 10 s',
    () => s.buffer.stats().forwardRatePerSec,
  )
  gauge(
    'tether_agent_forward_in_flight_batches',
    'Data batches awaiting their acknowledgement',
    () => s.forwarder.stats().inFlight,
  )
  counter('tether_agent_forward_batches_total', 'Data batches sent', () => s.forwarder.stats().batchesSent)
  counter(
    'tether_agent_forward_failed_batches_total',
    'Data batches the relay did not acknowledge',
    () => s.forwarder.stats().batchesFailed,
  )
  gauge('tether_agent_link_connected', '1 while the relay link is open', () => (s.link.session ? 1 : 0))

  // Site-broker bridge.
  const { bridge, ingest, broker } = s
  if (bridge) {
    gauge('tether_agent_bridge_connected', '1 while connected and subscribed to the site broker', () =>
      bridge.stats().connected ? 1 : 0,
    )
    gauge(
      'tether_agent_bridge_held_messages',
      'Messages held unacknowledged, waiting for room in the buffer',
      () => bridge.stats().held,
    )
    const figures: Array<[keyof BridgeStats, string, string]> = [
      ['received', 'tether_agent_bridge_received_messages_total', 'Messages received from the site broker'],
      ['appended', 'tether_agent_bridge_appended_messages_total', 'Bridged messages appended to the buffer'],
      [
        'unmapped',
        'tether_agent_bridge_unmapped_messages_total',
        'Bridged messages on unmapped topics (ignored)',
      ],
      [
        'invalid',
        'tether_agent_bridge_invalid_messages_total',
        'Bridged messages the buffer refused as invalid',
      ],
      ['errors', 'tether_agent_bridge_errors_total', 'Bridge connection, subscription and append errors'],
      ['connects', 'tether_agent_bridge_connects_total', 'Connections made to the site broker'],
    ]
    for (const [key, name, help] of figures) counter(name, help, () => bridge.stats()[key] as number)
  }

  // HTTP ingest: responses by status.
  if (ingest) {
    new Counter({
      name: 'tether_agent_http_ingest_responses_total',
      help: 'HTTP ingest responses by status',
      labelNames: ['status'],
      registers: [registry],
      collect() {
        this.reset()
        for (const [status, n] of Object.entries(ingest.stats().responses)) this.inc({ status }, n)
      },
    })
    counter(
      'tether_agent_http_ingest_records_total',
      'Records appended through HTTP ingest',
      () => ingest.stats().accepted,
    )
  }

  // Embedded MQTT broker.
  if (broker) {
    gauge(
      'tether_agent_broker_clients',
      'MQTT clients connected to the embedded broker',
      () => broker.stats().clients,
    )
    const figures: Array<[keyof BrokerStats, string, string]> = [
      ['connections', 'tether_agent_broker_connections_total', 'Connections accepted'],
      ['authFailures', 'tether_agent_broker_auth_failures_total', 'CONNECTs refused for bad credentials'],
      ['messagesIn', 'tether_agent_broker_received_messages_total', 'PUBLISH packets received from clients'],
      [
        'appended',
        'tether_agent_broker_appended_messages_total',
        'Messages on mapped topics appended to the buffer',
      ],
      ['local', 'tether_agent_broker_local_messages_total', 'Messages on unmapped topics (LAN only)'],
      [
        'refusedFull',
        'tether_agent_broker_refused_full_messages_total',
        'Messages not acknowledged: buffer full',
      ],
      ['oversize', 'tether_agent_broker_oversize_messages_total', 'PUBLISH packets above maxPayloadBytes'],
      ['invalid', 'tether_agent_broker_invalid_messages_total', 'Messages the buffer refused as invalid'],
      ['duplicates', 'tether_agent_broker_duplicate_messages_total', 'QoS 2 redeliveries not appended again'],
      [
        'clientErrors',
        'tether_agent_broker_client_errors_total',
        'Clients disconnected for a protocol error',
      ],
      [
        'downlinks',
        'tether_agent_broker_downlinks_total',
        'Messages published for the relay ($mqtt/publish)',
      ],
    ]
    for (const [key, name, help] of figures) counter(name, help, () => broker.stats()[key] as number)
  }
}
