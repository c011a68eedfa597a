/**
 * A DevicesStore that keeps every record it has read or written in memory. Callbacks and agent connects read
 * their device on every request; the relay is the only writer, so the cache is exact, not a guess.
 */
import type { DevicesStore } from './devices-store.ts'
import type { DeviceRecord } from './schemas.ts'

const key = (user: string, device: string) => `${user}/${device}`

/** Wraps `store` with a read-through, write-through cache (misses are not kept: unknown ids must not grow it). */
export function cachedDevicesStore(store: DevicesStore): DevicesStore {
  const cache = new Map<string, DeviceRecord>()
  // Records are handed out as copies: a caller that edits one must not change the cached record unsaved.
  const copy = (r: DeviceRecord | undefined) => (r ? structuredClone(r) : undefined)
  return {
    async get(user, device) {
      const k = key(user, device)
      let record = cache.get(k)
      if (!record) {
        record = await store.get(user, device)
        if (record) cache.set(k, record)
      }
      return copy(record)
    },
    async put(record) {
      await store.put(record)
      cache.set(key(record.user, record.device), structuredClone(record))
    },
    async del(user, device) {
      await store.del(user, device)
      cache.delete(key(user, device))
    },
    list: (user) => store.list(user),
  }
}
