/**
 * Local HTTP ingest on a real agent, forwarding to a real relay: `POST /data/{device}` answers 200 `{seq}` only
 * once the record is durably buffered, refuses bad tokens (401), oversized bodies (413), bad device ids and bad
 * JSON (400), and a full `reject-new` buffer (507), and what it accepted reaches the device's bucket.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { type Agent, startAgent } from '../../agent/agent.ts'
import { bucketPoints, drained } from './bucket-points.ts'
import { createAgentDevice, freePort, memoryLogger, startTestRelay } from './harness.ts'

const TOKEN = 'ingest-token-for-tests'

async function ingestAgent(t: TestContext, relay: string, credential: string, extra = {}): Promise<Agent> {
  const stateDir = await mkdtemp(join(tmpdir(), 'tether-agent-'))
  const { logger } = memoryLogger('info')
  const agent = await startAgent(
    {
      relay,
      user: 'admin',
      device: 'gw',
      credential,
      stateDir,
      keepAliveSec: 5,
      httpIngest: { host: '127.0.0.1', port: 0, token: TOKEN, maxBodyBytes: 1024 },
      ...extra,
    },
    logger,
  )
  t.after(async () => {
    await agent.stop()
    await rm(stateDir, { recursive: true, force: true })
  })
  assert.ok(agent.ingest, 'httpIngest configured: the agent exposes it')
  return agent
}

function post(
  agent: Agent,
  path: string,
  body: BodyInit | undefined,
  headers: Record<string, string> = {},
  token: string | null = TOKEN,
) {
  return fetch(`http://127.0.0.1:${agent.ingest?.port}${path}`, {
    method: 'POST',
    headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...headers },
    body,
    ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
  } as RequestInit)
}

const json = { 'content-type': 'application/json' }

test('POST /data/{device}: 200 {seq} once durable; the points reach the bucket; 401, 413 and 400 store nothing', async (t) => {
  const relay = await startTestRelay(t)
  const credential = await createAgentDevice(relay, 'gw')
  const agent = await ingestAgent(t, relay.relay.iotmpUrl, credential)
  await agent.connected()

  const health = await fetch(`http://127.0.0.1:${agent.ingest?.port}/healthz`)
  assert.deepEqual([health.status, await health.json()], [200, { status: 'ok' }])

  // Accepted: the answer comes after the durable write, so the record is counted when it arrives.
  const ok = await post(agent, '/data/sensor-1', JSON.stringify({ t: 21 }), json)
  assert.equal(ok.status, 200)
  const { seq } = (await ok.json()) as { seq: number }
  assert.equal(seq, 1)
  assert.ok(agent.buffer.stats().lastSeq >= 1 && agent.buffer.stats().appended >= 1)
  const text = await post(agent, '/data/sensor-1', '21.5', { 'content-type': 'text/plain' })
  assert.deepEqual([text.status, await text.json()], [200, { seq: 2 }])
  const bytes = await post(agent, '/data/sensor-1?ts=1700000000000', Buffer.from([0xff, 0x00, 0x01]), {
    'content-type': 'application/octet-stream',
  })
  assert.deepEqual([bytes.status, await bytes.json()], [200, { seq: 3 }])

  // Refused: nothing is buffered for any of these.
  const refusals: Array<[Promise<Response>, number, string]> = [
    [post(agent, '/data/sensor-1', '{}', json, null), 401, 'TETHER_ERR_INGEST_UNAUTHORIZED'],
    [post(agent, '/data/sensor-1', '{}', json, 'wrong-token-123'), 401, 'TETHER_ERR_INGEST_UNAUTHORIZED'],
    [post(agent, '/data/sensor-1', 'x'.repeat(2000)), 413, 'TETHER_ERR_INGEST_TOO_LARGE'],
    [post(agent, '/data/sensor-1', chunked(3, 700)), 413, 'TETHER_ERR_INGEST_TOO_LARGE'],
    [post(agent, '/data/bad%20id', '{}', json), 400, 'TETHER_ERR_INGEST_BAD_DEVICE'],
    [post(agent, '/data/a/b', '{}', json), 400, 'TETHER_ERR_INGEST_BAD_DEVICE'],
    [post(agent, `/data/${'d'.repeat(65)}`, '{}', json), 400, 'TETHER_ERR_INGEST_BAD_DEVICE'],
    [post(agent, '/data/sensor-1', '{"t":', json), 400, 'TETHER_ERR_INGEST_BAD_JSON'],
    [post(agent, '/data/sensor-1?ts=yesterday', '{}', json), 400, 'TETHER_ERR_INGEST_BAD_TS'],
    [post(agent, '/elsewhere', '{}', json), 404, 'TETHER_ERR_INGEST_NOT_FOUND'],
  ]
  for (const [pending, status, code] of refusals) {
    const res = await pending
    const body = (await res.json()) as { error: { code: string } }
    assert.deepEqual([res.status, body.error.code], [status, code])
    if (status === 401) assert.equal(res.headers.get('www-authenticate'), 'Bearer')
  }
  const get = await fetch(`http://127.0.0.1:${agent.ingest?.port}/data/sensor-1`)
  assert.equal(get.status, 405)

  await drained(agent)
  assert.equal(agent.buffer.stats().appended, 3, 'only the three accepted requests were buffered')
  const points = await bucketPoints(relay, 'sensor-1')
  assert.deepEqual(
    points.map((p) => p.val),
    [{ raw: Buffer.from([0xff, 0x00, 0x01]).toString('base64') }, { t: 21 }, { value: 21.5 }],
  )
  assert.equal(points[0]?.ts, 1_700_000_000_000, '?ts= sets the point time')
  const stats = agent.ingest?.stats()
  assert.deepEqual([stats?.accepted, stats?.responses['401'], stats?.responses['413']], [3, 2, 2])
})

/** A request body of `n` chunks of `size` bytes, sent chunked (no Content-Length). */
function chunked(n: number, size: number): ReadableStream<Uint8Array> {
  let sent = 0
  return new ReadableStream({
    pull(controller) {
      if (sent++ === n) controller.close()
      else controller.enqueue(new Uint8Array(size).fill(0x61))
    },
  })
}

