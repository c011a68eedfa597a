/**
 * A KeyValueTable that keeps in memory every record it has read or written. For the small, hot tables read on
 * every request (users, devices, buckets): the relay is their only writer, so the cache is exact. Misses are not
 * kept, so unknown keys cannot grow it.
 */
import type { KeyValueTable } from './level-store.ts'

/** Wraps `table` with a read-through, write-through cache; records are handed out as copies. */
export function cachedTable<V>(table: KeyValueTable<V>): KeyValueTable<V> {
  const cache = new Map<string, V>()
  // Bumped by every put and del: a read that started before one must not cache what it read.
  let generation = 0
  return {
    async get(key) {
      let value = cache.get(key)
      if (value === undefined) {
        const before = generation
        value = await table.get(key)
        if (value !== undefined && generation === before) cache.set(key, value)
      }
      // A caller that edits a record must not change the cached one before it is saved.
      return value === undefined ? undefined : structuredClone(value)
    },
    async put(key, value) {
      generation++
      await table.put(key, value)
      generation++
      cache.set(key, structuredClone(value))
    },
    async del(key) {
      generation++
      await table.del(key)
      generation++
      cache.delete(key)
    },
    values: (prefix) => table.values(prefix),
  }
}
