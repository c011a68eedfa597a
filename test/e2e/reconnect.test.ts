/** The agent link survives relay restarts and detects black-holed links by keep-alive. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import net, { type AddressInfo } from 'node:net'
import { test } from 'node:test'
import {
  connect,
  createAgentDevice,
  echoServer,
  freePort,
  readAll,
  startTestAgent,
  startTestRelay,
  type TestRelay,
} from './harness.ts'

async function echoThrough(port: number, text: string): Promise<string> {
  const socket = await connect(port)
  const reply = readAll(socket)
  socket.end(text)
  return (await reply).data.toString()
}

async function createFixedProxy(relay: TestRelay, sourcePort: number, targetPort: number) {
  const res = await relay.api('POST', '/v1/server/proxies', {
    id: 'echo',
    protocol: 'tcp-iotmp',
    enabled: true,
    source: { port: sourcePort, address: '127.0.0.1' },
    target: {
      type: 'device',
      user: 'admin',
      device: 'gw',
      address: '127.0.0.1',
      port: targetPort,
      tls: false,
    },
  })
  assert.equal(res.status, 201)
}

test('relay restart: the agent reconnects and the persisted proxy works again without operator action', async (t) => {
  const target = await echoServer(t)
  const relayPort = await freePort()
  const proxyPort = await freePort()
  const first = await startTestRelay(t, { port: relayPort }, undefined)
  const dataDir = first.dataDir
  const credential = await createAgentDevice(first, 'gw')
  const { agent } = await startTestAgent(t, {
    relay: first.relay.iotmpUrl,
    device: 'gw',
    credential,
    allow: [`127.0.0.1:${target}`],
  })
  await agent.connected()
  await createFixedProxy(first, proxyPort, target)
  assert.equal(await echoThrough(proxyPort, 'before restart'), 'before restart')

  const disconnected = once(agent.link, 'disconnected')
  // Keep the data dir: close the relay by hand instead of through the harness teardown.
  await first.relay.close()
  await disconnected
  const reconnected = once(agent.link, 'connected')
  const second = await startTestRelay(t, { port: relayPort }, dataDir)
  await reconnected
  assert.equal(second.relay.hub.size, 1)
  assert.equal(await echoThrough(proxyPort, 'after restart'), 'after restart')
})

/** A TCP forwarder between agent and relay whose live connections can be black-holed (kept open, silent). */
async function blackHoleProxy(t: Parameters<typeof startTestRelay>[0], upstreamPort: number) {
  const pairs = new Set<[net.Socket, net.Socket]>()
  const server = net.createServer((client) => {
    const upstream = net.connect(upstreamPort, '127.0.0.1')
    const pair: [net.Socket, net.Socket] = [client, upstream]
    pairs.add(pair)
    client.pipe(upstream).pipe(client)
    for (const s of pair) {
      s.on('error', () => {})
      s.on('close', () => {
        pairs.delete(pair)
        client.destroy()
        upstream.destroy()
      })
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    for (const pair of pairs) for (const s of pair) s.destroy()
    server.close()
  })
  return {
    port: (server.address() as AddressInfo).port,
    /** Stops forwarding on every current connection without closing it, as a dead NAT or cable would. */
    blackHole() {
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream)
        upstream.unpipe(client)
        client.pause()
        upstream.pause()
      }
      pairs.clear()
    },
  }
}

test('black-holed link: both sides detect it within 1.15 × keep-alive and the agent reconnects', async (t) => {
  const keepAliveSec = 1
  const relay = await startTestRelay(t)
  const hole = await blackHoleProxy(t, relay.relay.port)
  const credential = await createAgentDevice(relay, 'gw')
  const { agent } = await startTestAgent(t, {
    relay: `ws://127.0.0.1:${hole.port}`,
    device: 'gw',
    credential,
    keepAliveSec,
    allow: [],
  })
  await agent.connected()

  const relaySaw = once(relay.relay.hub, 'disconnected')
  const agentSaw = once(agent.link, 'disconnected')
  const start = performance.now()
  hole.blackHole()
  const [relayAt, agentAt] = await Promise.all([
    relaySaw.then(() => performance.now() - start),
    agentSaw.then(() => performance.now() - start),
  ])
  // The last inbound message arrived at most ka before the cut, so detection is due by ka * 1.15 after it;
  // 100 ms covers timer granularity on a loaded machine.
  const limitMs = keepAliveSec * 1150 + 100
  assert.ok(relayAt <= limitMs, `relay detected after ${relayAt.toFixed(0)} ms (limit ${limitMs})`)
  assert.ok(agentAt <= limitMs, `agent detected after ${agentAt.toFixed(0)} ms (limit ${limitMs})`)
  // Neither side gave up early either: the link had been healthy, so detection takes more than ka * 0.15.
  assert.ok(relayAt >= 150 && agentAt >= 150)

  // New connections through the forwarder work again: the agent reconnects by itself.
  await once(agent.link, 'connected')
  assert.equal(relay.relay.hub.size, 1)
})