test('reject-new, buffer full: 507 and the device keeps its data; delivered + refused = sent', async (t) => {
  const port = await freePort()
  const first = await startTestRelay(t, { port })
  const credential = await createAgentDevice(first, 'gw')
  const agent = await ingestAgent(t, `ws://127.0.0.1:${port}`, credential, {
    buffer: { policy: 'reject-new', maxRecords: 5 },
  })
  await agent.connected()
  const down = once(agent.link, 'disconnected')
  await first.relay.close()
  await down

  const sent = 12
  const answers = await Promise.all(
    Array.from({ length: sent }, (_, i) => post(agent, '/data/meter', JSON.stringify({ i }), json)),
  )
  const statuses = answers.map((r) => r.status)
  const accepted = statuses.filter((s) => s === 200).length
  const refused = statuses.filter((s) => s === 507).length
  assert.equal(accepted + refused, sent, `only 200 and 507: ${statuses}`)
  assert.equal(accepted, 5, 'the buffer holds 5 records')
  const full = answers.find((r) => r.status === 507) as Response
  assert.equal(((await full.json()) as { error: { code: string } }).error.code, 'TETHER_ERR_BUFFER_FULL')
  assert.equal(agent.buffer.stats().rejected, refused)

  const second = await startTestRelay(t, { port }, first.dataDir)
  await drained(agent)
  const points = await bucketPoints(second, 'meter')
  assert.equal(points.length + refused, sent, 'delivered + refused at the device = sent')
  // Room again: the device's retry is accepted.
  const retry = await post(agent, '/data/meter', JSON.stringify({ i: 'retry' }), json)
  assert.equal(retry.status, 200)
})
