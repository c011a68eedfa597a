/**
 * The relay's embedded storage: one LevelDB under the data dir, one sublevel per capability.
 * Capabilities see only a `KeyValueTable`, so a database backend later replaces this file, not the callers.
 */
import { mkdir } from 'node:fs/promises'
import { Level } from 'level'

/** A JSON-valued table with string keys, ordered for range scans. */
export interface KeyValueTable<V> {
  get(key: string): Promise<V | undefined>
  put(key: string, value: V): Promise<void>
  del(key: string): Promise<void>
  /** Values whose key starts with `prefix` (all when empty), in key order. */
  values(prefix?: string): Promise<V[]>
}

/** Opens (creating if needed) the LevelDB under `dataDir`. */
export async function openLevelStore(dataDir: string): Promise<LevelStore> {
  await mkdir(dataDir, { recursive: true })
  const db = new Level<string, string>(`${dataDir}/relay.db`, { valueEncoding: 'utf8' })
  await db.open()
  return new LevelStore(db)
}

export class LevelStore {
  constructor(readonly db: Level<string, string>) {}

  /** The table of capability `name` (a sublevel). */
  table<V>(name: string): KeyValueTable<V> {
    const sub = this.db.sublevel<string, V>(name, { valueEncoding: 'json' })
    return {
      async get(key) {
        return (await sub.get(key)) ?? undefined
      },
      async put(key, value) {
        await sub.put(key, value)
      },
      async del(key) {
        await sub.del(key)
      },
      async values(prefix = '') {
        const range = prefix ? { gte: prefix, lt: `${prefix}\xff` } : {}
        return sub.values(range).all()
      },
    }
  }

  async close(): Promise<void> {
    await this.db.close()
  }
}
