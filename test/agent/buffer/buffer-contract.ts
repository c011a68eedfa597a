/**
 * The DataBuffer contract, written once as a suite function and called per implementation (STYLE.md, "Tests"):
 * order, seq restore, acknowledgement, group commit, bounds with both policies (every record accounted for
 * exactly), expiry, refusals.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { BufferError } from '../../../agent/buffer/buffer-errors.ts'
import type { BufferLimits, DataBuffer } from '../../../agent/buffer/data-buffer.ts'
import type { DataRecord, RecordInput } from '../../../agent/buffer/records.ts'

/** Options every implementation takes: limits plus an injectable clock. */
export type OpenBuffer = (
  dir: string,
  opts?: Partial<BufferLimits> & { now?: () => number; maxRecordBytes?: number },
) => Promise<DataBuffer>

const records = (n: number, from = 0, extra: Partial<RecordInput> = {}): RecordInput[] =>
  Array.from({ length: n }, (_, i) => ({
    source: 'mqtt',
    device: 'sensor-1',
    payload: { i: from + i },
    ...extra,
  }))

/** Reads the whole buffer, oldest first. */
export async function readAll(buffer: DataBuffer): Promise<DataRecord[]> {
  const all: DataRecord[] = []
  for (;;) {
    const batch = await buffer.read(all.at(-1)?.seq, 1000, 1024 * 1024)
    if (batch.records.length === 0) return all
    all.push(...batch.records)
  }
}

/** Every appended record is in exactly one place: forwarded, dropped, expired, poisoned or still buffered. */
export function assertAccounted(buffer: DataBuffer): void {
  const s = buffer.stats()
  assert.equal(s.appended, s.forwarded + s.dropped + s.expired + s.poisoned + s.depth, JSON.stringify(s))
}

