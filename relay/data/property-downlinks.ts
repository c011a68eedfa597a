/**
 * Property downlinks to LAN devices (issue 7, "Downlink"): when a property of a device an agent provisioned
 * (its DeviceRecord `via`, set by device-sink.ts) changes, the relay publishes the new value on that agent's MQTT
 * broker with RUN `$mqtt/publish` (DESIGN.md, "Downlink"), following the agent's `downlinks` rules as its DESCRIBE
 * answer reports them:
 *
 * - a rule applies when its `property` is the property's id or `*`; every applying rule publishes once;
 * - the topic is the rule's template with `{device}` (the device id) and `{property}` filled in;
 * - the payload is the value's JSON text (`21.5`, `"on"`, `{"mode":"eco"}`), with the rule's qos and retain.
 *
 * Changes that carry an `origin` were made by an uplink (an integration reporting attributes) and are not sent
 * back. A change while the agent is offline is not queued: it is counted as `offline` (the property keeps its
 * value on the relay). Per device, changes are published one at a time in the order they happened.
 */
import type { Logger } from 'pino'
import type { DevicesStore } from '../devices/devices-store.ts'
import type { PropertyDownlinkRule } from '../devices/schemas.ts'
import type { AgentHub } from '../hub/agent-hub.ts'
import type { PropertyEvent, PropertyService } from '../properties/property-service.ts'

/** The RUN resource of a downlink publish (the agent's agent/broker/mqtt-publish.ts). */
export const MQTT_PUBLISH_RESOURCE = '$mqtt/publish'

export interface PropertyDownlinksOptions {
  hub: AgentHub
  properties: PropertyService
  devices: DevicesStore
  log: Logger
}

/** Running totals (for /metrics and tests). */
export interface DownlinkCounters {
  /** Publishes the agent confirmed. */
  sent: number
  /** Publishes the agent refused or that got no answer. */
  failed: number
  /** Changes of an agent's device while the agent was not connected. */
  offline: number
}

/** The topic of `rule` for a property change. */
export function renderDownlinkTopic(template: string, device: string, property: string): string {
  return template.replaceAll('{device}', device).replaceAll('{property}', property)
}

/** The rules of `rules` that apply to `property`. */
export function rulesFor(rules: readonly PropertyDownlinkRule[], property: string): PropertyDownlinkRule[] {
  return rules.filter((r) => r.property === property || r.property === '*')
}

/** Listens to property changes and publishes them through the agents (see above); `close` stops. */
export class PropertyDownlinks {
  readonly counters: DownlinkCounters = { sent: 0, failed: 0, offline: 0 }
  readonly #o: PropertyDownlinksOptions
  /** The tail of each device's chain of publishes, by `user/device`. */
  readonly #chains = new Map<string, Promise<void>>()

  constructor(opts: PropertyDownlinksOptions) {
    this.#o = opts
    opts.properties.on('changed', this.#onChanged)
  }

  /** Stops listening; resolves once the publishes under way are done. */
  async close(): Promise<void> {
    this.#o.properties.off('changed', this.#onChanged)
    while (this.#chains.size > 0) await Promise.allSettled([...this.#chains.values()])
  }

  readonly #onChanged = (event: PropertyEvent): void => {
    if (event.origin !== undefined) return
    const { user, device } = event
    const key = `${user}/${device}`
    const previous = this.#chains.get(key) ?? Promise.resolve()
    const run = previous
      .then(() => this.#route(event))
      .catch((err) => this.#o.log.error({ err, user, device }, 'property downlink failed'))
    this.#chains.set(key, run)
    void run.then(() => {
      if (this.#chains.get(key) === run) this.#chains.delete(key)
    })
  }

  async #route(event: PropertyEvent): Promise<void> {
    const agent = (await this.#o.devices.get(event.user, event.device))?.via?.agent
    if (agent !== undefined) await this.#publish(event, agent)
  }

  async #publish(event: PropertyEvent, agent: string): Promise<void> {
    const { hub, log } = this.#o
    const { user, device, property } = event
    const link = hub.get(user, agent)
    if (!link?.session.isOpen) {
      this.counters.offline++
      log.debug({ user, device, property, agent }, 'property downlink not sent: agent offline')
      return
    }
    const description = link.description ?? (await hub.describe(link))
    const rules = rulesFor(description?.downlinks ?? [], property)
    const payload = Buffer.from(JSON.stringify(event.value) ?? 'null')
    for (const rule of rules) {
      const topic = renderDownlinkTopic(rule.topic, device, property)
      try {
        await link.session.run(MQTT_PUBLISH_RESOURCE, payload, { topic, qos: rule.qos, retain: rule.retain })
        this.counters.sent++
      } catch (err) {
        this.counters.failed++
        log.info(
          { user, device, property, agent, topic, err: (err as Error).message },
          'property downlink failed',
        )
      }
    }
  }
}
