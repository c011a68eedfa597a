/** Converter definitions, behind an interface so a database backend can replace LevelDB. */
import type { KeyValueTable } from '../store/level-store.ts'
import { type UserScopedStore, userScopedStore } from '../store/user-scoped-store.ts'
import type { ConverterRecord } from './schemas.ts'

/** A user's converters by id (`list` is ordered by id). */
export type ConvertersStore = UserScopedStore<ConverterRecord>

/** ConvertersStore on the `converters` sublevel. */
export function levelConvertersStore(table: KeyValueTable<ConverterRecord>): ConvertersStore {
  return userScopedStore(table, (r) => r.id)
}
