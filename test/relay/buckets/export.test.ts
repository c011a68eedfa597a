/** Bucket exports on a real relay: csv, json and ndjson of 100,000 points parsed back; streaming, not buffering. */
import assert from 'node:assert/strict'
import http from 'node:http'
import { test } from 'node:test'
import { eventually, startTestRelay } from '../../e2e/harness.ts'
import { createBucket, createUser, fetchAs, type Point, parseCsv } from './bucket-helpers.ts'

const N = 100_000
const T0 = 1_700_000_000_000

/** The i-th point's value: nested objects, arrays, strings needing CSV quotes; some fields only now and then. */
function pointValue(i: number): Record<string, unknown> {
  const v: Record<string, unknown> = {
    temp: (i % 400) / 10,
    meta: { site: i % 3 === 0 ? 'north, "A"' : 'south', loc: { lat: 40 + i / N, lon: -3.5 } },
    tags: [i % 5, 'x'],
    ok: i % 2 === 0,
    note: i % 10 === 0 ? 'line one\r\nline two' : null,
  }
  if (i % 1000 === 999) v.rare = { deep: { er: i } } // first seen far into the range
  return v
}

/** The CSV cells a value should give, by an implementation independent of the relay's. */
function expectedCells(value: unknown, prefix = '', out = new Map<string, string>()): Map<string, string> {
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const name = prefix ? `${prefix}.${k}` : k
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) expectedCells(v, name, out)
    else out.set(name, v === null ? '' : Array.isArray(v) ? JSON.stringify(v) : String(v))
  }
  return out
}

