/** Buckets API on a real relay: CRUD, validation messages, disabled buckets, and isolation between users. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startTestRelay } from '../../e2e/harness.ts'
import {
  assertError,
  type BucketView,
  createBucket,
  createUser,
  fetchAs,
  type Point,
  writePoints,
} from './bucket-helpers.ts'

test('buckets CRUD on one relay', async (t) => {
  const relay = await startTestRelay(t)

  await t.test('create with defaults and with every field; get, list', async () => {
    const u = await createUser(relay, 'crud')
    const before = Date.now()
    const plain = await createBucket(u, { bucket: 'temps' })
    assert.deepEqual(
      { ...plain, created_ts: 0 },
      {
        bucket: 'temps',
        name: 'temps',
        description: '',
        enabled: true,
        config: { source: 'api' },
        created_ts: 0,
      },
    )
    assert.ok(plain.created_ts >= before && plain.created_ts <= Date.now())

    const full = await createBucket(u, {
      bucket: 'gw-1_raw',
      name: 'Gateway 1',
      description: 'raw uplink',
      enabled: false,
      config: { source: 'device', device: 'gw1' },
      retention_days: 30,
    })
    assert.equal(full.name, 'Gateway 1')
    assert.equal(full.enabled, false)
    assert.deepEqual(full.config, { source: 'device', device: 'gw1' })
    assert.equal(full.retention_days, 30)

    const one = await u.api<BucketView>('GET', `${u.base}/temps`)
    assert.equal(one.status, 200)
    assert.deepEqual(one.body, plain)
    const list = await u.api<BucketView[]>('GET', u.base)
    assert.equal(list.status, 200)
    assert.deepEqual(
      list.body.map((b) => b.bucket),
      ['gw-1_raw', 'temps'],
    )
    // The token may also come as ?authorization= (Thinger style).
    const viaQuery = await relay.api<BucketView[]>('GET', `${u.base}?authorization=${u.token}`, undefined, '')
    assert.equal(viaQuery.status, 200)
    assert.equal(viaQuery.body.length, 2)
  })

  await t.test('validation errors name the field; duplicates are 409; unknown buckets 404', async () => {
    const u = await createUser(relay, 'invalid')
    await createBucket(u, { bucket: 'b' })
    assertError(await u.api('POST', u.base, { bucket: 'b' }), 409, /bucket b already exists/)
    for (const bucket of ['bad id!', '', 'x'.repeat(65), 'a/b', 'a.b']) {
      assertError(await u.api('POST', u.base, { bucket }), 400, /body\/bucket/)
    }
    assertError(await u.api('POST', u.base, {}), 400, /^body\/bucket is required$/)
    assertError(
      await u.api('POST', u.base, { bucket: 'c', colour: 'red' }),
      400,
      /^body\/colour is not a known field$/,
    )
    assertError(
      await u.api('POST', u.base, { bucket: 'c', config: { source: 'fax' } }),
      400,
      /body\/config\/source/,
    )
    assertError(
      await u.api('POST', u.base, { bucket: 'c', config: {} }),
      400,
      /body\/config\/source is required/,
    )
    assertError(
      await u.api('POST', u.base, { bucket: 'c', config: { source: 'api', x: 1 } }),
      400,
      /body\/config\/x is not a known field/,
    )
    for (const retention_days of [0, -1, 1.5, 'ten']) {
      assertError(await u.api('POST', u.base, { bucket: 'c', retention_days }), 400, /body\/retention_days/)
    }
    assertError(await u.api('POST', u.base, { bucket: 'c', enabled: 'maybe' }), 400, /body\/enabled/)
    assertError(
      await u.api('PUT', `${u.base}/b`, { colour: 'red' }),
      400,
      /^body\/colour is not a known field$/,
    )
    assertError(await u.api('PUT', `${u.base}/b`, { bucket: 'other' }), 400, /body\/bucket cannot change/)
    assertError(await u.api('GET', `${u.base}/b?colour=red`), 400, /querystring\/colour is not a known field/)
    assertError(await u.api('GET', `${u.base}/bad!id`), 400, /params\/bucket/)

    for (const [method, path, body] of [
      ['GET', `${u.base}/nope`],
      ['PUT', `${u.base}/nope`, { name: 'x' }],
      ['DELETE', `${u.base}/nope`],
      ['POST', `${u.base}/nope/data`, { a: 1 }],
      ['GET', `${u.base}/nope/data`],
      ['GET', `${u.base}/nope/export?format=csv`],
    ] as const) {
      assertError(await u.api(method, path, body), 404, /bucket invalid\/nope not found/)
    }
    // Nothing was created by the refused requests.
    const list = await u.api<BucketView[]>('GET', u.base)
    assert.deepEqual(
      list.body.map((b) => b.bucket),
      ['b'],
    )
  })

  await t.test('PUT changes the given fields; retention_days null removes retention', async () => {
    const u = await createUser(relay, 'update')
    const created = await createBucket(u, { bucket: 'b', retention_days: 7 })
    const put = await u.api<BucketView>('PUT', `${u.base}/b`, {
      bucket: 'b',
      name: 'Renamed',
      config: { source: 'callback' },
    })
    assert.equal(put.status, 200, JSON.stringify(put.body))
    assert.deepEqual(put.body, { ...created, name: 'Renamed', config: { source: 'callback' } })
    const cleared = await u.api<BucketView>('PUT', `${u.base}/b`, { retention_days: null, description: 'd' })
    assert.equal(cleared.body.retention_days, undefined)
    assert.equal(cleared.body.description, 'd')
    assert.deepEqual((await u.api('GET', `${u.base}/b`)).body, cleared.body)
    const same = await u.api<BucketView>('PUT', `${u.base}/b`, {})
    assert.deepEqual(same.body, cleared.body)
  })

  await t.test('a disabled bucket refuses writes (409) and keeps its points readable', async () => {
    const u = await createUser(relay, 'disabled')
    await createBucket(u, { bucket: 'b' })
    await writePoints(u, 'b', [{ ts: 1000, v: 1 }])
    assert.equal((await u.api('PUT', `${u.base}/b`, { enabled: false })).status, 200)
    assertError(await u.api('POST', `${u.base}/b/data`, { ts: 2000, v: 2 }), 409, /^bucket b is disabled$/)
    await assert.rejects(relay.relay.buckets.write(u.name, 'b', { v: 3 }), /bucket b is disabled/)
    const read = await u.api<Point[]>('GET', `${u.base}/b/data`)
    assert.deepEqual(read.body, [{ ts: 1000, val: { v: 1 } }])
    assert.equal((await u.api('PUT', `${u.base}/b`, { enabled: true })).status, 200)
    assert.equal((await u.api('POST', `${u.base}/b/data`, { ts: 2000, v: 2 })).status, 200)
    assert.equal((await u.api<Point[]>('GET', `${u.base}/b/data`)).body.length, 2)
  })

  await t.test('delete: 204, gone at once, points deleted, a re-created bucket starts empty', async () => {
    const u = await createUser(relay, 'deleter')
    await createBucket(u, { bucket: 'b' })
    const points = Array.from({ length: 5000 }, (_, i) => ({ ts: 1_000_000 + i, i }))
    await writePoints(u, 'b', points)
    const del = await u.api('DELETE', `${u.base}/b`)
    assert.equal(del.status, 204)
    assert.equal(del.body, undefined)
    assertError(await u.api('GET', `${u.base}/b`), 404)
    assertError(await u.api('POST', `${u.base}/b/data`, { v: 1 }), 404)
    assert.deepEqual((await u.api('GET', u.base)).body, [])
    // Re-created while the old points may still be being deleted: it must start empty.
    await createBucket(u, { bucket: 'b' })
    assert.deepEqual((await u.api('GET', `${u.base}/b/data?items=1000`)).body, [])
    await relay.relay.buckets.settled()
    assert.deepEqual((await u.api('GET', `${u.base}/b/data`)).body, [])
    await writePoints(u, 'b', [{ ts: 5, fresh: true }])
    assert.deepEqual((await u.api('GET', `${u.base}/b/data`)).body, [{ ts: 5, val: { fresh: true } }])
  })

  await t.test('another user cannot see or touch a bucket, on any route', async () => {
    const alice = await createUser(relay, 'alice')
    const bob = await createUser(relay, 'bob')
    await createBucket(alice, { bucket: 'shared' })
    await writePoints(alice, 'shared', [{ ts: 1, owner: 'alice' }])
    const routes = [
      ['GET', alice.base],
      ['POST', alice.base, { bucket: 'intruder' }],
      ['GET', `${alice.base}/shared`],
      ['PUT', `${alice.base}/shared`, { name: 'mine now' }],
      ['DELETE', `${alice.base}/shared`],
      ['POST', `${alice.base}/shared/data`, { ts: 2, owner: 'bob' }],
      ['GET', `${alice.base}/shared/data`],
      ['GET', `${alice.base}/shared/export?format=json`],
      ['GET', `${alice.base}/shared/export?format=csv`],
    ] as const
    for (const [method, path, body] of routes) {
      const res = await bob.api(method, path, body)
      assert.ok(
        [403, 404].includes(res.status),
        `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`,
      )
      assert.equal(typeof (res.body as { error?: { message?: string } }).error?.message, 'string')
      assert.equal(JSON.stringify(res.body).includes('"owner"'), false, 'no data leaks in the error')
    }
    const raw = await fetchAs(relay, bob, `${alice.base}/shared/export?format=ndjson`)
    assert.ok([403, 404].includes(raw.status))
    assert.equal((await raw.text()).includes('owner'), false, 'no point in the answer')
    // Without a token at all: 401.
    assertError(await relay.api('GET', `${alice.base}/shared/data`, undefined, ''), 401)

    // Bob's bucket of the same id is his own: separate points both ways.
    await createBucket(bob, { bucket: 'shared' })
    await writePoints(bob, 'shared', [{ ts: 1, owner: 'bob' }])
    assert.deepEqual((await alice.api('GET', `${alice.base}/shared/data`)).body, [
      { ts: 1, val: { owner: 'alice' } },
    ])
    assert.deepEqual((await bob.api('GET', `${bob.base}/shared/data`)).body, [
      { ts: 1, val: { owner: 'bob' } },
    ])
    // Alice's bucket is unchanged, and the admin sees it.
    const seen = await relay.api<BucketView>('GET', `${alice.base}/shared`)
    assert.equal(seen.status, 200)
    assert.equal(seen.body.name, 'shared')
    assert.deepEqual(
      (await relay.api<BucketView[]>('GET', alice.base)).body.map((b) => b.bucket),
      ['shared'],
    )
  })
})
