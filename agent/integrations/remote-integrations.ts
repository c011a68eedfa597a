/**
 * Remote integrations on the agent: the relay pushes integration configs and converter scripts
 * (`$integrations/apply|remove|sync`); the agent runs each one's transport on the LAN (an MQTT broker, TCP or UDP
 * devices the cloud cannot reach), converts uplinks here, and appends the results to its store-and-forward
 * buffer, so nothing a device sent is lost while the relay is away. The last configs are kept in the state dir,
 * so an agent restarted without its relay resumes them. Downlinks arrive encoded (`$integrations/downlink`).
 */
import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { Value } from 'typebox/value'
import type { ConverterEngine } from '../../converters/index.ts'
import type { Dialect, Direction } from '../../converters/types.ts'
import { uplinkCall, uplinkShape } from '../../integrations/converter-calls.ts'
import { entityId } from '../../integrations/entity-id.ts'
import { IntegrationConfig } from '../../integrations/schemas.ts'
import type { EncodedDownlink, Transport, UplinkMessage } from '../../integrations/transport.ts'
import { createTransport } from '../../integrations/transports/index.ts'
import { uplinkEntities } from '../../integrations/uplink-output.ts'
import type { Session } from '../../protocol/session.ts'

/** A converter as the relay sends it. */
export interface RemoteConverter {
  id: string
  dialect: Dialect
  direction: Direction
  script: string
  version: number
}

/** One deployment: the integration's config and its converters. */
export interface RemoteDeployment {
  integration: IntegrationConfig
  converters: RemoteConverter[]
}

/** A record for the buffer: the converted output of one uplink. */
export interface IntegrationRecord {
  ts: number
  source: string
  device?: string
  payload: { output: unknown }
}

export interface RemoteIntegrationsOptions {
  stateDir: string
  /** Appends durably to the agent's buffer; rejects when the buffer refuses (full under `reject-new`). */
  append: (records: IntegrationRecord[]) => Promise<void>
  /** The converter engine, made on first use (most agents run no remote integration). */
  engine: () => ConverterEngine
  log: Logger
}

interface Running {
  deployment: RemoteDeployment
  transport: Transport
  uplinks: number
  errors: number
  lastError?: string
}

/** Status of one remote integration, for DESCRIBE. */
export interface RemoteIntegrationStatus {
  id: string
  type: string
  state: string
  error?: string
  port?: number
  uplinks: number
  errors: number
}

const FILE = 'remote-integrations.json'

export class RemoteIntegrations {
  readonly #o: RemoteIntegrationsOptions
  readonly #running = new Map<string, Running>()
  /** Serialises applies, removes and syncs: each restarts transports and rewrites the state file. */
  #queue: Promise<unknown> = Promise.resolve()

  constructor(opts: RemoteIntegrationsOptions) {
    this.#o = opts
  }

  /** Starts the integrations kept from the last run. */
  async open(): Promise<void> {
    let saved: RemoteDeployment[] = []
    try {
      saved = JSON.parse(await readFile(join(this.#o.stateDir, FILE), 'utf8')) as RemoteDeployment[]
    } catch {
      return // none yet
    }
    for (const deployment of saved) {
      await this.#start(deployment).catch((err) =>
        this.#o.log.warn(
          { integration: deployment.integration?.id, err: (err as Error).message },
          'saved integration not started',
        ),
      )
    }
  }

  /**
   * Asks the relay for the integrations this agent should run (at each connect) and runs exactly those. A relay
   * that does not know the request (an older one) leaves the running set as it is.
   */
  async syncWith(session: Session): Promise<void> {
    let wanted: unknown
    try {
      wanted = await session.run('$integrations/list', undefined, undefined, 15_000)
    } catch (err) {
      this.#o.log.debug({ err: (err as Error).message }, 'relay did not list remote integrations')
      return
    }
    await this.run('$integrations/sync', wanted).catch((err) =>
      this.#o.log.warn({ err: (err as Error).message }, 'remote integrations not synced'),
    )
  }

  /** Whether `resource` is one of the relay's `$integrations/*` RUNs. */
  handles(resource: string): boolean {
    return resource.startsWith('$integrations/')
  }

  /** Runs one `$integrations/*` request. */
  run(resource: string, payload: unknown): Promise<unknown> {
    const next = this.#queue.then(() => this.#run(resource, payload))
    this.#queue = next.catch(() => undefined)
    return next
  }

  /** Status of every running integration. */
  status(): RemoteIntegrationStatus[] {
    return [...this.#running.values()].map((r) => {
      const s = r.transport.status()
      return {
        id: r.deployment.integration.id,
        type: r.deployment.integration.type,
        state: s.state,
        ...(s.error || r.lastError ? { error: s.error ?? r.lastError } : {}),
        ...(s.port !== undefined ? { port: s.port } : {}),
        uplinks: r.uplinks,
        errors: r.errors,
      }
    })
  }

