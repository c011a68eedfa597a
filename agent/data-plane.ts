/**
 * The agent's optional data-plane services besides the embedded broker (issue 7): the site-broker bridge, local
 * HTTP ingest and the local `/metrics`. Each starts only when its config key is set, so an agent that only
 * tunnels opens no extra port. A port that cannot be bound fails the start, like a bad config.
 */
import type { Logger } from 'pino'
import { SiteBridge } from './bridge/site-bridge.ts'
import type { MqttBroker } from './broker/mqtt-broker.ts'
import { TopicMapper } from './broker/topic-mapping.ts'
import type { DataBuffer } from './buffer/data-buffer.ts'
import type { Forwarder } from './buffer/forwarder.ts'
import type { AgentConfig } from './config.ts'
import { HttpIngest } from './ingest/http-ingest.ts'
import { AgentMetrics } from './metrics/agent-metrics.ts'

export interface DataPlaneDeps {
  config: Readonly<AgentConfig>
  buffer: DataBuffer
  forwarder: Forwarder
  /** The relay link (connected while it has a session). */
  link: { readonly session: unknown }
  broker?: MqttBroker
  log: Logger
}

/** The running services; `stop` closes them (intake first). */
export interface DataPlane {
  bridge?: SiteBridge
  ingest?: HttpIngest
  metrics?: AgentMetrics
  stop(): Promise<void>
}

/** Starts what is configured; on a failure stops what had started and rethrows. */
export async function startDataPlane(deps: DataPlaneDeps): Promise<DataPlane> {
  const { config, buffer, log } = deps
  const plane: DataPlane = {
    stop: async () => {
      await Promise.all([plane.bridge?.stop(), plane.ingest?.close()])
      await plane.metrics?.close()
    },
  }
  try {
    if (config.bridge) {
      const mapper = TopicMapper.compile(config.topics)
      if (mapper.size === 0)
        log.warn('bridge configured but no `topics` mapping: every bridged message is ignored')
      plane.bridge = new SiteBridge({
        config: config.bridge,
        buffer,
        mapTopic: (topic) => mapper.match(topic),
        log: log.child({ component: 'bridge' }),
      })
      plane.bridge.start()
    }
    if (config.httpIngest) {
      plane.ingest = await HttpIngest.start({
        config: config.httpIngest,
        buffer,
        log: log.child({ component: 'ingest' }),
      })
    }
    if (config.metrics) {
      const { forwarder, link, broker } = deps
      plane.metrics = await AgentMetrics.start({
        config: config.metrics,
        sources: { buffer, forwarder, link, broker, bridge: plane.bridge, ingest: plane.ingest },
        log: log.child({ component: 'metrics' }),
      })
    }
  } catch (err) {
    await plane.stop()
    throw err
  }
  return plane
}
