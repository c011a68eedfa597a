/**
 * The agent's `/metrics` (agent/metrics/agent-metrics.ts), scraped over HTTP while a real agent buffers through a
 * relay outage and drains after it: the figures move as the buffer, link and HTTP ingest do. The relay's own
 * `/metrics` counts the stored records, and its device view shows the agent's buffer figures.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { startAgent } from '../../agent/agent.ts'
import { drained } from '../e2e/bucket-points.ts'
import { createAgentDevice, freePort, memoryLogger, startTestRelay } from '../e2e/harness.ts'

/** Samples of a Prometheus text exposition: `name{labels}` → value. */
async function scrape(url: string): Promise<Map<string, number>> {
  const res = await fetch(url)
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/)
  const samples = new Map<string, number>()
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    samples.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return samples
}

test('agent /metrics: buffer, link, forwarding and HTTP ingest figures move; relay counts stored records', async (t) => {
  const port = await freePort()
  const first = await startTestRelay(t, { port })
  const credential = await createAgentDevice(first, 'gw')
  const stateDir = await mkdtemp(join(tmpdir(), 'tether-agent-'))
  const agent = await startAgent(
    {
      relay: `ws://127.0.0.1:${port}`,
      user: 'admin',
      device: 'gw',
      credential,
      stateDir,
      httpIngest: { port: 0 },
      metrics: { port: 0 },
    },
    memoryLogger('info').logger,
  )
  t.after(async () => {
    await agent.stop()
    await rm(stateDir, { recursive: true, force: true })
  })
  assert.ok(agent.metrics && agent.ingest)
  const metricsUrl = `http://127.0.0.1:${agent.metrics.port}/metrics`
  await agent.connected()

  let m = await scrape(metricsUrl)
  assert.equal(m.get('tether_agent_link_connected'), 1)
  assert.equal(m.get('tether_agent_buffer_depth_records'), 0)
  assert.equal(m.get('tether_agent_buffer_appended_records_total'), 0)
  assert.ok((m.get('tether_agent_process_resident_memory_bytes') ?? 0) > 0, 'default process metrics')
  assert.equal(m.has('tether_agent_bridge_connected'), false, 'no bridge configured, no bridge metrics')

  // Relay down: records pile up.
  const down = once(agent.link, 'disconnected')
  await first.relay.close()
  await down
  await agent.buffer.append(
    Array.from({ length: 10 }, (_, i) => ({
      source: 'mqtt',
      device: 'sensor-1',
      payload: { i },
      ts: Date.now() - 5000,
    })),
  )
  const posted = await fetch(`http://127.0.0.1:${agent.ingest.port}/data/sensor-1`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ i: 10 }),
  })
  assert.equal(posted.status, 200)

  m = await scrape(metricsUrl)
  assert.equal(m.get('tether_agent_link_connected'), 0)
  assert.equal(m.get('tether_agent_buffer_depth_records'), 11)
  assert.equal(m.get('tether_agent_buffer_appended_records_total'), 11)
  assert.equal(m.get('tether_agent_buffer_forwarded_records_total'), 0)
  assert.ok((m.get('tether_agent_buffer_bytes') ?? 0) > 0)
  assert.ok((m.get('tether_agent_buffer_oldest_record_age_seconds') ?? 0) >= 5, 'oldest record is 5 s old')
  assert.equal(m.get('tether_agent_http_ingest_responses_total{status="200"}'), 1)
  assert.equal(m.get('tether_agent_http_ingest_records_total'), 1)

  // Relay back: the buffer drains.
  const second = await startTestRelay(t, { port }, first.dataDir)
  await drained(agent)
  m = await scrape(metricsUrl)
  assert.equal(m.get('tether_agent_link_connected'), 1)
  assert.equal(m.get('tether_agent_buffer_depth_records'), 0)
  assert.equal(m.get('tether_agent_buffer_bytes'), 0)
  assert.equal(m.get('tether_agent_buffer_oldest_record_age_seconds'), 0)
  assert.equal(m.get('tether_agent_buffer_forwarded_records_total'), 11)
  assert.equal(m.get('tether_agent_buffer_dropped_records_total'), 0)
  assert.ok((m.get('tether_agent_forward_batches_total') ?? 0) >= 1)
  // The rate needs two acknowledgements apart in time: a second round.
  await agent.buffer.append({ source: 'mqtt', device: 'sensor-1', payload: { i: 11 } })
  await drained(agent)
  m = await scrape(metricsUrl)
  assert.equal(m.get('tether_agent_buffer_forwarded_records_total'), 12)
  assert.ok((m.get('tether_agent_forward_rate_records_per_second') ?? 0) > 0)

  // The relay's side: records stored, and the agent's buffer in its device view.
  const relayMetrics = await scrape(`${second.relay.url}/metrics`)
  assert.equal(relayMetrics.get('tether_data_records_total{result="stored"}'), 12)
  assert.equal(relayMetrics.get('tether_data_records_total{result="duplicate"}'), 0)
  assert.ok((relayMetrics.get('tether_data_batches_total{result="ok"}') ?? 0) >= 1)
  const view = await second.api<{ agent?: { buffer?: Record<string, unknown> } }>(
    'GET',
    '/v1/users/admin/devices/gw',
  )
  assert.equal(view.status, 200)
  const buffer = view.body.agent?.buffer
  assert.ok(buffer, JSON.stringify(view.body))
  assert.deepEqual(
    [buffer.depth, buffer.bytes, buffer.forwarded, buffer.dropped, buffer.rejected, buffer.corrupted],
    [0, 0, 12, 0, 0, 0],
  )
  assert.equal(typeof buffer.rate, 'number')
  assert.equal(buffer.policy, 'drop-oldest')
  assert.equal('oldest_age_ms' in buffer, false, 'empty buffer: no oldest record')
})
