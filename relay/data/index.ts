/**
 * Data capability: serves agents' RUN `$data` (the store-and-forward uplink) and dispatches the records to the
 * sinks registered in `DataSinks` by source. See data-uplink.ts for the handling and its exactly-once rules.
 */
import type { FastifyInstance } from 'fastify'
import type { Level } from 'level'
import type { Logger } from 'pino'
import type { AgentHub } from '../hub/agent-hub.ts'
import type { DataSinks } from './data-sinks.ts'
import { DataUplink } from './data-uplink.ts'
import { DATA_RESOURCE } from './records.ts'
import { levelUplinkMarks } from './uplink-marks.ts'

export type { DataAgent, DataCounters, DataSink, DataSinkResult } from './data-sinks.ts'
export { DataSinks } from './data-sinks.ts'
export { deviceSink } from './device-sink.ts'
export type { DataRecord } from './records.ts'

export interface DataOptions {
  hub: AgentHub
  sinks: DataSinks
  /** The relay's LevelDB: marks live on its `data-marks` sublevel. */
  db: Level<string, string>
  log: Logger
}

/** Registers the `$data` RUN handler on the hub; waits at close for the batches being stored. */
export default async function dataPlugin(app: FastifyInstance, opts: DataOptions): Promise<void> {
  const { hub, sinks, db, log } = opts
  const uplink = new DataUplink({ sinks, marks: levelUplinkMarks(db), log })
  hub.handleRun(DATA_RESOURCE, (link, payload, params) => uplink.handle(link, payload, params))
  // Child hooks run before the relay's own onClose, which closes the store: batches finish first.
  app.addHook('onClose', () => uplink.close())
}
