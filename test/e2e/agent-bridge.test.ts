/**
 * The site-broker bridge against a real Mosquitto (Debian `mosquitto`, published to with `mosquitto_pub`): the
 * agent subscribes to `site/+/telemetry` and uplinks each message to device `{1}`. Messages published while
 * the relay is stopped arrive in the bucket after it restarts, exactly once and in order; the bridge reconnects
 * by itself after the site broker restarts; messages published while the agent is stopped are kept by the site
 * broker (persistent session of a fixed clientId) and delivered when it is back.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { type Agent, startAgent } from '../../agent/agent.ts'
import { type Broker, requireMosquitto, startBroker, type Tools } from '../integrations/mosquitto.ts'
import { appended, bucketPoints, drained, until } from './bucket-points.ts'
import { createAgentDevice, freePort, memoryLogger, startTestRelay, type TestRelay } from './harness.ts'

const TIMEOUT = { timeout: 55_000 }

/** Publishes `{"i":from}`… `{"i":from+n-1}` to `topic` (QoS 1 unless told), in order, with one `mosquitto_pub -l`. */
async function publish(tools: Tools, broker: Broker, topic: string, from: number, n: number, qos = 1) {
  const child = spawn(
    tools.mosquitto_pub,
    ['-h', '127.0.0.1', '-p', String(broker.port), '-q', String(qos), '-t', topic, '-l'],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  )
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => {
    stderr += c
  })
  const lines = Array.from({ length: n }, (_, k) => JSON.stringify({ i: from + k }))
  child.stdin.end(`${lines.join('\n')}\n`)
  const [code] = (await once(child, 'close')) as [number]
  assert.equal(code, 0, `mosquitto_pub failed: ${stderr}`)
}

async function bridgeAgent(
  t: TestContext,
  stateDir: string,
  relay: string,
  credential: string,
  broker: Broker,
  extra: Record<string, unknown> = {},
) {
  const agent = await startAgent(
    {
      relay,
      user: 'admin',
      device: 'gw',
      credential,
      stateDir,
      keepAliveSec: 5,
      topics: [{ filter: 'site/+/telemetry', device: '{1}' }],
      bridge: {
        url: broker.url,
        clientId: 'tether-bridge-test',
        subscriptions: [
          // QoS 2: pump-1 publishes at 1 (delivered at 1), pump-2 at 2 (PUBREC held until durable).
          { filter: 'site/+/telemetry', qos: 2 },
          { filter: 'site/+/status', qos: 0 },
        ],
      },
      ...extra,
    },
    memoryLogger('info').logger,
  )
  t.after(() => agent.stop())
  assert.ok(agent.bridge)
  return agent
}

/** Resolves once the bridge is connected and subscribed. */
function bridged(agent: Agent): Promise<void> {
  const bridge = agent.bridge
  assert.ok(bridge)
  return until(bridge, 'connected', () => bridge.stats().connected, 'the bridge to connect')
}

/** Bucket `device` holds `{i: 0…n-1}` exactly once each, in publish order. */
async function assertInOrder(relay: TestRelay, device: string, n: number) {
  const got = (await bucketPoints(relay, device)).map((p) => p.val.i)
  assert.equal(got.length, n, `${device}: ${got.length} points, expected ${n}`)
  assert.deepEqual(
    got,
    Array.from({ length: n }, (_, i) => i),
  )
}

test(
  'bridge: relay stopped while the site broker delivers; all arrive once, in order; the bridge survives a broker restart',
  TIMEOUT,
  async (t) => {
    const tools = requireMosquitto(t)
    if (!tools) return
    const broker = await startBroker(t, tools)
    const port = await freePort()
    const first = await startTestRelay(t, { port })
    const credential = await createAgentDevice(first, 'gw')
    const dir = await mkdtemp(join(tmpdir(), 'tether-agent-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const relayUrl = `ws://127.0.0.1:${port}`
    let agent = await bridgeAgent(t, dir, relayUrl, credential, broker)
    await Promise.all([agent.connected(), bridged(agent)])

    // Relay down; two devices publish through the site broker, plus a topic no mapping takes.
    const down = once(agent.link, 'disconnected')
    await first.relay.close()
    await down
    const n = 300
    // First, so the bridge has them before the telemetry (one connection: the broker keeps the order).
    await publish(tools, broker, 'site/pump-1/status', 0, 5)
    await Promise.all([
      publish(tools, broker, 'site/pump-1/telemetry', 0, n),
      publish(tools, broker, 'site/pump-2/telemetry', 0, n, 2),
    ])
    await appended(agent, 2 * n)
    const bridge = agent.bridge
    assert.ok(bridge)
    assert.deepEqual([bridge.stats().unmapped, agent.buffer.stats().depth], [5, 2 * n])

    const second = await startTestRelay(t, { port }, first.dataDir)
    await drained(agent)
    await assertInOrder(second, 'pump-1', n)
    await assertInOrder(second, 'pump-2', n)
    const s = bridge.stats()
    assert.deepEqual([s.appended, s.invalid], [2 * n, 0])

    // The site broker restarts (its sessions are in memory: gone); the bridge reconnects and subscribes again.
    const lost = once(bridge, 'disconnected')
    await broker.stop()
    await lost
    const back = once(bridge, 'connected')
    await broker.start()
    await back
    await publish(tools, broker, 'site/pump-1/telemetry', n, 50)
    await appended(agent, 2 * n + 50)
    await drained(agent)
    await assertInOrder(second, 'pump-1', n + 50)

    // Agent stopped: the site broker keeps what is published meanwhile for the bridge's session.
    await agent.stop()
    await publish(tools, broker, 'site/pump-2/telemetry', n, 40, 2)
    agent = await bridgeAgent(t, dir, relayUrl, credential, broker)
    await appended(agent, 2 * n + 90)
    await drained(agent)
    await assertInOrder(second, 'pump-2', n + 40)
    assert.equal(second.relay.data.counters.duplicates, 0)
  },
)

test(
  'bridge, buffer full under reject-new: the acknowledgement is held, the site broker keeps the rest; all arrive once',
  TIMEOUT,
  async (t) => {
    const tools = requireMosquitto(t)
    if (!tools) return
    const broker = await startBroker(t, tools)
    const port = await freePort()
    const first = await startTestRelay(t, { port })
    const credential = await createAgentDevice(first, 'gw')
    const dir = await mkdtemp(join(tmpdir(), 'tether-agent-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const agent = await bridgeAgent(t, dir, `ws://127.0.0.1:${port}`, credential, broker, {
      buffer: { policy: 'reject-new', maxRecords: 5 },
    })
    const bridge = agent.bridge
    assert.ok(bridge)
    await Promise.all([agent.connected(), bridged(agent)])
    const down = once(agent.link, 'disconnected')
    await first.relay.close()
    await down

    const held = once(bridge, 'held')
    await publish(tools, broker, 'site/meter/telemetry', 0, 12)
    await held
    // Five stored; the sixth waits unacknowledged, the others wait in the site broker.
    assert.deepEqual([agent.buffer.stats().depth, bridge.stats().appended, bridge.stats().held], [5, 5, 1])

    const second = await startTestRelay(t, { port }, first.dataDir)
    await appended(agent, 12)
    await drained(agent)
    await assertInOrder(second, 'meter', 12)
    assert.equal(bridge.stats().held, 0)
  },
)
