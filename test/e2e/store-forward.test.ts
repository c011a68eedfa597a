/**
 * Store and forward, end to end: a real relay (in process, or a `tether relay` child process that gets SIGKILLed)
 * and a real agent on loopback. Records the agent buffered reach the device's bucket exactly once and in order
 * across relay outages, agent restarts and relay crashes; malformed `$data` batches get ERROR and the relay keeps
 * serving; a record the relay can never take does not wedge the queue.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { type TestContext, test } from 'node:test'
import { pino } from 'pino'
import WebSocket, { WebSocketServer } from 'ws'
import { type Agent, startAgent } from '../../agent/agent.ts'
import type { RecordInput } from '../../agent/buffer/records.ts'
import { RemoteError } from '../../protocol/errors.ts'
import {
  DEFAULT_WINDOW_BYTES,
  IOTMP_SUBPROTOCOL,
  MAX_FRAME_BYTES,
  WireErrorCode,
} from '../../protocol/messages.ts'
import { Session } from '../../protocol/session.ts'
import { WsChannel } from '../../protocol/ws-channel.ts'
import {
  ADMIN_PASSWORD,
  createAgentDevice,
  drained,
  freePort,
  memoryLogger,
  startTestRelay,
  type TestRelay,
} from './harness.ts'

const CLI = new URL('../../cli/tether.mjs', import.meta.url).pathname

/** `n` records about LAN device `device`, payload `{i}`; four records share each millisecond (seq decides). */
const readings = (n: number, from = 0, device = 'sensor-1'): RecordInput[] =>
  Array.from({ length: n }, (_, k) => ({
    source: 'mqtt',
    device,
    topic: `site/${device}`,
    ts: 1_700_000_000_000 + Math.floor((from + k) / 4),
    payload: { i: from + k },
  }))

/** Starts an agent `gw` of admin with its buffer in `stateDir`; stopped after the test. */
async function agentIn(t: TestContext, stateDir: string, relay: string, credential: string, extra = {}) {
  const { logger } = memoryLogger('info')
  const agent = await startAgent(
    { relay, user: 'admin', device: 'gw', credential, stateDir, keepAliveSec: 5, ...extra },
    logger,
  )
  t.after(() => agent.stop())
  return agent
}

