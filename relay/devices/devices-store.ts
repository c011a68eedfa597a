/** Devices, behind an interface so a database backend can replace LevelDB. */
import type { KeyValueTable } from '../store/level-store.ts'
import { type UserScopedStore, userScopedStore } from '../store/user-scoped-store.ts'
import type { DeviceRecord } from './schemas.ts'

/** A user's devices by id (`list` is ordered by id). */
export type DevicesStore = UserScopedStore<DeviceRecord>

/** DevicesStore on the `devices` sublevel. */
export function levelDevicesStore(table: KeyValueTable<DeviceRecord>): DevicesStore {
  return userScopedStore(table, (r) => r.device)
}
