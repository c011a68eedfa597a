/**
 * Applies normalised converter output to the integration owner's account: unknown devices are provisioned
 * (type `integration`, with a bucket of the same id), assets and groups created, attributes become properties,
 * telemetry becomes bucket points at their ts.
 */
import type { Logger } from 'pino'
import { entityId } from '../../integrations/entity-id.ts'
import type { UplinkEntity } from '../../integrations/uplink-output.ts'
import type { AssetsStore } from '../assets/index.ts'
import type { BucketService } from '../buckets/bucket-service.ts'
import type { DeviceTraffic } from '../devices/device-traffic.ts'
import type { DevicesStore } from '../devices/devices-store.ts'
import type { DeviceRecord } from '../devices/schemas.ts'
import { RelayErrors } from '../errors.ts'
import type { GroupsStore } from '../groups/index.ts'
import type { GroupMember } from '../groups/schemas.ts'
import type { PropertyService } from '../properties/property-service.ts'

export interface OutputApplierOptions {
  devices: DevicesStore
  buckets: BucketService
  properties: PropertyService
  assets: AssetsStore
  groups: GroupsStore
  traffic: DeviceTraffic
  log: Logger
}

/** Where an entity's telemetry goes: a device's bucket shares its id; an asset's is prefixed. */
export const assetBucket = (asset: string) => `asset_${asset}`.slice(0, 64)

/** Property origin of attributes an uplink reported: their change must not echo back as a downlink. */
export const UPLINK_ORIGIN = 'integration'

/** Stable point identities for a redeliverable uplink (an agent's record): see BucketService.writeAt. */
export interface KeyedUplink {
  origin: string
  /** The first seq of this uplink's points; the next ones follow. */
  seqBase: number
}

/** Attribute values remembered to skip unchanged ones (about 100 bytes each). */
const MAX_KNOWN_ATTRIBUTES = 100_000

/** Points one keyed uplink may hold: the seq space of a record (seqBase = record seq × this). */
export const MAX_POINTS_PER_KEYED_UPLINK = 4096

/** What applying one uplink did. */
export interface Applied {
  /** Device ids written to (downlinks pending for them are answered). */
  devices: string[]
  points: number
}

export class OutputApplier {
  readonly #o: OutputApplierOptions
  /** Provisioning in progress per `user/kind/id`, so concurrent first uplinks create a device once. */
  readonly #provisioning = new Map<string, Promise<unknown>>()

  /**
   * Last known value (JSON) of attribute properties, by `user/device/property`: converters repeat the same
   * attributes on every uplink, and reading each from LevelDB to see it unchanged was a fifth of an uplink's
   * cost. Kept exact by the property service's events (it is the only writer); bounded, oldest dropped.
   */
  readonly #known = new Map<string, string>()

