/** The agent process: validated config in, relay link and target dialer wired together. */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { type Logger, pino } from 'pino'
import { ConverterEngine } from '../converters/index.ts'
import { WireErrorCode } from '../protocol/messages.ts'
import type { Session } from '../protocol/session.ts'
import { readCaFiles } from '../protocol/tls-target.ts'
import type { SiteBridge } from './bridge/site-bridge.ts'
import { MqttBroker } from './broker/mqtt-broker.ts'
import type { DataBuffer } from './buffer/data-buffer.ts'
import { Forwarder } from './buffer/forwarder.ts'
import { LevelBuffer } from './buffer/level-buffer.ts'
import type { RecordInput } from './buffer/records.ts'
import { type AgentConfig, loadAgentConfig } from './config.ts'
import { startDataPlane } from './data-plane.ts'
import { Allowlist } from './dialer/allowlist.ts'
import { Dialer } from './dialer/dialer.ts'
import type { HttpIngest } from './ingest/http-ingest.ts'
import { RemoteIntegrations } from './integrations/remote-integrations.ts'
import { RelayLink } from './link/relay-link.ts'
import type { AgentMetrics } from './metrics/agent-metrics.ts'
import { AGENT_VERSION } from './version.ts'

/** A running agent. */
export interface Agent {
  config: Readonly<AgentConfig>
  link: RelayLink
  /** The store-and-forward buffer: `append` records (resolves once durable), `stats()`. */
  buffer: DataBuffer
  /** Moves buffered records to the relay whenever the link is up. */
  forwarder: Forwarder
  /** Integrations the relay runs on this agent (`runOn`). */
  integrations: RemoteIntegrations
  /** The embedded MQTT broker (config `broker`), absent when not configured; `stats()` for /metrics. */
  broker?: MqttBroker
  /** The site-broker bridge (config `bridge`); `stats()`. */
  bridge?: SiteBridge
  /** Local HTTP ingest (config `httpIngest`); `port` is the bound port. */
  ingest?: HttpIngest
  /** Local Prometheus `/metrics` (config `metrics`); `port` is the bound port. */
  metrics?: AgentMetrics
  /** Resolves with the session once connected (at once if already connected). */
  connected(): Promise<Session>
  stop(): Promise<void>
}

/** Creates the agent's pino logger (readable when stdout is a terminal); the credential never reaches logs. */
export function agentLogger(level: string, pretty = process.stdout.isTTY === true): Logger {
  const transport = pretty
    ? pino.transport({ target: 'pino-pretty', options: { ignore: 'pid,hostname' } })
    : undefined
  return pino({ level, redact: { paths: ['credential', '*.credential'], censor: '[redacted]' } }, transport)
}

/** Starts an agent from configuration (validated here); it connects in the background. */
export async function startAgent(input: Record<string, unknown>, logger?: Logger): Promise<Agent> {
  const config = loadAgentConfig(input)
  const log = logger ?? agentLogger(config.logLevel)
  const allowlist = new Allowlist(config.allow)
  await mkdir(config.stateDir, { recursive: true })
  if (config.allow.length === 0) log.warn('allowlist is empty: the relay cannot open any local target')
  const dialer = new Dialer(allowlist, log.child({ component: 'dialer' }), {
    dialTimeoutMs: config.dialTimeoutMs,
    targetCa: readCaFiles(config.targetCa),
  })
  const buffer = await LevelBuffer.open(join(config.stateDir, 'buffer'), {
    ...config.buffer,
    log: log.child({ component: 'buffer' }),
  })
  // Before the link: LAN devices publish (durably) whether or not the relay is reachable.
  const brokerLog = log.child({ component: 'broker' })
  const broker = config.broker
    ? await MqttBroker.start({ config: config.broker, topics: config.topics, buffer, log: brokerLog }).catch(
        async (err) => {
          await buffer.close()
          throw err
        },
      )
    : undefined
  // Made on first use: most agents run no remote integration and need no isolates.
  let engine: ConverterEngine | undefined
  const integrations = new RemoteIntegrations({
    stateDir: config.stateDir,
    // Converter output is JSON-able (the engine copies it out as JSON).
    append: async (records) => void (await buffer.append(records as RecordInput[])),
    engine: () => {
      engine ??= new ConverterEngine({ isolates: 1 })
      return engine
    },
    log: log.child({ component: 'integrations' }),
  })
  let link: RelayLink
  try {
    link = new RelayLink({
      config,
      log: log.child({ component: 'link' }),
      onStartStream: dialer.handle,
      onDescribe: () => ({
        version: AGENT_VERSION,
        allow: allowlist.toJSON(),
        refusals: dialer.refusals,
        buffer: { ...buffer.stats(), ...forwarder.stats() },
        integrations: integrations.status(),
        ...(broker ? { broker: broker.stats() } : {}),
        downlinks: config.downlinks,
      }),
      onRun: (resource, payload, params) => {
        if (broker?.handles(resource)) return broker.run(resource, payload, params)
        if (integrations.handles(resource)) return integrations.run(resource, payload)
        return Promise.reject(
          Object.assign(new Error(`unknown resource ${resource}`), {
            wireCode: WireErrorCode.UNKNOWN_RESOURCE,
          }),
        )
      },
    })
  } catch (err) {
    await broker?.close()
    await buffer.close()
    throw err
  }
  const forwarder = new Forwarder({ buffer, link, log: log.child({ component: 'forwarder' }) })
  forwarder.start()
  // Integrations kept from the last run start before the link: they buffer whether or not the relay is up.
  await integrations.open()
  // Bridge, HTTP ingest and /metrics (data-plane.ts): before the link, like the broker.
  const dataPlane = await startDataPlane({ config, buffer, forwarder, link, broker, log }).catch(
    async (err) => {
      await forwarder.stop()
      await integrations.close()
      await broker?.close()
      await buffer.close()
      throw err
    },
  )
  link.on('connected', (session: Session) => void integrations.syncWith(session))
  link.start()
  return {
    config,
    link,
    buffer,
    forwarder,
    integrations,
    broker,
    bridge: dataPlane.bridge,
    ingest: dataPlane.ingest,
    metrics: dataPlane.metrics,
    connected: () =>
      link.session
        ? Promise.resolve(link.session)
        : new Promise((resolve) => link.once('connected', resolve)),
    stop: async () => {
      // LAN intake first: every message acknowledged before this is in the buffer.
      await broker?.close()
      await dataPlane.stop()
      // Stop sending first, then close the link: that settles the batches in flight, whose acks still apply.
      const forwarding = forwarder.stop()
      await integrations.close()
      await link.stop()
      await forwarding
      await buffer.close()
      engine?.close()
    },
  }
}
