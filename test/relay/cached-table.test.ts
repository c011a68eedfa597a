/** cachedTable: exact read-through, write-through cache over a KeyValueTable. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { cachedTable } from '../../relay/store/cached-table.ts'
import type { KeyValueTable } from '../../relay/store/level-store.ts'

/** An in-memory table that counts its reads. */
function countingTable<V>(): KeyValueTable<V> & { reads: number } {
  const data = new Map<string, V>()
  const t = {
    reads: 0,
    async get(key: string) {
      t.reads++
      return data.get(key)
    },
    async put(key: string, value: V) {
      data.set(key, value)
    },
    async del(key: string) {
      data.delete(key)
    },
    async values() {
      return [...data.values()]
    },
  }
  return t
}

test('reads hit the table once per key, writes and deletes stay exact, edits need a put', async () => {
  const inner = countingTable<{ n: number }>()
  const cached = cachedTable(inner)
  await cached.put('a', { n: 1 })
  assert.deepEqual(await cached.get('a'), { n: 1 })
  assert.equal(inner.reads, 0, 'a written record is served from memory')
  const copy = (await cached.get('a')) as { n: number }
  copy.n = 99
  assert.deepEqual(await cached.get('a'), { n: 1 }, 'an unsaved edit does not leak into the cache')
  await cached.put('a', copy)
  assert.deepEqual(await cached.get('a'), { n: 99 })
  await cached.del('a')
  assert.equal(await cached.get('a'), undefined)
  assert.equal(await cached.get('a'), undefined)
  assert.equal(inner.reads, 2, 'misses are not cached (unknown keys cannot grow it)')
  await inner.put('b', { n: 2 })
  await cached.get('b')
  await cached.get('b')
  assert.equal(inner.reads, 3)
})

test('a read that started before a put or del never caches what it read', async () => {
  const data = new Map<string, { enabled: boolean }>([['d', { enabled: true }]])
  let release: () => void = () => {}
  const slow: KeyValueTable<{ enabled: boolean }> = {
    async get(key) {
      const value = data.get(key)
      await new Promise<void>((resolve) => {
        release = resolve
      })
      return value
    },
    async put(key, value) {
      data.set(key, value)
    },
    async del(key) {
      data.delete(key)
    },
    async values() {
      return [...data.values()]
    },
  }
  const cached = cachedTable(slow)
  const stale = cached.get('d') // reads { enabled: true } and waits
  await cached.put('d', { enabled: false })
  release()
  assert.deepEqual(await stale, { enabled: true })
  assert.deepEqual(await cached.get('d'), { enabled: false }, 'the put wins over the older read')
})
