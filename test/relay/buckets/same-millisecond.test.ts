/** Points without a ts that arrive in the same millisecond are all kept, and paging by ts never skips one. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startTestRelay } from '../../e2e/harness.ts'

test('points of one millisecond: none overwritten, and pages end between milliseconds', async (t) => {
  const relay = await startTestRelay(t)
  assert.equal((await relay.api('POST', '/v1/users/admin/buckets', { bucket: 'b' })).status, 201)
  // One write: every point gets the same clock reading.
  const burst = Array.from({ length: 10 }, (_, n) => ({ n }))
  assert.equal((await relay.api('POST', '/v1/users/admin/buckets/b/data', burst)).status, 200)
  await relay.api('POST', '/v1/users/admin/buckets/b/data', [
    { ts: 1, n: 'old' },
    { ts: 9e12, n: 'future' },
  ])
  // An explicit ts still overwrites.
  await relay.api('POST', '/v1/users/admin/buckets/b/data', { ts: 1, n: 'old-again' })

  const seen: unknown[] = []
  let minTs = 0
  for (let pages = 0; pages < 20; pages++) {
    const page = await relay.api<Array<{ ts: number; val: { n: unknown } }>>(
      'GET',
      `/v1/users/admin/buckets/b/data?sort=asc&items=4&min_ts=${minTs}`,
    )
    if (page.body.length === 0) break
    // A page is at most 4 points, unless more than 4 share one millisecond: then it is that whole group.
    assert.ok(page.body.length <= 4 || new Set(page.body.map((p) => p.ts)).size === 1)
    seen.push(...page.body.map((p) => p.val.n))
    minTs = (page.body.at(-1)?.ts as number) + 1
  }
  assert.deepEqual(seen, ['old-again', ...burst.map((p) => p.n), 'future'])
})

test('deleting a bucket removes every point, even when more than a delete chunk share one millisecond', async (t) => {
  const relay = await startTestRelay(t)
  await relay.api('POST', '/v1/users/admin/buckets', { bucket: 'b' })
  const burst = Array.from({ length: 1500 }, (_, i) => ({ i, secret: 'old-data' }))
  assert.equal((await relay.api('POST', '/v1/users/admin/buckets/b/data', burst)).status, 200)
  assert.equal((await relay.api('DELETE', '/v1/users/admin/buckets/b')).status, 204)
  // Re-creating the id waits for the purge of the old points.
  assert.equal((await relay.api('POST', '/v1/users/admin/buckets', { bucket: 'b' })).status, 201)
  const read = await relay.api<unknown[]>('GET', '/v1/users/admin/buckets/b/data?items=1000')
  assert.deepEqual(read.body, [], 'a re-created bucket starts empty')
})
