/** Bucket records, behind an interface so a database backend can replace LevelDB. */
import type { KeyValueTable } from '../store/level-store.ts'
import { type UserScopedStore, userScopedStore } from '../store/user-scoped-store.ts'
import type { BucketRecord } from './schemas.ts'

/** A user's buckets by id; `list()` without a user lists every user's (for the retention job). */
export type BucketsStore = UserScopedStore<BucketRecord>

/** BucketsStore on the `buckets` sublevel. */
export function levelBucketsStore(table: KeyValueTable<BucketRecord>): BucketsStore {
  return userScopedStore(table, (r) => r.bucket)
}
