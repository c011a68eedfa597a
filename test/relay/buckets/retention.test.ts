/** Bucket retention (on demand and by its timer) and points surviving a relay restart. */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { pino } from 'pino'
import { BucketService, levelBucketsStore, levelPointsStore } from '../../../relay/buckets/index.ts'
import { openLevelStore } from '../../../relay/store/level-store.ts'
import { eventually, startTestRelay } from '../../e2e/harness.ts'
import { createBucket, createUser, type Point, writePoints } from './bucket-helpers.ts'

const DAY = 86_400_000

test('retention deletes points older than retention_days, and only those', async (t) => {
  const relay = await startTestRelay(t)
  const u = await createUser(relay, 'keeper')
  const now = Date.now()
  await createBucket(u, { bucket: 'short', retention_days: 2 })
  await createBucket(u, { bucket: 'forever' })
  // 2,500 points older than the cutoff (more than one deletion chunk), and a few newer ones.
  const old = Array.from({ length: 2500 }, (_, i) => ({ ts: now - 3 * DAY - i * 1000, old: true }))
  const recent = [
    { ts: now - 2 * DAY + 60_000, recent: 'just inside' },
    { ts: now - DAY, recent: 1 },
    { ts: now, recent: 0 },
  ]
  await writePoints(u, 'short', [...old, ...recent])
  await writePoints(u, 'forever', old.slice(0, 10))

  const result = await relay.relay.buckets.applyRetention()
  assert.equal(result.deleted, 2500)
  const kept = await u.api<Point[]>('GET', `${u.base}/short/data?items=1000&sort=asc`)
  assert.deepEqual(
    kept.body.map((p) => p.ts),
    recent.map((p) => p.ts),
  )
  const untouched = await u.api<Point[]>('GET', `${u.base}/forever/data?items=1000`)
  assert.equal(untouched.body.length, 10, 'a bucket without retention keeps everything')
  assert.deepEqual(await relay.relay.buckets.applyRetention(), { deleted: 0 })

  // retention_days: null turns retention off.
  await writePoints(u, 'short', old.slice(0, 5))
  assert.equal((await u.api('PUT', `${u.base}/short`, { retention_days: null })).status, 200)
  assert.deepEqual(await relay.relay.buckets.applyRetention(), { deleted: 0 })
  assert.equal((await u.api<Point[]>('GET', `${u.base}/short/data?items=1000`)).body.length, 8)
})

test('retention deletes in chunks and lets writes through meanwhile', async (t) => {
  const relay = await startTestRelay(t)
  const u = await createUser(relay, 'busy')
  const service = relay.relay.buckets
  await createBucket(u, { bucket: 'old', retention_days: 1 })
  await createBucket(u, { bucket: 'live' })
  const start = Date.now() - 10 * DAY
  for (let i = 0; i < 150_000; i += 5000) {
    await service.write(
      u.name,
      'old',
      Array.from({ length: 5000 }, (_, j) => ({ ts: start + i + j, v: j })),
    )
  }
  let retentionDone = false
  const run = service.applyRetention().then((r) => {
    retentionDone = true
    return r
  })
  // A write made after the job started is answered before the job ends: the job yields between chunks.
  await new Promise((r) => setImmediate(r))
  assert.equal(await service.write(u.name, 'live', { ts: 1, v: 'written meanwhile' }), 1)
  assert.equal(retentionDone, false, 'the write waited for the whole retention run')
  assert.deepEqual(await run, { deleted: 150_000 })
  assert.deepEqual(await service.read(u.name, 'old'), [])
  assert.deepEqual(await service.read(u.name, 'live'), [{ ts: 1, val: { v: 'written meanwhile' } }])
})

test('the retention timer runs the job periodically; close stops it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tether-buckets-'))
  const store = await openLevelStore(dir)
  t.after(async () => {
    await store.close().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  })
  let clock = 100 * DAY
  const service = await BucketService.open({
    buckets: levelBucketsStore(store.table('buckets')),
    points: levelPointsStore(store.db),
    log: pino({ level: 'silent' }),
    retentionIntervalMs: 30,
    now: () => clock,
  })
  await service.create('u', { bucket: 'b', retention_days: 1 })
  await service.write('u', 'b', [{ ts: clock - 2 * DAY, v: 'old' }, { v: 'new' }])
  await eventually(
    async () => (await service.read('u', 'b')).length === 1,
    5000,
    'the timer to run retention',
  )
  assert.deepEqual(await service.read('u', 'b'), [{ ts: clock, val: { v: 'new' } }])
  await service.close()
  // Stopped: time moves on, but nothing is deleted any more.
  clock += 10 * DAY
  await new Promise((r) => setTimeout(r, 150))
  assert.equal((await service.read('u', 'b')).length, 1)
})

test('buckets and points survive a relay restart', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tether-relay-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const first = await startTestRelay(t, {}, dir)
  const u = await createUser(first, 'durable')
  await createBucket(u, { bucket: 'b', retention_days: 3 })
  await writePoints(
    u,
    'b',
    Array.from({ length: 1500 }, (_, i) => ({ ts: i, i })),
  )
  await first.relay.close()

  const second = await startTestRelay(t, {}, dir)
  const again = await second.api<{ retention_days: number }>('GET', '/v1/users/durable/buckets/b')
  assert.equal(again.body.retention_days, 3)
  const page = await second.api<Point[]>(
    'GET',
    '/v1/users/durable/buckets/b/data?items=1000&sort=asc&min_ts=1000',
  )
  assert.equal(page.body.length, 500)
  assert.deepEqual(page.body[0], { ts: 1000, val: { i: 1000 } })
})
