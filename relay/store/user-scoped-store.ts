/**
 * The store shape every per-user capability uses (devices, buckets, endpoints): records keyed `user/id` in one
 * table, so a user's records are one range scan. Each capability names its own interface on top of this one.
 */
import type { KeyValueTable } from './level-store.ts'

export interface UserScopedStore<R> {
  get(user: string, id: string): Promise<R | undefined>
  put(record: R): Promise<void>
  del(user: string, id: string): Promise<void>
  /** A user's records ordered by id; without a user, every user's. */
  list(user?: string): Promise<R[]>
}

/** A UserScopedStore on `table`; `idOf` names a record's id field. */
export function userScopedStore<R extends { user: string }>(
  table: KeyValueTable<R>,
  idOf: (record: R) => string,
): UserScopedStore<R> {
  const key = (user: string, id: string) => `${user}/${id}`
  return {
    get: (user, id) => table.get(key(user, id)),
    put: (record) => table.put(key(record.user, idOf(record)), record),
    del: (user, id) => table.del(key(user, id)),
    list: (user) => table.values(user === undefined ? '' : `${user}/`),
  }
}