const stateDir = async (t: TestContext) => {
  const dir = await mkdtemp(join(tmpdir(), 'tether-agent-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Appends `n` readings in chunks of 1000; resolves once all are durable. */
async function appendReadings(agent: Agent, n: number, device = 'sensor-1'): Promise<void> {
  for (let from = 0; from < n; from += 1000)
    await agent.buffer.append(readings(Math.min(1000, n - from), from, device))
}

/** Every point of a bucket, oldest first, through the export API. */
async function exportPoints(baseUrl: string, token: string, bucket: string) {
  const res = await fetch(`${baseUrl}/v1/users/admin/buckets/${bucket}/export?format=ndjson`, {
    headers: { authorization: `Bearer ${token}` },
  })
  assert.equal(res.status, 200, await res.clone().text())
  const text = await res.text()
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { ts: number; val: { i: number } })
}

/** The bucket holds readings 0..n-1 exactly once, in order, each at its own ts. */
async function assertExactlyOnce(baseUrl: string, token: string, n: number, bucket = 'sensor-1') {
  const points = await exportPoints(baseUrl, token, bucket)
  assert.equal(points.length, n, `points stored: ${points.length}, expected ${n}`)
  for (let i = 0; i < n; i++) {
    const p = points[i] as { ts: number; val: { i: number } }
    if (p.val.i !== i || p.ts !== 1_700_000_000_000 + Math.floor(i / 4)) {
      assert.fail(`point ${i} is ${JSON.stringify(p)}`)
    }
  }
}

test('relay outage: 20,000 records buffered while the relay is down arrive exactly once, in order', async (t) => {
  const port = await freePort()
  const first = await startTestRelay(t, { port })
  const credential = await createAgentDevice(first, 'gw')
  const agent = await agentIn(t, await stateDir(t), `ws://127.0.0.1:${port}`, credential)
  await agent.connected()
  const down = once(agent.link, 'disconnected')
  await first.relay.close()
  await down

  const n = 20_000
  await appendReadings(agent, n)
  assert.equal(agent.buffer.stats().depth, n)

  const second = await startTestRelay(t, { port }, first.dataDir)
  await drained(agent)
  await assertExactlyOnce(second.relay.url, second.token, n)
  const s = agent.buffer.stats()
  assert.deepEqual([s.forwarded, s.dropped, s.poisoned], [n, 0, 0])
  assert.deepEqual(second.relay.data.counters, {
    batches: n / 500,
    stored: n,
    duplicates: 0,
    rejected: 0,
    refused: 0,
  })

  // The LAN device was provisioned under the agent's owner, with a bucket of its id, and was seen.
  const device = await second.api<{ type: string; connection: { active: boolean } }>(
    'GET',
    '/v1/users/admin/devices/sensor-1',
  )
  assert.equal(device.body.type, 'integration')
  assert.equal(device.body.connection.active, true)
  const bucket = await second.api<{ enabled: boolean; config: unknown }>(
    'GET',
    '/v1/users/admin/buckets/sensor-1',
  )
  assert.deepEqual(bucket.body.config, { source: 'agent', device: 'sensor-1' })
  const stats = await second.api<{ total: { messages: number } }>(
    'GET',
    '/v3/users/admin/devices/sensor-1/stats',
  )
  assert.equal(stats.body.total.messages, n)

  // DESCRIBE carries the buffer's figures.
  const link = second.relay.hub.get('admin', 'gw')
  const description = (await link?.session.describe()) as { buffer: { depth: number; forwarded: number } }
  assert.deepEqual([description.buffer.depth, description.buffer.forwarded], [0, n])
})

test('agent restart mid-forward: the same state dir resumes; nothing lost, nothing twice', async (t) => {
  const relay = await startTestRelay(t)
  const credential = await createAgentDevice(relay, 'gw')
  const dir = await stateDir(t)
  const n = 8000
  const firstAgent = await agentIn(t, dir, relay.relay.iotmpUrl, credential)
  await firstAgent.connected()
  // Stop at the first acknowledgement: more batches are in flight, and most records are not sent yet.
  const stopped = new Promise<void>((resolve) =>
    firstAgent.buffer.once('forwarded', () => resolve(firstAgent.stop())),
  )
  // One append: the buffer closes at the first acknowledgement, so no append may still be under way then.
  await firstAgent.buffer.append(readings(n))
  await stopped
  const left = firstAgent.buffer.stats()
  assert.ok(left.forwarded > 0 && left.depth > 0, `stopped mid-forward: ${JSON.stringify(left)}`)

  const secondAgent = await agentIn(t, dir, relay.relay.iotmpUrl, credential)
  assert.equal(secondAgent.buffer.epoch, left.epoch)
  await drained(secondAgent)
  await assertExactlyOnce(relay.relay.url, relay.token, n)
  assert.equal(secondAgent.buffer.stats().forwarded, n)
  const { stored, duplicates } = relay.relay.data.counters
  assert.equal(stored, n, 'every record went to the bucket once; redelivered ones were ignored')
  assert.equal(stored + duplicates >= n, true)
})

/** Wraps the device sink for source `mqtt` with `after`, which runs once the points are durably written. */
function afterWrite(relay: TestRelay, after: (call: number) => void) {
  const deviceSink = relay.relay.data.sinkFor('mqtt')
  let calls = 0
  relay.relay.data.register('mqtt', async (agent, records) => {
    const result = await deviceSink(agent, records)
    after(++calls)
    return result
  })
}

test('relay crash after the point write, before the stored seq is recorded: the redelivery overwrites', async (t) => {
  const relay = await startTestRelay(t)
  const credential = await createAgentDevice(relay, 'gw')
  // The first two batches are written, then "the relay dies": no mark, no OK (the agent gets ERROR and retries).
  afterWrite(relay, (call) => {
    if (call <= 2) throw new Error('simulated crash between the point write and the mark')
  })
  const agent = await agentIn(t, await stateDir(t), relay.relay.iotmpUrl, credential)
  const n = 3000
  await appendReadings(agent, n)
  await drained(agent)
  await assertExactlyOnce(relay.relay.url, relay.token, n)
  assert.ok(agent.forwarder.stats().batchesFailed >= 2)
  assert.equal(relay.relay.data.counters.refused >= 2, true)
})

test('relay link lost after the mark, before the OK: the redelivered records are ignored as duplicates', async (t) => {
  const relay = await startTestRelay(t)
  const credential = await createAgentDevice(relay, 'gw')
  afterWrite(relay, (call) => {
    if (call === 1) relay.relay.hub.get('admin', 'gw')?.session.close('simulated crash before the OK')
  })
  const agent = await agentIn(t, await stateDir(t), relay.relay.iotmpUrl, credential)
  await agent.connected()
  const n = 3000
  await appendReadings(agent, n)
  await drained(agent)
  await assertExactlyOnce(relay.relay.url, relay.token, n)
  const { stored, duplicates } = relay.relay.data.counters
  assert.equal(stored, n)
  assert.ok(duplicates >= 500, `the stored but unacknowledged batch came again: ${duplicates} duplicates`)
})

/** Runs `tether relay` as a child process; resolves once it logged that it is ready. */
async function relayProcess(t: TestContext, port: number, dataDir: string): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      '--no-node-snapshot',
      CLI,
      'relay',
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--data-dir',
      dataDir,
    ],
    { env: { ...process.env, TETHER_ADMIN_PASSWORD: ADMIN_PASSWORD }, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  t.after(() => child.kill('SIGKILL'))
  child.stderr?.resume()
  // The listener stays: the pipe must keep draining, a full one would block the relay's logging.
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  await new Promise<void>((resolve, reject) => {
    lines.on('line', (line) => {
      if (line.includes('relay ready')) resolve()
    })
    child.once('exit', (code) => reject(new Error(`tether relay exited with ${code} before it was ready`)))
  })
  return child
}

/** A token and the `gw` agent device on a relay reached over HTTP. */
async function provision(url: string) {
  const login = await fetch(`${url}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ grant_type: 'password', username: 'admin', password: ADMIN_PASSWORD }),
  })
  const { access_token: token } = (await login.json()) as { access_token: string }
  const created = await fetch(`${url}/v1/users/admin/devices`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ device: 'gw', type: 'agent' }),
  })
  const { credential } = (await created.json()) as { credential: string }
  return { token, credential }
}

test('relay process SIGKILLed mid-forward and restarted on its data dir: every record stored once', async (t) => {
  const port = await freePort()
  const dataDir = await stateDir(t)
  const url = `http://127.0.0.1:${port}`
  const first = await relayProcess(t, port, dataDir)
  const { token, credential } = await provision(url)
  const agent = await agentIn(t, await stateDir(t), `ws://127.0.0.1:${port}`, credential)
  await agent.connected()

  const n = 20_000
  const exited = once(first, 'exit')
  const killed = new Promise<void>((resolve) => {
    const onForwarded = (s: { forwarded: number }) => {
      if (s.forwarded < 2000) return
      agent.buffer.off('forwarded', onForwarded)
      first.kill('SIGKILL')
      resolve()
    }
    agent.buffer.on('forwarded', onForwarded)
  })
  await appendReadings(agent, n)
  await killed
  await exited
  assert.ok(agent.buffer.stats().depth > 0, 'killed mid-forward')

  await relayProcess(t, port, dataDir)
  await drained(agent)
  await assertExactlyOnce(url, token, n)
  assert.equal(agent.buffer.stats().forwarded, n)
})

test('malformed $data batches get ERROR; invalid records are acknowledged and counted; the relay keeps serving', async (t) => {
  const relay = await startTestRelay(t)
  const credential = await createAgentDevice(relay, 'raw')
  const ws = new WebSocket(relay.relay.iotmpUrl, IOTMP_SUBPROTOCOL, { perMessageDeflate: false })
  await once(ws, 'open')
  const session = new Session(new WsChannel(ws, 'none'), { role: 'agent', logger: pino({ level: 'silent' }) })
  t.after(() => session.close())
  await session.connect('admin', 'raw', credential, 5, 'test')

  const record = (seq: number, extra = {}) => ({
    seq,
    ts: 5,
    source: 'mqtt',
    device: 'd1',
    payload: { seq },
    ...extra,
  })
  const refusals: Array<[unknown, Record<string, unknown> | undefined, number, RegExp]> = [
    ['not records', { epoch: 'e1' }, WireErrorCode.BAD_ENCODING, /payload must be an array/],
    [[], { epoch: 'e1' }, WireErrorCode.BAD_ENCODING, /1 to 10000 records/],
    [[record(1)], undefined, WireErrorCode.BAD_ENCODING, /params\/epoch/],
    [[record(1)], { epoch: 'bad epoch!' }, WireErrorCode.BAD_ENCODING, /params\/epoch/],
    [[record(1)], { epoch: 'e1', after: 'x' }, WireErrorCode.BAD_ENCODING, /params\/after/],
    [[record(0)], { epoch: 'e1' }, WireErrorCode.BAD_ENCODING, /seq must be a positive integer/],
    [[record(2), record(1)], { epoch: 'e1' }, WireErrorCode.BAD_ENCODING, /does not follow/],
    [[record(1), 'x'], { epoch: 'e1' }, WireErrorCode.BAD_ENCODING, /payload\/1 must be a map/],
    [
      Array.from({ length: 10_001 }, (_, i) => ({ seq: i + 1 })),
      { epoch: 'e1' },
      WireErrorCode.BAD_ENCODING,
      /1 to 10000 records/,
    ],
    [[record(101)], { epoch: 'e1', after: 100 }, WireErrorCode.PROTOCOL_VIOLATION, /resend from the oldest/],
  ]
  for (const [payload, params, code, message] of refusals) {
    const err = await session.run('$data', payload, params).then(
      () => assert.fail(`accepted ${JSON.stringify(params)}`),
      (e: unknown) => e,
    )
    assert.ok(err instanceof RemoteError, String(err))
    assert.equal(err.wireCode, code, err.message)
    assert.match(err.message, message)
  }
  await assert.rejects(session.run('$nope', []), { wireCode: WireErrorCode.UNKNOWN_RESOURCE })
  assert.equal(relay.relay.data.counters.refused, refusals.length)

  // Record-level faults do not refuse the batch: those records are acknowledged and counted as rejected.
  const disabled = await relay.api('POST', '/v1/users/admin/devices', {
    device: 'off',
    type: 'integration',
    enabled: false,
  })
  assert.equal(disabled.status, 201)
  const batch = [
    record(1, { ts: 'yesterday' }),
    record(2, { source: 'no spaces allowed' }),
    record(3, { payload: undefined }),
    record(4),
    record(5, { device: 'off' }),
    record(6, { device: 'd1/with:odd chars', payload: Buffer.from('not json') }),
    record(7, { device: undefined, payload: Buffer.from('21.5') }),
  ]
  assert.deepEqual(await session.run('$data', batch, { epoch: 'e1' }), { ack: 7 })
  assert.deepEqual(relay.relay.data.counters, {
    batches: 1,
    stored: 3,
    duplicates: 0,
    rejected: 4,
    refused: 10,
  })
  // A redelivery of the same batch is acknowledged again and ignored.
  assert.deepEqual(await session.run('$data', batch, { epoch: 'e1' }), { ack: 7 })
  assert.equal(relay.relay.data.counters.duplicates, 7)
  // A new epoch (the agent's state dir was wiped) starts its seqs afresh.
  assert.deepEqual(await session.run('$data', [record(1)], { epoch: 'e2' }), { ack: 1 })

  // Same ts, other epoch: a point of its own, not an overwrite.
  const d1 = await relay.api<Array<{ val: unknown }>>('GET', '/v1/users/admin/buckets/d1/data?sort=asc')
  assert.deepEqual(
    d1.body.map((p) => p.val),
    [{ seq: 4 }, { seq: 1 }],
  )
  const odd = await relay.api<Array<{ val: unknown }>>(
    'GET',
    '/v1/users/admin/buckets/d1_with_odd_chars/data',
  )
  assert.deepEqual(odd.body[0]?.val, { raw: Buffer.from('not json').toString('base64') })
  const own = await relay.api<Array<{ val: unknown }>>('GET', '/v1/users/admin/buckets/raw/data')
  assert.deepEqual(own.body[0]?.val, { value: 21.5 })
  assert.equal((await relay.api('GET', '/v1/users/admin/buckets/off')).status, 404)

  assert.equal(session.isOpen, true, 'the link survived every bad batch')
  assert.equal((await relay.api('GET', '/healthz')).status, 200)
})

/**
 * A relay that cannot take record `refuse`: answers ERROR BAD_ENCODING for any batch holding it, and checks
 * `after` like the real relay. Returns what it stored and the size of every batch it saw.
 */
async function refusingRelay(t: TestContext, refuse: number) {
  const server = http.createServer()
  const wss = new WebSocketServer({ server, path: '/iotmp', handleProtocols: () => IOTMP_SUBPROTOCOL })
  const stored: number[] = []
  const batchSizes: number[] = []
  wss.on('connection', (ws) => {
    const session = new Session(new WsChannel(ws, 'server'), {
      role: 'relay',
      logger: pino({ level: 'silent' }),
      authenticate: async () => ({ ka: 5, maxFrame: MAX_FRAME_BYTES, window: DEFAULT_WINDOW_BYTES }),
      onRun: async (_resource, payload, params) => {
        const records = payload as Array<{ seq: number }>
        batchSizes.push(records.length)
        const mark = stored.at(-1) ?? 0
        const fail = (wireCode: number, message: string) => Object.assign(new Error(message), { wireCode })
        if (params?.after !== undefined && (params.after as number) > mark) {
          throw fail(WireErrorCode.PROTOCOL_VIOLATION, 'out of sequence')
        }
        if (records.some((r) => r.seq === refuse))
          throw fail(WireErrorCode.BAD_ENCODING, 'cannot read record')
        for (const r of records) if (r.seq > mark) stored.push(r.seq)
        return { ack: (records.at(-1) as { seq: number }).seq }
      },
    })
    session.on('close', () => {})
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => {
    for (const client of wss.clients) client.terminate()
    server.close()
  })
  return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, stored, batchSizes }
}

test('a record the relay refuses for good is narrowed down and dropped as poisoned; the rest flow in order', async (t) => {
  const relay = await refusingRelay(t, 7)
  const agent = await agentIn(t, await stateDir(t), relay.url, 'any-credential')
  await agent.buffer.append(readings(40))
  await drained(agent)
  assert.deepEqual(
    relay.stored,
    Array.from({ length: 40 }, (_, i) => i + 1).filter((seq) => seq !== 7),
  )
  const s = agent.buffer.stats()
  assert.deepEqual([s.poisoned, s.forwarded, s.depth], [1, 39, 0])
  assert.ok(relay.batchSizes.includes(1), `batches were halved down to one record: ${relay.batchSizes}`)
})

test('a record larger than the relay frame cap is dropped as poisoned, not resent forever', async (t) => {
  const relay = await startTestRelay(t, { maxFrameBytes: 64 * 1024 })
  const credential = await createAgentDevice(relay, 'gw')
  const agent = await agentIn(t, await stateDir(t), relay.relay.iotmpUrl, credential)
  await agent.connected()
  const records = readings(12)
  ;(records[5] as RecordInput).payload = { i: 5, blob: 'x'.repeat(100 * 1024) }
  await agent.buffer.append(records)
  await drained(agent)
  const points = await exportPoints(relay.relay.url, relay.token, 'sensor-1')
  assert.deepEqual(
    points.map((p) => p.val.i),
    [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11],
  )
  assert.equal(agent.buffer.stats().poisoned, 1)
})
