/**
 * Device properties: JSON values per device, stored in LevelDB, and an in-process event API so that other
 * capabilities (downlinks, converters) react to changes without polling.
 */
import { EventEmitter } from 'node:events'
import type { KeyValueTable } from '../store/level-store.ts'
import type { PropertyView } from './schemas.ts'

/** What listeners of `changed` and `deleted` receive. */
export interface PropertyEvent {
  user: string
  device: string
  property: string
  /** The new value (`changed`) or the removed one (`deleted`). */
  value: unknown
  previous?: unknown
  ts: number
  /** Who made the change when not a user: `integration` for attributes an uplink reported (no downlink). */
  origin?: string
}

interface StoredProperty extends PropertyView {
  user: string
  device: string
}

const key = (user: string, device: string, property = '') => `${user}/${device}/${property}`

/** RFC 7386 JSON merge patch of `target` with `patch`. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch
  const base =
    target !== null && typeof target === 'object' && !Array.isArray(target)
      ? { ...(target as Record<string, unknown>) }
      : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete base[k]
    else base[k] = mergePatch(base[k], v)
  }
  return base
}

/** Events: `changed` and `deleted`, each with a PropertyEvent. */
export class PropertyService extends EventEmitter<{ changed: [PropertyEvent]; deleted: [PropertyEvent] }> {
  constructor(readonly table: KeyValueTable<StoredProperty>) {
    super()
  }

  /** A device's properties, ordered by id. */
  async list(user: string, device: string): Promise<PropertyView[]> {
    return (await this.table.values(key(user, device))).map(view)
  }

  async get(user: string, device: string, property: string): Promise<PropertyView | undefined> {
    const stored = await this.table.get(key(user, device, property))
    return stored && view(stored)
  }

  /** Creates or replaces a property's value; emits `changed` (with `origin` when given). */
  async set(
    user: string,
    device: string,
    property: string,
    value: unknown,
    origin?: string,
  ): Promise<PropertyView> {
    const previous = await this.table.get(key(user, device, property))
    const ts = Date.now()
    const stored: StoredProperty = {
      user,
      device,
      property,
      value,
      created_ts: previous?.created_ts ?? ts,
      updated_ts: ts,
    }
    await this.table.put(key(user, device, property), stored)
    this.emit('changed', {
      user,
      device,
      property,
      value,
      previous: previous?.value,
      ts,
      ...(origin ? { origin } : {}),
    })
    return view(stored)
  }

  /** Merge-patches an existing property's value (RFC 7386); undefined when it does not exist. */
  async patch(
    user: string,
    device: string,
    property: string,
    patch: unknown,
  ): Promise<PropertyView | undefined> {
    const previous = await this.table.get(key(user, device, property))
    if (!previous) return undefined
    return this.set(user, device, property, mergePatch(previous.value, patch))
  }

  /** Deletes a property; false when it did not exist. Emits `deleted`. */
  async delete(user: string, device: string, property: string): Promise<boolean> {
    const previous = await this.table.get(key(user, device, property))
    if (!previous) return false
    await this.table.del(key(user, device, property))
    this.emit('deleted', { user, device, property, value: previous.value, ts: Date.now() })
    return true
  }

  /** Deletes every property of a device (the device was deleted). */
  async deleteAll(user: string, device: string): Promise<void> {
    for (const p of await this.list(user, device)) await this.delete(user, device, p.property)
  }
}

function view({ property, value, created_ts, updated_ts }: StoredProperty): PropertyView {
  return { property, value, created_ts, updated_ts }
}
