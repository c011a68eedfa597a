/** Bucket points on a real relay: writes (ts, overwrite, bad bodies, concurrency), reads and paging by ts. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startTestRelay } from '../../e2e/harness.ts'
import {
  assertError,
  createBucket,
  createUser,
  type Point,
  type TestUser,
  writePoints,
} from './bucket-helpers.ts'

/** Reads every point of a bucket page by page, asking again past the last ts, as a client would. */
async function readAllPages(
  u: TestUser,
  bucket: string,
  sort: 'asc' | 'desc',
  items: number,
): Promise<Point[]> {
  const seen: Point[] = []
  let bound = ''
  for (let pages = 0; ; pages++) {
    assert.ok(pages < 100_000, 'paging does not end')
    const res = await u.api<Point[]>('GET', `${u.base}/${bucket}/data?items=${items}&sort=${sort}${bound}`)
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.ok(res.body.length <= items)
    if (res.body.length === 0) return seen
    seen.push(...res.body)
    const last = (res.body.at(-1) as Point).ts
    bound = sort === 'asc' ? `&min_ts=${last + 1}` : `&max_ts=${last - 1}`
  }
}

test('bucket points on one relay', async (t) => {
  const relay = await startTestRelay(t)
  const u = await createUser(relay, 'data')

  await t.test('a point keeps its own ts (removed from the value); without one it gets now', async () => {
    await createBucket(u, { bucket: 'ts' })
    const one = await u.api<{ written: number }>('POST', `${u.base}/ts/data`, {
      ts: 1_700_000_000_123,
      t: 21.5,
    })
    assert.equal(one.status, 200)
    assert.deepEqual(one.body, { written: 1 })
    const before = Date.now()
    assert.deepEqual((await u.api('POST', `${u.base}/ts/data`, { nested: { a: [1, 2] }, s: 'x' })).body, {
      written: 1,
    })
    const after = Date.now()
    const read = await u.api<Point[]>('GET', `${u.base}/ts/data?sort=asc`)
    assert.equal(read.status, 200)
    assert.equal(read.body.length, 2)
    assert.deepEqual(read.body[0], { ts: 1_700_000_000_123, val: { t: 21.5 } })
    const now = read.body[1] as Point
    assert.ok(now.ts >= before && now.ts <= after, `${now.ts} within [${before}, ${after}]`)
    assert.deepEqual(now.val, { nested: { a: [1, 2] }, s: 'x' })
    // ts 0 is a valid instant; an empty object is a valid point.
    assert.equal((await u.api('POST', `${u.base}/ts/data`, [{ ts: 0 }])).status, 200)
    assert.deepEqual((await u.api<Point[]>('GET', `${u.base}/ts/data?sort=asc&items=1`)).body, [
      { ts: 0, val: {} },
    ])
  })

  await t.test('the same ts overwrites: one point per ts, the last write wins', async () => {
    await createBucket(u, { bucket: 'ow' })
    await writePoints(u, 'ow', [{ ts: 10, v: 'first' }])
    await writePoints(u, 'ow', [{ ts: 10, v: 'second', extra: true }])
    // Within one array too, and points without ts in one write share "now".
    assert.deepEqual(
      (
        await u.api('POST', `${u.base}/ow/data`, [
          { ts: 20, v: 'a' },
          { ts: 20, v: 'b' },
        ])
      ).body,
      {
        written: 2,
      },
    )
    // Concurrent writes of the same ts still leave exactly one point.
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => u.api('POST', `${u.base}/ow/data`, { ts: 30, v: i })),
    )
    const read = await u.api<Point[]>('GET', `${u.base}/ow/data?sort=asc`)
    assert.deepEqual(read.body.slice(0, 2), [
      { ts: 10, val: { v: 'second', extra: true } },
      { ts: 20, val: { v: 'b' } },
    ])
    assert.equal(read.body.length, 3)
    assert.equal(read.body[2]?.ts, 30)
  })

  await t.test('bad bodies are refused with a 400 naming the element; nothing is written', async () => {
    await createBucket(u, { bucket: 'bad' })
    const path = `${u.base}/bad/data`
    assertError(await u.api('POST', path, [{ ts: 1 }, 42, { ts: 3 }]), 400, /body\/1 must be object/)
    assertError(await u.api('POST', path, [{ ts: 1 }, { ts: 1.5 }]), 400, /^body\/1\/ts must be an integer/)
    assertError(
      await u.api('POST', path, [{ ts: 1 }, { a: 1 }, { ts: '3' }]),
      400,
      /^body\/2\/ts must be an integer/,
    )
    assertError(await u.api('POST', path, { ts: -1 }), 400, /^body\/ts must be an integer/)
    assertError(await u.api('POST', path, { ts: null }), 400, /^body\/ts must be an integer/)
    assertError(await u.api('POST', path, { ts: 2 ** 60 }), 400, /^body\/ts must be an integer/)
    assertError(await u.api('POST', path, 'text'), 400, /body must be/)
    assertError(await u.api('POST', path, [[1, 2]]), 400, /body\/0 must be object/)
    assertError(
      await u.api(
        'POST',
        path,
        Array.from({ length: 10_001 }, () => ({})),
      ),
      400,
      /body/,
    )
    assert.deepEqual((await u.api('GET', `${path}?items=1000`)).body, [])
    // The in-process service answers the same way, naming the element.
    await assert.rejects(relay.relay.buckets.write(u.name, 'bad', [{}, null]), /body\/1 must be an object/)
    await assert.rejects(relay.relay.buckets.write(u.name, 'bad', { ts: 'x' }), /body\/ts must be an integer/)
    await assert.rejects(relay.relay.buckets.write(u.name, 'nope', {}), { statusCode: 404 })
    assert.equal(await relay.relay.buckets.write(u.name, 'bad', [{ ts: 5, a: 1 }]), 1)
    assert.deepEqual(await relay.relay.buckets.read(u.name, 'bad'), [{ ts: 5, val: { a: 1 } }])
  })

  await t.test('read query: items, inclusive min_ts/max_ts, sort (desc by default), validation', async () => {
    await createBucket(u, { bucket: 'q' })
    await writePoints(
      u,
      'q',
      Array.from({ length: 300 }, (_, i) => ({ ts: 1000 + i, i })),
    )
    const path = `${u.base}/q/data`
    const dflt = await u.api<Point[]>('GET', path)
    assert.equal(dflt.body.length, 100, 'items defaults to 100')
    assert.equal(dflt.body[0]?.ts, 1299, 'newest first by default')
    const range = await u.api<Point[]>('GET', `${path}?min_ts=1010&max_ts=1015&sort=asc`)
    assert.deepEqual(
      range.body.map((p) => p.ts),
      [1010, 1011, 1012, 1013, 1014, 1015],
    )
    const desc = await u.api<Point[]>('GET', `${path}?min_ts=1010&max_ts=1015&sort=desc&items=2`)
    assert.deepEqual(
      desc.body.map((p) => p.ts),
      [1015, 1014],
    )
    assert.deepEqual((await u.api('GET', `${path}?min_ts=2000`)).body, [])
    assert.deepEqual((await u.api('GET', `${path}?min_ts=1200&max_ts=1100`)).body, [])
    assertError(await u.api('GET', `${path}?items=1001`), 400, /querystring\/items/)
    assertError(await u.api('GET', `${path}?items=0`), 400, /querystring\/items/)
    assertError(await u.api('GET', `${path}?sort=up`), 400, /querystring\/sort/)
    assertError(await u.api('GET', `${path}?min_ts=abc`), 400, /querystring\/min_ts/)
    assertError(await u.api('GET', `${path}?max_ts=-5`), 400, /querystring\/max_ts/)
    assertError(await u.api('GET', `${path}?limit=5`), 400, /querystring\/limit is not a known field/)
  })

  await t.test('paging across 10,000 points, asc and desc: every point once, in order', async () => {
    await createBucket(u, { bucket: 'pages' })
    // Irregular gaps between timestamps, so paging cannot rely on a fixed step.
    const written: Point[] = []
    let ts = 1_600_000_000_000
    for (let i = 0; i < 10_000; i++) {
      ts += 1 + (i % 7) * 13
      written.push({ ts, val: { i, nested: { even: i % 2 === 0 } } })
    }
    await writePoints(
      u,
      'pages',
      written.map((p) => ({ ts: p.ts, ...p.val })),
    )
    const asc = await readAllPages(u, 'pages', 'asc', 1000)
    assert.equal(asc.length, 10_000)
    assert.deepEqual(asc, written)
    const desc = await readAllPages(u, 'pages', 'desc', 1000)
    assert.deepEqual(desc, [...written].reverse())
    // A page size that does not divide the total.
    const odd = await readAllPages(u, 'pages', 'asc', 333)
    assert.deepEqual(
      odd.map((p) => p.ts),
      written.map((p) => p.ts),
    )
  })

  await t.test('many small concurrent writes are all stored, each answered after it is written', async () => {
    await createBucket(u, { bucket: 'many' })
    const n = 1000
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        u.api<{ written: number }>('POST', `${u.base}/many/data`, { ts: 5_000 + i, i }),
      ),
    )
    for (const res of results) assert.deepEqual(res.body, { written: 1 })
    const all = await u.api<Point[]>('GET', `${u.base}/many/data?items=1000&sort=asc`)
    assert.deepEqual(
      all.body.map((p) => p.val.i),
      Array.from({ length: n }, (_, i) => i),
    )
  })
})
