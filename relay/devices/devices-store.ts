/** Devices, behind an interface so a database backend can replace LevelDB. */
import type { KeyValueTable } from '../store/level-store.ts'
import type { DeviceRecord } from './schemas.ts'

export interface DevicesStore {
  get(user: string, device: string): Promise<DeviceRecord | undefined>
  put(record: DeviceRecord): Promise<void>
  del(user: string, device: string): Promise<void>
  /** A user's devices, ordered by id. */
  list(user: string): Promise<DeviceRecord[]>
}

const key = (user: string, device: string) => `${user}/${device}`

/** DevicesStore on the `devices` sublevel. */
export function levelDevicesStore(table: KeyValueTable<DeviceRecord>): DevicesStore {
  return {
    get: (user, device) => table.get(key(user, device)),
    put: (record) => table.put(key(record.user, record.device), record),
    del: (user, device) => table.del(key(user, device)),
    list: (user) => table.values(`${user}/`),
  }
}
