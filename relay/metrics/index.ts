/** Prometheus metrics at `/metrics` (prom-client), read from live state when scraped; one registry per relay. */
import type { FastifyInstance } from 'fastify'
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import type { DataCounters } from '../data/index.ts'
import type { AgentHub } from '../hub/agent-hub.ts'
import type { ProxyManager } from '../proxies/proxy-manager.ts'
import type { ProxyStatus } from '../proxies/schemas.ts'

export interface MetricsOptions {
  hub: AgentHub
  proxies: ProxyManager
  /** Totals of the agents' data uplink (relay.data.counters). */
  data?: DataCounters
}

type ProxyRow = { id: string; protocol: string; status: ProxyStatus }

export default async function metricsPlugin(app: FastifyInstance, { hub, proxies, data }: MetricsOptions) {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'tether_relay_' })
  const rows = (): ProxyRow[] =>
    [...proxies.entries()].map((e) => ({ id: e.id, protocol: e.protocol, status: proxies.status(e.id) }))
  const labelNames = ['proxy', 'protocol']

  const gauge = (name: string, help: string, read: (r: ProxyRow) => number) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset()
        for (const r of rows()) this.set({ proxy: r.id, protocol: r.protocol }, read(r))
      },
    })
  // Counters mirror monotonic totals kept by the proxies; reset + inc republishes them at each scrape.
  const counter = (name: string, help: string, read: (r: ProxyRow) => number) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset()
        for (const r of rows()) this.inc({ proxy: r.id, protocol: r.protocol }, read(r))
      },
    })

  new Gauge({
    name: 'tether_agents_connected',
    help: 'Agents with an open IoTMP link',
    registers: [registry],
    collect() {
      this.set(hub.size)
    },
  })
  gauge('tether_proxy_listening', '1 when the proxy listener is open', (r) => (r.status.listening ? 1 : 0))
  gauge(
    'tether_proxy_active_connections',
    'Open connections (UDP: client mappings)',
    (r) => r.status.active_connections,
  )
  counter('tether_proxy_connections_total', 'Connections accepted', (r) => r.status.total_connections)
  counter(
    'tether_proxy_rejected_connections_total',
    'Connections refused',
    (r) => r.status.rejected_connections,
  )
  counter('tether_proxy_received_bytes_total', 'Bytes received from clients', (r) => r.status.rx_bytes)
  counter('tether_proxy_sent_bytes_total', 'Bytes sent to clients', (r) => r.status.tx_bytes)
  counter(
    'tether_proxy_dropped_datagrams_total',
    'UDP datagrams dropped because the path was congested',
    (r) => r.status.dropped_datagrams,
  )

  if (data) {
    new Counter({
      name: 'tether_data_records_total',
      help: "Records of agents' $data batches: stored, duplicate (redelivered, ignored), rejected (invalid or refused)",
      labelNames: ['result'],
      registers: [registry],
      collect() {
        this.reset()
        this.inc({ result: 'stored' }, data.stored)
        this.inc({ result: 'duplicate' }, data.duplicates)
        this.inc({ result: 'rejected' }, data.rejected)
      },
    })
    new Counter({
      name: 'tether_data_batches_total',
      help: "Agents' $data batches: ok (stored and acknowledged) or refused (answered ERROR, resent later)",
      labelNames: ['result'],
      registers: [registry],
      collect() {
        this.reset()
        this.inc({ result: 'ok' }, data.batches)
        this.inc({ result: 'refused' }, data.refused)
      },
    })
  }

  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', registry.contentType)
    return registry.metrics()
  })
}
