/** Proxy profiles, behind an interface so a database backend can replace LevelDB. */
import type { KeyValueTable } from '../store/level-store.ts'
import type { ProxyProfile } from './schemas.ts'

export interface ProxiesStore {
  get(id: string): Promise<ProxyProfile | undefined>
  put(profile: ProxyProfile): Promise<void>
  del(id: string): Promise<void>
  list(): Promise<ProxyProfile[]>
}

/** ProxiesStore on the `proxies` sublevel. */
export function levelProxiesStore(table: KeyValueTable<ProxyProfile>): ProxiesStore {
  return {
    get: (id) => table.get(id),
    put: (profile) => table.put(profile.id, profile),
    del: (id) => table.del(id),
    list: () => table.values(),
  }
}
