/** Integration definitions, behind an interface so a database backend can replace LevelDB. */
import type { KeyValueTable } from '../store/level-store.ts'
import { type UserScopedStore, userScopedStore } from '../store/user-scoped-store.ts'
import type { IntegrationRecord } from './schemas.ts'

/** A user's integrations by id (`list` is ordered by id). */
export type IntegrationsStore = UserScopedStore<IntegrationRecord>

/** IntegrationsStore on the `integrations` sublevel. */
export function levelIntegrationsStore(table: KeyValueTable<IntegrationRecord>): IntegrationsStore {
  return userScopedStore(table, (r) => r.id)
}