  /** Stops every transport (agent shutdown); the saved configs stay for the next start. */
  async close(): Promise<void> {
    await this.#queue
    await Promise.all([...this.#running.values()].map((r) => r.transport.stop().catch(() => undefined)))
    this.#running.clear()
  }

  async #run(resource: string, payload: unknown): Promise<unknown> {
    switch (resource) {
      case '$integrations/apply': {
        const deployment = checked(payload)
        await this.#start(deployment)
        await this.#save()
        return { id: deployment.integration.id }
      }
      case '$integrations/remove': {
        const id = String((payload as { id?: unknown })?.id)
        await this.#stop(id)
        await this.#save()
        return { id }
      }
      case '$integrations/sync': {
        const list = (payload as { integrations?: unknown })?.integrations
        if (!Array.isArray(list)) throw new Error('payload.integrations must be an array')
        const deployments = list.map(checked)
        const keep = new Set(deployments.map((d) => d.integration.id))
        for (const id of this.#running.keys()) if (!keep.has(id)) await this.#stop(id)
        for (const d of deployments) {
          if (!same(this.#running.get(d.integration.id)?.deployment, d)) await this.#start(d)
        }
        await this.#save()
        return { running: [...this.#running.keys()] }
      }
      case '$integrations/downlink': {
        const { id, device, downlink } = payload as { id: string; device: string; downlink: EncodedDownlink }
        const running = this.#running.get(id)
        if (!running) throw new Error(`integration ${id} is not running on this agent`)
        await running.transport.deliver(device, downlink)
        return { delivered: true }
      }
      default:
        throw new Error(`unknown resource ${resource}`)
    }
  }

  async #start(deployment: RemoteDeployment): Promise<void> {
    const config = deployment.integration
    await this.#stop(config.id)
    if (config.enabled === false) return
    const uplinkConverter = deployment.converters.find((c) => c.id === config.uplinkConverter)
    if (!uplinkConverter) throw new Error(`converter ${config.uplinkConverter} was not sent`)
    const log = this.#o.log.child({ integration: config.id })
    const running = {} as Running
    running.deployment = deployment
    running.uplinks = 0
    running.errors = 0
    running.transport = createTransport(config, {
      uplink: (message) => this.#uplink(running, uplinkConverter, message),
      log,
    })
    this.#running.set(config.id, running)
    await running.transport.start()
    log.info({ type: config.type, status: running.transport.status() }, 'remote integration running')
  }

  async #stop(id: string): Promise<void> {
    const running = this.#running.get(id)
    if (!running) return
    this.#running.delete(id)
    await running.transport.stop().catch(() => undefined)
    this.#o.engine().forget(`remote/${id}/`)
  }

  /** Converts one uplink on the LAN and appends the output to the buffer; the relay applies it on arrival. */
  async #uplink(
    running: Running,
    converter: RemoteConverter,
    message: UplinkMessage,
  ): Promise<{ devices: string[] }> {
    const config = running.deployment.integration
    const metadata = { integrationName: config.name ?? config.id, ...config.metadata, ...message.metadata }
    try {
      const call = uplinkCall(converter, { payload: message.payload, metadata })
      const script = {
        key: `remote/${config.id}/${converter.id}@${converter.version}`,
        dialect: converter.dialect,
        script: converter.script,
      }
      const { output } = await this.#o.engine().run(script, call.fn, call.input)
      const shaped = uplinkShape(converter, output, metadata, config.id)
      const entities = shaped === null ? [] : uplinkEntities(shaped)
      if (entities.length > 0) {
        await this.#o.append([
          { ts: Date.now(), source: `integration:${config.id}`, payload: { output: shaped } },
        ])
      }
      running.uplinks++
      return { devices: entities.filter((e) => e.kind === 'device').map((e) => entityId(e.name)) }
    } catch (err) {
      running.errors++
      running.lastError = (err as Error).message
      this.#o.log.warn({ integration: config.id, err: running.lastError }, 'remote uplink failed')
      throw err
    }
  }

  /** Keeps the running set for the next start; written whole and renamed, so a crash never leaves half a file. */
  async #save(): Promise<void> {
    const file = join(this.#o.stateDir, FILE)
    const deployments = [...this.#running.values()].map((r) => r.deployment)
    await writeFile(`${file}.tmp`, JSON.stringify(deployments))
    await rename(`${file}.tmp`, file)
  }
}

/** A deployment from the relay, validated (a bad one is refused with an ERROR, never started). */
function checked(payload: unknown): RemoteDeployment {
  const p = payload as Partial<RemoteDeployment> | undefined
  if (!p || !Value.Check(IntegrationConfig, p.integration)) {
    const first = p ? [...Value.Errors(IntegrationConfig, p.integration)][0] : undefined
    throw new Error(`invalid integration config${first ? `: ${first.instancePath} ${first.message}` : ''}`)
  }
  if (!Array.isArray(p.converters)) throw new Error('payload.converters must be an array')
  return { integration: p.integration, converters: p.converters }
}

const same = (a: RemoteDeployment | undefined, b: RemoteDeployment) =>
  a !== undefined && JSON.stringify(a) === JSON.stringify(b)
