/** The LevelDB buffer: the DataBuffer contract, plus durability across a killed process and counters on disk. */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { LevelBuffer } from '../../../agent/buffer/level-buffer.ts'
import { assertAccounted, bufferContract, readAll } from './buffer-contract.ts'

bufferContract('LevelBuffer', (dir, opts) => LevelBuffer.open(dir, opts))

const MODULE = new URL('../../../agent/buffer/level-buffer.ts', import.meta.url).href

/**
 * A child process appends `chunks` appends of 100 records (sync as given), prints each resolved last seq, and is
 * killed with SIGKILL right after the last line: what it was told is durable must be there after a reopen.
 */
async function appendThenKill(dir: string, chunks: number, sync: boolean): Promise<number> {
  const script = `
    const { LevelBuffer } = await import(${JSON.stringify(MODULE)})
    const buffer = await LevelBuffer.open(${JSON.stringify(dir)}, { sync: ${sync} })
    for (let c = 0; c < ${chunks}; c++) {
      const r = await buffer.append(Array.from({ length: 100 }, (_, i) => ({ source: 'mqtt', payload: { c, i } })))
      process.stdout.write(r.last + '\\n')
    }
    setInterval(() => {}, 1000)
  `
  const child = spawn(
    process.execPath,
    ['--no-node-snapshot', '--import', 'tsx', '--input-type=module', '-e', script],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  )
  let acknowledged = 0
  let text = ''
  child.stdout.setEncoding('utf8')
  for await (const chunk of child.stdout) {
    text += chunk
    const lines = text.split('\n').filter(Boolean)
    acknowledged = Number(lines.at(-1))
    if (lines.length === chunks) break
  }
  const exited = once(child, 'exit')
  child.kill('SIGKILL')
  await exited
  return acknowledged
}

test('LevelBuffer: every append that resolved survives a SIGKILL of the process (sync true and false)', async (t) => {
  for (const sync of [true, false]) {
    const dir = await mkdtemp(join(tmpdir(), 'tether-buffer-kill-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const acknowledged = await appendThenKill(dir, 20, sync)
    assert.equal(acknowledged, 2000)
    const buffer = await LevelBuffer.open(dir)
    t.after(() => buffer.close())
    const all = await readAll(buffer)
    assert.equal(all.length, 2000, `sync ${sync}`)
    assert.deepEqual(
      all.map((r) => r.seq),
      Array.from({ length: 2000 }, (_, i) => i + 1),
    )
    assert.deepEqual([buffer.stats().depth, buffer.stats().lastSeq], [2000, 2000])
    assert.deepEqual(await buffer.append({ source: 'mqtt', payload: 1 }), { first: 2001, last: 2001 })
  }
})

test('LevelBuffer: drop, reject and forward counters are persisted', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tether-buffer-counters-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const rec = (i: number) => ({ source: 'mqtt', payload: i })
  const dropping = await LevelBuffer.open(dir, { maxRecords: 3 })
  await dropping.append([0, 1, 2, 3, 4].map(rec))
  await dropping.ack(4)
  await dropping.close()
  const rejecting = await LevelBuffer.open(dir, { maxRecords: 3, policy: 'reject-new' })
  await rejecting.append([5, 6].map(rec))
  await assert.rejects(rejecting.append([7, 8].map(rec)), { code: 'TETHER_ERR_BUFFER_FULL' })
  await rejecting.close()
  const reopened = await LevelBuffer.open(dir)
  t.after(() => reopened.close())
  const { appended, dropped, rejected, forwarded, depth, bytes } = reopened.stats()
  assert.deepEqual(
    { appended, dropped, rejected, forwarded, depth },
    {
      appended: 7,
      dropped: 2,
      rejected: 2,
      forwarded: 2,
      depth: 3,
    },
  )
  assert.ok(bytes > 0)
  assertAccounted(reopened)
})

test('LevelBuffer: the largest payload the broker and HTTP ingest accept (256 KiB) fits, with the longest topic', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tether-buffer-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const buffer = await LevelBuffer.open(dir, {})
  t.after(() => buffer.close())
  const payload = new Uint8Array(256 * 1024).fill(0xab)
  const topic = 'é'.repeat(4096)
  const { last } = await buffer.append({ source: 'mqtt', device: 'd'.repeat(256), topic, payload })
  const [stored] = await readAll(buffer)
  assert.ok(stored, 'the record was stored')
  assert.equal(stored.seq, last)
  assert.equal((stored.payload as Uint8Array).byteLength, payload.byteLength)
})