  constructor(opts: OutputApplierOptions) {
    this.#o = opts
    opts.properties.on('changed', (e) =>
      this.#remember(`${e.user}/${e.device}/${e.property}`, JSON.stringify(e.value)),
    )
    opts.properties.on('deleted', (e) => this.#known.delete(`${e.user}/${e.device}/${e.property}`))
  }

  /**
   * Applies entities for `integration` of `user`; `rxBytes` is the uplink's size, counted on each device.
   * Keyed uplinks (from an agent's buffer) give telemetry without its own ts the time `ts` the uplink was
   * received; their point keys carry the record's seq, so a redelivery rewrites the same points.
   */
  async apply(
    user: string,
    integration: string,
    entities: UplinkEntity[],
    rxBytes: number,
    ts = Date.now(),
    keyed?: KeyedUplink,
  ): Promise<Applied> {
    const applied: Applied = { devices: [], points: 0 }
    let seq = keyed?.seqBase ?? 0
    for (const entity of entities) {
      const id = entityId(entity.name)
      const bucket = entity.kind === 'device' ? id : assetBucket(id)
      if (entity.kind === 'device') {
        const device = await this.#once(`${user}/device/${id}`, () =>
          this.#device(user, integration, id, entity),
        )
        if (!device.enabled) throw new RelayErrors.TETHER_ERR_CONFLICT(`device ${id} is disabled`)
        await this.#attributes(user, id, entity.attributes)
        this.#o.traffic.record(user, id, { rx: rxBytes, tx: 0, ignored: false })
        applied.devices.push(id)
      } else {
        await this.#once(`${user}/asset/${id}`, () => this.#asset(user, integration, id, entity))
      }
      await this.#once(`${user}/bucket/${bucket}`, () => this.#bucket(user, bucket, entity))
      const source = `integration:${integration}`
      if (entity.telemetry.length > 0 && keyed) {
        if (seq + entity.telemetry.length - keyed.seqBase > MAX_POINTS_PER_KEYED_UPLINK) {
          throw new RelayErrors.TETHER_ERR_BAD_REQUEST(
            `an uplink may hold at most ${MAX_POINTS_PER_KEYED_UPLINK} telemetry samples`,
          )
        }
        const points = entity.telemetry.map((s) => ({ ts: s.ts ?? ts, seq: seq++, value: s.values }))
        applied.points += await this.#o.buckets.writeAt(user, bucket, points, {
          origin: keyed.origin,
          source,
        })
      } else if (entity.telemetry.length > 0) {
        // Samples without a ts take the bucket's clock, which keeps points of one millisecond apart (an
        // explicit ts would make the second replace the first).
        const points = entity.telemetry.map((s) =>
          s.ts === undefined ? { ...s.values } : { ...s.values, ts: s.ts },
        )
        applied.points += await this.#o.buckets.write(user, bucket, points, { source })
      }
      const member: GroupMember = { type: entity.kind, id }
      if (entity.customerName) await this.#member(user, entity.customerName, 'customer', member)
      if (entity.groupName) await this.#member(user, entity.groupName, 'group', member)
    }
    return applied
  }

  /** Runs `make` once at a time per key: a second caller waits for the first and then runs its own check. */
  async #once<T>(key: string, make: () => Promise<T>): Promise<T> {
    const previous = this.#provisioning.get(key)
    const run = (previous ? previous.catch(() => undefined) : Promise.resolve()).then(make)
    this.#provisioning.set(key, run)
    try {
      return await run
    } finally {
      if (this.#provisioning.get(key) === run) this.#provisioning.delete(key)
    }
  }

  async #device(user: string, integration: string, id: string, entity: UplinkEntity): Promise<DeviceRecord> {
    const existing = await this.#o.devices.get(user, id)
    if (existing) return existing
    const record: DeviceRecord = {
      user,
      device: id,
      type: 'integration',
      name: entity.name,
      description: `provisioned by integration ${integration}`,
      enabled: true,
      created_ts: Date.now(),
      integration: { id: integration, deviceType: entity.type },
    }
    await this.#o.devices.put(record)
    this.#o.log.info({ user, device: id, integration }, 'device provisioned')
    return record
  }

  async #asset(user: string, integration: string, id: string, entity: UplinkEntity): Promise<void> {
    const existing = await this.#o.assets.get(user, id)
    const now = Date.now()
    const attributes = { ...existing?.attributes, ...entity.attributes }
    if (existing && Object.keys(entity.attributes).length === 0) return
    await this.#o.assets.put({
      user,
      asset: id,
      name: entity.name,
      type: existing?.type ?? entity.type,
      attributes,
      bucket: assetBucket(id),
      integration: existing?.integration ?? integration,
      created_ts: existing?.created_ts ?? now,
      updated_ts: now,
    })
  }

  async #bucket(user: string, bucket: string, entity: UplinkEntity): Promise<void> {
    const exists = await this.#o.buckets.get(user, bucket).then(
      () => true,
      () => false,
    )
    if (exists) return
    await this.#o.buckets.create(user, {
      bucket,
      name: entity.name.slice(0, 128),
      description: `telemetry of ${entity.kind} ${entity.name}`,
    })
  }

  /** Attributes become properties; unchanged values are not rewritten (no event, no write). */
  async #attributes(user: string, device: string, attributes: Record<string, unknown>): Promise<void> {
    for (const [key, value] of Object.entries(attributes)) {
      const property = entityId(key)
      const cacheKey = `${user}/${device}/${property}`
      const json = JSON.stringify(value)
      if (this.#known.get(cacheKey) === json) continue
      const current = await this.#o.properties.get(user, device, property)
      if (current && JSON.stringify(current.value) === json) {
        this.#remember(cacheKey, json)
        continue
      }
      await this.#o.properties.set(user, device, property, value, UPLINK_ORIGIN)
    }
  }

  #remember(key: string, json: string): void {
    this.#known.delete(key)
    this.#known.set(key, json)
    if (this.#known.size > MAX_KNOWN_ATTRIBUTES) this.#known.delete(this.#known.keys().next().value as string)
  }

  async #member(user: string, name: string, kind: 'customer' | 'group', member: GroupMember): Promise<void> {
    const id = entityId(name)
    await this.#once(`${user}/group/${id}`, async () => {
      const existing = await this.#o.groups.get(user, id)
      if (existing?.members.some((m) => m.type === member.type && m.id === member.id)) return
      const now = Date.now()
      await this.#o.groups.put({
        user,
        group: id,
        name,
        kind: existing?.kind ?? kind,
        members: [...(existing?.members ?? []), member],
        created_ts: existing?.created_ts ?? now,
        updated_ts: now,
      })
    })
  }
}
