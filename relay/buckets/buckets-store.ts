/** Bucket records, behind an interface so a database backend can replace LevelDB. */
import type { KeyValueTable } from '../store/level-store.ts'
import type { BucketRecord } from './schemas.ts'

export interface BucketsStore {
  get(user: string, bucket: string): Promise<BucketRecord | undefined>
  put(record: BucketRecord): Promise<void>
  del(user: string, bucket: string): Promise<void>
  /** A user's buckets, ordered by id; `undefined` lists every user's (for the retention job). */
  list(user?: string): Promise<BucketRecord[]>
}

const key = (user: string, bucket: string) => `${user}/${bucket}`

/** BucketsStore on the `buckets` sublevel. */
export function levelBucketsStore(table: KeyValueTable<BucketRecord>): BucketsStore {
  return {
    get: (user, bucket) => table.get(key(user, bucket)),
    put: (record) => table.put(key(record.user, record.bucket), record),
    del: (user, bucket) => table.del(key(user, bucket)),
    list: (user) => table.values(user === undefined ? '' : `${user}/`),
  }
}