test('bucket exports on one relay', async (t) => {
  const relay = await startTestRelay(t)
  const u = await createUser(relay, 'exporter')
  await createBucket(u, { bucket: 'big' })
  const points: Point[] = Array.from({ length: N }, (_, i) => ({ ts: T0 + i * 1000, val: pointValue(i) }))
  // Through the in-process service (the HTTP write path has its own tests): 100 writes of 1000 points.
  for (let i = 0; i < N; i += 1000) {
    const n = await relay.relay.buckets.write(
      u.name,
      'big',
      points.slice(i, i + 1000).map((p) => ({ ts: p.ts, ...p.val })),
    )
    assert.equal(n, 1000)
  }
  const exportPath = (query: string) => `${u.base}/big/export?${query}`

  await t.test('json: one array of {ts, val}, equal to what was written', async () => {
    const res = await fetchAs(relay, u, exportPath('format=json'))
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/)
    assert.match(res.headers.get('content-disposition') ?? '', /^attachment; filename="big\.json"$/)
    assert.deepEqual(JSON.parse(await res.text()), points)
  })

  await t.test('ndjson: one {ts, val} per line, equal to what was written', async () => {
    const res = await fetchAs(relay, u, exportPath('format=ndjson'))
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^application\/x-ndjson/)
    assert.match(res.headers.get('content-disposition') ?? '', /filename="big\.ndjson"/)
    const text = await res.text()
    assert.ok(text.endsWith('\n'))
    const lines = text.slice(0, -1).split('\n')
    assert.equal(lines.length, N)
    assert.deepEqual(
      lines.map((l) => JSON.parse(l)),
      points,
    )
  })

  await t.test('csv: dotted columns for nested objects, RFC 4180 quoting, arrays as JSON', async () => {
    const res = await fetchAs(relay, u, exportPath('format=csv'))
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^text\/csv/)
    assert.match(res.headers.get('content-disposition') ?? '', /filename="big\.csv"/)
    const rows = parseCsv(await res.text())
    const header = rows[0] as string[]
    assert.deepEqual(header, [
      'ts',
      'temp',
      'meta.site',
      'meta.loc.lat',
      'meta.loc.lon',
      'tags',
      'ok',
      'note',
      'rare.deep.er',
    ])
    assert.equal(rows.length, N + 1)
    for (let i = 0; i < N; i++) {
      const p = points[i] as Point
      const cells = expectedCells(p.val)
      const expected = [String(p.ts), ...header.slice(1).map((c) => cells.get(c) ?? '')]
      assert.deepEqual(rows[i + 1], expected, `row ${i + 1}`)
    }
    // Quoting really happened: commas, quotes and CRLF inside cells.
    assert.deepEqual(rows[1]?.slice(2, 3), ['north, "A"'])
    assert.equal(rows[1]?.[7], 'line one\r\nline two')
  })

  await t.test('min_ts/max_ts (inclusive) apply to every format; empty ranges are well formed', async () => {
    const range = `min_ts=${T0 + 5000}&max_ts=${T0 + 9000}`
    const json = await (await fetchAs(relay, u, exportPath(`format=json&${range}`))).json()
    assert.deepEqual(json, points.slice(5, 10))
    const ndjson = await (await fetchAs(relay, u, exportPath(`format=ndjson&${range}`))).text()
    assert.equal(ndjson.trim().split('\n').length, 5)
    const csv = parseCsv(await (await fetchAs(relay, u, exportPath(`format=csv&${range}`))).text())
    assert.deepEqual(
      csv.slice(1).map((r) => Number(r[0])),
      points.slice(5, 10).map((p) => p.ts),
    )
    assert.equal((csv[0] as string[]).includes('rare.deep.er'), false, 'columns of the range only')
    const none = `min_ts=${T0 - 10}&max_ts=${T0 - 1}`
    assert.equal(await (await fetchAs(relay, u, exportPath(`format=json&${none}`))).text(), '[]')
    assert.equal(await (await fetchAs(relay, u, exportPath(`format=ndjson&${none}`))).text(), '')
    assert.equal(await (await fetchAs(relay, u, exportPath(`format=csv&${none}`))).text(), 'ts\r\n')
    const bad = await fetchAs(relay, u, exportPath('format=xml'))
    assert.equal(bad.status, 400)
    assert.match(((await bad.json()) as { error: { message: string } }).error.message, /querystring\/format/)
  })

  await t.test('an export streams: it reads the store only as fast as the client reads', async (t) => {
    await createBucket(u, { bucket: 'fat' })
    const total = 100_000
    const pad = 'p'.repeat(1000)
    for (let i = 0; i < total; i += 1000) {
      const batch = Array.from({ length: 1000 }, (_, j) => ({ ts: i + j, pad }))
      await relay.relay.buckets.write(u.name, 'fat', batch)
    }
    const service = relay.relay.buckets
    const start = service.exportedPoints
    const url = `${relay.relay.url}${u.base}/fat/export?format=ndjson`
    const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http.get(url, { headers: { authorization: `Bearer ${u.token}` } }, resolve).on('error', reject),
    )
    assert.equal(res.statusCode, 200)
    // Take one chunk, then stop reading: the relay must stop too (socket buffers hold a few MB at most).
    const first = await new Promise<Buffer>((resolve) => res.once('data', resolve))
    res.pause()
    assert.ok(first.length > 0)
    await new Promise((r) => setTimeout(r, 500))
    const readWhilePaused = service.exportedPoints - start
    assert.ok(
      readWhilePaused < total * 0.3,
      `${readWhilePaused} of ${total} points (~${total / 10} MB) read while the client read one chunk`,
    )

    // Then read it all: heap growth stays far below the export's ~110 MB.
    const baseline = process.memoryUsage()
    let peak = 0
    let lines = 0
    let chunks = 0
    let tail = ''
    const consume = (chunk: Buffer) => {
      const parts = (tail + chunk.toString('latin1')).split('\n')
      tail = parts.pop() as string
      lines += parts.length
      if (++chunks % 20 === 0) {
        const m = process.memoryUsage()
        peak = Math.max(peak, m.heapUsed + m.arrayBuffers - baseline.heapUsed - baseline.arrayBuffers)
      }
    }
    consume(first)
    res.on('data', consume)
    res.resume()
    await new Promise((resolve) => res.on('end', resolve))
    assert.equal(tail, '')
    assert.equal(lines, total)
    assert.equal(service.exportedPoints - start, total)
    await eventually(() => service.activeExports === 0, 5000, 'the export to release its snapshot')

    // A client that goes away mid-export: the relay stops reading and releases the iterator and snapshot.
    const gone = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http.get(url, { headers: { authorization: `Bearer ${u.token}` } }, resolve).on('error', reject),
    )
    await new Promise((resolve) => gone.once('data', resolve))
    assert.equal(service.activeExports, 1)
    gone.destroy()
    await eventually(() => service.activeExports === 0, 5000, 'the aborted export to release its snapshot')
    const afterAbort = service.exportedPoints
    await new Promise((r) => setTimeout(r, 200))
    assert.equal(service.exportedPoints, afterAbort, 'nothing is read after the client left')
    assert.equal((await u.api('GET', `${u.base}/fat/data?items=1`)).status, 200)
    t.diagnostic(`heap + buffers grew by at most ${(peak / 2 ** 20).toFixed(1)} MiB during a ~110 MB export`)
    assert.ok(peak < 50 * 2 ** 20, `heap grew by ${(peak / 2 ** 20).toFixed(1)} MiB during a ~110 MB export`)
  })
})
