/** Users, behind an interface so a database backend can replace LevelDB. */
import type { KeyValueTable } from '../store/level-store.ts'
import type { UserRecord } from './schemas.ts'

export interface UsersStore {
  get(username: string): Promise<UserRecord | undefined>
  put(user: UserRecord): Promise<void>
  list(): Promise<UserRecord[]>
}

/** UsersStore on the `users` sublevel. */
export function levelUsersStore(table: KeyValueTable<UserRecord>): UsersStore {
  return {
    get: (username) => table.get(username),
    put: (user) => table.put(user.username, user),
    list: () => table.values(),
  }
}
