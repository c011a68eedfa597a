/**
 * The data sink of remote integrations: records `integration:<id>` from an agent's buffer carry the converted
 * output of one uplink, made on the LAN; they are applied like a relay-side uplink. Points are keyed by the
 * agent, its buffer epoch and the record's seq, so a redelivery after a crash rewrites them instead of adding
 * copies. An agent can only feed integrations configured to run on it.
 */
import type { Logger } from 'pino'
import { UplinkOutputError, uplinkEntities } from '../../integrations/uplink-output.ts'
import type { DataSink } from '../data/data-sinks.ts'
import type { IntegrationManager } from './integration-manager.ts'
import { MAX_POINTS_PER_KEYED_UPLINK, type OutputApplier } from './output-applier.ts'

/** The sink for source prefix `integration`. */
export function remoteIntegrationSink(
  manager: IntegrationManager,
  applier: OutputApplier,
  log: Logger,
): DataSink {
  return async (agent, records) => {
    let rejected = 0
    for (const record of records) {
      const id = record.source.slice('integration:'.length)
      const rt = manager.get(agent.user, id)
      if (rt?.record.runOn?.device !== agent.device) {
        rejected++
        log.warn(
          { agent: agent.device, integration: id },
          'data for an integration that does not run on this agent',
        )
        continue
      }
      try {
        const output = (record.payload as { output?: unknown } | undefined)?.output
        const entities = uplinkEntities(output)
        await applier.apply(agent.user, id, entities, 0, record.ts, {
          origin: `${agent.device}.${agent.epoch}`.slice(0, 160),
          seqBase: record.seq * MAX_POINTS_PER_KEYED_UPLINK,
        })
        rt.uplinks++
        rt.lastUplinkTs = Date.now()
      } catch (err) {
        const status = (err as { statusCode?: number }).statusCode
        // Storage hiccups are retried by redelivery; output that cannot be applied never will be.
        const permanent = err instanceof UplinkOutputError || (status !== undefined && status < 500)
        if (!permanent) throw err
        rejected++
        rt.failed(`remote uplink: ${(err as Error).message}`)
      }
    }
    return { rejected }
  }
}