/** Runs the contract against `open`. */
export function bufferContract(name: string, open: OpenBuffer): void {
  const tempDir = async (t: TestContext) => {
    const dir = await mkdtemp(join(tmpdir(), 'tether-buffer-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    return dir
  }
  /** Opens a buffer closed after the test (closing twice is harmless). */
  const opened = async (t: TestContext, dir: string, opts?: Parameters<OpenBuffer>[1]) => {
    const buffer = await open(dir, opts)
    t.after(() => buffer.close())
    return buffer
  }

  test(`${name}: records come back in append order with increasing seqs, paged by count and bytes`, async (t) => {
    const buffer = await opened(t, await tempDir(t))
    const bytes = new Uint8Array([0, 1, 2, 255])
    assert.deepEqual(await buffer.append(records(3)), { first: 1, last: 3 })
    assert.deepEqual(await buffer.append({ source: 'http', payload: bytes, topic: '/in', ts: 42 }), {
      first: 4,
      last: 4,
    })
    const all = await readAll(buffer)
    assert.deepEqual(
      all.map((r) => r.seq),
      [1, 2, 3, 4],
    )
    assert.deepEqual(all[0]?.payload, { i: 0 })
    assert.equal(all[0]?.device, 'sensor-1')
    const last = all[3] as DataRecord
    assert.deepEqual(
      { ts: last.ts, topic: last.topic, source: last.source, bytes: [...(last.payload as Uint8Array)] },
      { ts: 42, topic: '/in', source: 'http', bytes: [0, 1, 2, 255] },
    )
    assert.deepEqual(
      (await buffer.read(1, 2, 1 << 20)).records.map((r) => r.seq),
      [2, 3],
    )
    // A byte budget smaller than one record still yields that one record: a batch is never empty.
    assert.equal((await buffer.read(undefined, 10, 1)).records.length, 1)
    assert.equal(buffer.stats().depth, 4)
  })

  test(`${name}: seq and epoch survive a reopen, and a seq is never given out twice`, async (t) => {
    const dir = await tempDir(t)
    const first = await open(dir)
    await first.append(records(5))
    const epoch = first.epoch
    assert.equal(await first.ack(5), 5, 'everything acknowledged: no record left to restore the seq from')
    await first.close()
    const second = await opened(t, dir)
    assert.equal(second.epoch, epoch)
    assert.deepEqual(await second.append(records(1)), { first: 6, last: 6 })
    const s = second.stats()
    assert.deepEqual([s.depth, s.forwarded, s.appended, s.lastSeq], [1, 5, 6, 6])
  })

  test(`${name}: ack deletes up to a seq and counts forwarded; acks are idempotent`, async (t) => {
    const buffer = await opened(t, await tempDir(t))
    await buffer.append(records(10))
    const forwarded: number[] = []
    buffer.on('forwarded', (s: { forwarded: number }) => forwarded.push(s.forwarded))
    assert.equal(await buffer.ack(4), 4)
    assert.equal(await buffer.ack(4), 0)
    assert.equal(await buffer.ack(2), 0)
    assert.deepEqual(
      (await readAll(buffer)).map((r) => r.seq),
      [5, 6, 7, 8, 9, 10],
    )
    assert.deepEqual(forwarded, [4])
    assertAccounted(buffer)
  })

  test(`${name}: appends made together are group-committed in one write, in call order`, async (t) => {
    const buffer = await opened(t, await tempDir(t))
    const writesBefore = buffer.stats().writes
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => buffer.append(records(1, i))))
    assert.deepEqual(
      results.map((r) => r.first),
      Array.from({ length: 200 }, (_, i) => i + 1),
    )
    assert.equal(buffer.stats().writes - writesBefore, 1, 'one batch write for 200 appends')
    assert.deepEqual(
      (await readAll(buffer)).map((r) => (r.payload as { i: number }).i),
      Array.from({ length: 200 }, (_, i) => i),
    )
  })

  test(`${name}: drop-oldest keeps the newest records; delivered + dropped = appended exactly`, async (t) => {
    const buffer = await opened(t, await tempDir(t), { maxRecords: 100, policy: 'drop-oldest' })
    let appended = 0
    for (let chunk = 0; chunk < 25; chunk++) {
      await buffer.append(records(40, appended))
      appended += 40
      assert.ok(buffer.stats().depth <= 100)
    }
    const delivered = await readAll(buffer)
    await buffer.ack((delivered.at(-1) as DataRecord).seq)
    const s = buffer.stats()
    assert.equal(delivered.length, 100)
    assert.equal(s.dropped, 900)
    assert.equal(delivered.length + s.dropped, appended)
    assert.deepEqual(
      delivered.map((r) => (r.payload as { i: number }).i),
      Array.from({ length: 100 }, (_, i) => 900 + i),
    )
    assertAccounted(buffer)
  })

  test(`${name}: drop-oldest by bytes, and an append larger than the buffer keeps its newest records`, async (t) => {
    const payload = 'x'.repeat(1000)
    const buffer = await opened(t, await tempDir(t), { maxBytes: 10_500, policy: 'drop-oldest' })
    await buffer.append(records(8, 0, { payload }))
    await buffer.append(records(30, 8, { payload }))
    const s = buffer.stats()
    assert.ok(s.bytes <= 10_500, `bytes ${s.bytes}`)
    const kept = await readAll(buffer)
    assert.equal(kept.length, s.depth)
    assert.equal(kept.length + s.dropped, 38)
    assert.equal(kept.at(-1)?.seq, 38, 'the newest record is kept')
    assertAccounted(buffer)
  })

  test(`${name}: reject-new refuses a whole append with a typed error; delivered + rejected = attempted`, async (t) => {
    const buffer = await opened(t, await tempDir(t), { maxRecords: 50, policy: 'reject-new' })
    let accepted = 0
    let refused = 0
    for (let chunk = 0; chunk < 10; chunk++) {
      try {
        await buffer.append(records(7, chunk * 7))
        accepted += 7
      } catch (err) {
        assert.ok(err instanceof BufferError)
        assert.equal(err.code, 'TETHER_ERR_BUFFER_FULL')
        assert.equal(err.status, 507)
        refused += 7
      }
    }
    const delivered = await readAll(buffer)
    const s = buffer.stats()
    assert.deepEqual([accepted, refused, delivered.length, s.rejected, s.dropped], [49, 21, 49, 21, 0])
    assert.equal(delivered.length + s.rejected, 70)
    // Room again once forwarded: appends are accepted again, seqs continue without a gap.
    await buffer.ack(20)
    assert.deepEqual(await buffer.append(records(7)), { first: 50, last: 56 })
    assertAccounted(buffer)
  })

  test(`${name}: an invalid record fails its own append only; the group's other appends commit`, async (t) => {
    const buffer = await opened(t, await tempDir(t), { maxRecordBytes: 2048 })
    const bad = [
      { source: 'bad source!', payload: 1 },
      { source: 'mqtt', payload: undefined as unknown as number },
      { source: 'mqtt', payload: 1, ts: -1 },
      { source: 'mqtt', payload: 'y'.repeat(4096) },
      { source: 'mqtt', device: '', payload: 1 },
    ]
    const outcomes = await Promise.allSettled([
      buffer.append(records(1)),
      ...bad.map((r) => buffer.append([...records(1), r as RecordInput])),
      buffer.append(records(1, 1)),
    ])
    const codes = outcomes.map((o) => (o.status === 'fulfilled' ? 'ok' : (o.reason as BufferError).code))
    assert.deepEqual(codes, ['ok', ...bad.map(() => 'TETHER_ERR_BUFFER_RECORD_INVALID'), 'ok'])
    assert.deepEqual(
      (await readAll(buffer)).map((r) => r.seq),
      [1, 2],
    )
  })

  test(`${name}: records older than maxAgeDays expire, counted apart from drops`, async (t) => {
    const dir = await tempDir(t)
    let now = 1_000 * 86_400_000
    const buffer = await open(dir, { maxAgeDays: 2, now: () => now })
    await buffer.append(records(5, 0, { ts: now - 3 * 86_400_000 }))
    await buffer.append(records(3, 5, { ts: now }))
    assert.equal(buffer.stats().oldestAgeMs, 3 * 86_400_000)
    await buffer.close()
    now += 60_000
    const reopened = await opened(t, dir, { maxAgeDays: 2, now: () => now })
    const s = reopened.stats()
    assert.deepEqual([s.expired, s.depth, s.dropped, s.oldestAgeMs], [5, 3, 0, 60_000])
    assertAccounted(reopened)
  })

  test(`${name}: a poisoned record is deleted and counted; a closed buffer refuses everything`, async (t) => {
    const buffer = await open(await tempDir(t))
    await buffer.append(records(3))
    assert.equal(await buffer.dropPoisoned(2), true)
    assert.equal(await buffer.dropPoisoned(2), false)
    assert.deepEqual(
      (await readAll(buffer)).map((r) => r.seq),
      [1, 3],
    )
    assert.equal(buffer.stats().poisoned, 1)
    assertAccounted(buffer)
    await buffer.close()
    await assert.rejects(buffer.append(records(1)), { code: 'TETHER_ERR_BUFFER_CLOSED' })
    await assert.rejects(buffer.read(undefined, 1, 1), { code: 'TETHER_ERR_BUFFER_CLOSED' })
    await assert.rejects(buffer.ack(1), { code: 'TETHER_ERR_BUFFER_CLOSED' })
  })
}
