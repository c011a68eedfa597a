/** Endpoint definitions, behind an interface so a database backend can replace LevelDB. */
import type { KeyValueTable } from '../store/level-store.ts'
import type { EndpointRecord } from './schemas.ts'

export interface EndpointsStore {
  get(user: string, endpoint: string): Promise<EndpointRecord | undefined>
  put(record: EndpointRecord): Promise<void>
  del(user: string, endpoint: string): Promise<void>
  /** A user's endpoints, ordered by id. */
  list(user: string): Promise<EndpointRecord[]>
}

const key = (user: string, endpoint: string) => `${user}/${endpoint}`

/** EndpointsStore on the `endpoints` sublevel. */
export function levelEndpointsStore(table: KeyValueTable<EndpointRecord>): EndpointsStore {
  return {
    get: (user, endpoint) => table.get(key(user, endpoint)),
    put: (record) => table.put(key(record.user, record.endpoint), record),
    del: (user, endpoint) => table.del(key(user, endpoint)),
    list: (user) => table.values(`${user}/`),
  }
}
