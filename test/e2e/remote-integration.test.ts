/**
 * A remote integration: the relay deploys a TCP integration to an agent (`runOn`); the agent converts on the LAN
 * and buffers, so frames sent while the relay is stopped arrive after it restarts, once each. Downlinks travel
 * relay → agent → the device's connection.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import net from 'node:net'
import { test } from 'node:test'
import type { Agent } from '../../agent/agent.ts'
import { converter, waitForPoints } from '../relay/integrations/helpers.ts'
import { createAgentDevice, freePort, startTestAgent, startTestRelay } from './harness.ts'

const CSV_DECODER = `var p = String.fromCharCode.apply(String, payload).split(',');
return { deviceName: p[0], deviceType: 'meter', telemetry: { n: parseInt(p[1], 10) } };`
const ENCODER = `return { contentType: 'TEXT', data: 'ACK ' + msg.n, metadata: {} };`

/** Resolves once `agent` runs integration `id` (it is applied over the link, asynchronously). */
async function running(agent: Agent, id: string) {
  for (let i = 0; i < 500; i++) {
    if (agent.integrations.status().some((s) => s.id === id && s.state === 'running')) return
    await new Promise((r) => setTimeout(r, 10))
  }
  assert.fail(`integration ${id} never ran on the agent`)
}

test('remote tcp integration on an agent: nothing lost across a relay stop and restart; downlinks reach the device', {
  timeout: 60_000,
}, async (t) => {
  const port = await freePort()
  const first = await startTestRelay(t, { port })
  const credential = await createAgentDevice(first, 'gw')
  const { agent } = await startTestAgent(t, { relay: `ws://127.0.0.1:${port}`, device: 'gw', credential })
  await agent.connected()

  await converter(first, 'csv', 'thingsboard', 'uplink', CSV_DECODER)
  await converter(first, 'ack', 'thingsboard', 'downlink', ENCODER)
  const lanPort = await freePort()
  const created = await first.api<{ status: { state: string; agent_online?: boolean } }>(
    'POST',
    '/v1/users/admin/integrations',
    {
      id: 'meters',
      type: 'tcp',
      uplinkConverter: 'csv',
      downlinkConverter: 'ack',
      runOn: { device: 'gw' },
      tcp: { port: lanPort, address: '127.0.0.1', framing: { type: 'delimiter', delimiter: '0a' } },
    },
  )
  assert.equal(created.status, 201, JSON.stringify(created.body))
  assert.equal(created.body.status.state, 'remote')
  assert.equal(created.body.status.agent_online, true)
  await running(agent, 'meters')

  const meter = net.connect(lanPort, '127.0.0.1')
  await once(meter, 'connect')
  t.after(() => meter.destroy())
  for (let i = 1; i <= 50; i++) meter.write(`M1,${i}\n`)
  await waitForPoints(first, 'M1', 50)

  // The relay goes away; the meter keeps sending; the agent converts and buffers.
  const down = once(agent.link, 'disconnected')
  await first.relay.close()
  await down
  const appended = once(agent.buffer, 'appended')
  for (let i = 51; i <= 300; i++) meter.write(`M1,${i}\n`)
  await appended
  for (let i = 0; i < 500 && agent.integrations.status()[0]?.uplinks !== 300; i++) {
    await new Promise((r) => setTimeout(r, 10))
  }
  assert.equal(agent.integrations.status()[0]?.uplinks, 300)
  assert.ok(agent.buffer.stats().depth >= 250, `buffered ${agent.buffer.stats().depth}`)

  const second = await startTestRelay(t, { port }, first.dataDir)
  const stored = await waitForPoints(second, 'M1', 300)
  const values = stored.map((p) => (p.val as { n: number }).n).sort((a, b) => a - b)
  assert.deepEqual(
    values,
    Array.from({ length: 300 }, (_, i) => i + 1),
    'every frame once',
  )

  // Downlink: encoded on the relay, delivered by the agent to the meter's connection.
  await agent.connected()
  const reply = once(meter, 'data')
  const res = await second.api<{ status: string }>('POST', '/v1/users/admin/devices/M1/downlink', { n: 7 })
  assert.equal(res.status, 200, JSON.stringify(res.body))
  assert.equal(res.body.status, 'delivered')
  assert.equal(String((await reply)[0]), 'ACK 7\n')

  // Deleting the integration stops it on the agent.
  assert.equal((await second.api('DELETE', '/v1/users/admin/integrations/meters')).status, 204)
  for (let i = 0; i < 500 && agent.integrations.status().length > 0; i++)
    await new Promise((r) => setTimeout(r, 10))
  assert.deepEqual(agent.integrations.status(), [])
})

test('remote integrations are refused for devices that are not agents and for http', async (t) => {
  const relay = await startTestRelay(t)
  await converter(relay, 'csv', 'thingsboard', 'uplink', CSV_DECODER)
  await relay.api('POST', '/v1/users/admin/devices', { device: 'web', type: 'http' })
  const notAgent = await relay.api<{ error: { message: string } }>('POST', '/v1/users/admin/integrations', {
    id: 'x',
    type: 'udp',
    uplinkConverter: 'csv',
    runOn: { device: 'web' },
    udp: { port: 0 },
  })
  assert.equal(notAgent.status, 400)
  assert.match(notAgent.body.error.message, /not an agent device/)
  const http = await relay.api('POST', '/v1/users/admin/integrations', {
    id: 'y',
    type: 'http',
    uplinkConverter: 'csv',
    runOn: { device: 'web' },
  })
  assert.equal(http.status, 400)
})
