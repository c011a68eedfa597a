/** Endpoint definitions, behind an interface so a database backend can replace LevelDB. */
import type { KeyValueTable } from '../store/level-store.ts'
import { type UserScopedStore, userScopedStore } from '../store/user-scoped-store.ts'
import type { EndpointRecord } from './schemas.ts'

/** A user's endpoints by id (`list` is ordered by id). */
export type EndpointsStore = UserScopedStore<EndpointRecord>

/** EndpointsStore on the `endpoints` sublevel. */
export function levelEndpointsStore(table: KeyValueTable<EndpointRecord>): EndpointsStore {
  return userScopedStore(table, (r) => r.endpoint)
}
