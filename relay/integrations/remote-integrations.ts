/**
 * Remote integrations (`runOn`): the relay keeps what each agent should run and pushes it (config and converter
 * scripts) over the agent's link whenever it connects or either changes. The agent runs the transport and the
 * uplink converter on the LAN and sends results through its store-and-forward buffer (`$data`, source
 * `integration:<id>`); downlinks are encoded here and delivered by the agent's transport. At each connect the agent
 * asks for its whole set (`$integrations/list`) and drops any it runs that is no longer wanted.
 */
import type { EncodedDownlink } from '../../integrations/transport.ts'
import type { ConverterRecord } from '../converters/schemas.ts'
import type { AgentHub, AgentLink } from '../hub/agent-hub.ts'
import type { RemoteIntegrations } from './integration-manager.ts'
import type { IntegrationRecord } from './schemas.ts'

/** RUN resources the agent answers for remote integrations. */
export const REMOTE_RESOURCES = {
  apply: '$integrations/apply',
  remove: '$integrations/remove',
  downlink: '$integrations/downlink',
  /** Asked by the agent at each connect: the whole set it should run. */
  list: '$integrations/list',
} as const

/** How long a RUN to the agent may take (a transport start binds ports or reaches a broker). */
const RUN_TIMEOUT_MS = 15_000

interface Deployment {
  record: IntegrationRecord
  converters: ConverterRecord[]
}

/** The wire form of a deployment: the config without owner and times, scripts with their version. */
function applyPayload({ record, converters }: Deployment) {
  const { user: _user, created_ts: _c, updated_ts: _u, ...integration } = record
  return {
    integration,
    converters: converters.map((c) => ({
      id: c.id,
      dialect: c.dialect,
      direction: c.direction,
      script: c.script,
      version: c.updated_ts,
    })),
  }
}

export class RemoteIntegrationLinks implements RemoteIntegrations {
  readonly #hub: AgentHub
  /** What each agent should run, by `user/id` of the integration. */
  readonly #wanted = new Map<string, Deployment>()
  constructor(hub: AgentHub) {
    this.#hub = hub
    hub.handleRun(REMOTE_RESOURCES.list, async (link) => ({
      integrations: this.#wantedBy(link).map(applyPayload),
    }))
  }

  /** Whether the agent an integration runs on is connected. */
  online(record: IntegrationRecord): boolean {
    return record.runOn !== undefined && this.#hub.get(record.user, record.runOn.device) !== undefined
  }

  async deploy(record: IntegrationRecord, converters: ConverterRecord[]): Promise<void> {
    const deployment = { record, converters }
    this.#wanted.set(`${record.user}/${record.id}`, deployment)
    const link = this.#link(record)
    // An offline agent asks for it when it connects; the agent also keeps its last copy across restarts.
    if (link)
      await link.session.run(REMOTE_RESOURCES.apply, applyPayload(deployment), undefined, RUN_TIMEOUT_MS)
  }

  async undeploy(record: IntegrationRecord): Promise<void> {
    this.#wanted.delete(`${record.user}/${record.id}`)
    const link = this.#link(record)
    if (link) await link.session.run(REMOTE_RESOURCES.remove, { id: record.id }, undefined, RUN_TIMEOUT_MS)
  }

  async deliver(record: IntegrationRecord, device: string, downlink: EncodedDownlink): Promise<void> {
    const link = this.#link(record)
    if (!link) throw new Error(`agent ${record.runOn?.device} is offline`)
    await link.session.run(
      REMOTE_RESOURCES.downlink,
      { id: record.id, device, downlink },
      undefined,
      RUN_TIMEOUT_MS,
    )
  }

  #link(record: IntegrationRecord): AgentLink | undefined {
    return record.runOn ? this.#hub.get(record.user, record.runOn.device) : undefined
  }

  #wantedBy(link: AgentLink): Deployment[] {
    return [...this.#wanted.values()].filter(
      ({ record }) => record.user === link.user && record.runOn?.device === link.device,
    )
  }
}
