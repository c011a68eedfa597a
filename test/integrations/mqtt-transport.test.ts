/**
 * MqttTransport against a real Mosquitto broker: uplinks published with MQTT.js and mosquitto_pub, downlinks
 * read with MQTT.js and mosquitto_sub, acknowledgement after the uplink, reconnection, login and TLS.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { connectAsync, type IPublishPacket, type MqttClient } from 'mqtt'
import type { MqttSettings } from '../../integrations/schemas.ts'
import { MqttTransport, type MqttTransportOptions } from '../../integrations/transports/index.ts'
import { deferred, type FakeContext, fakeContext, text } from './fake-context.ts'
import { type Broker, requireMosquitto, run, startBroker, TLS_FIXTURES, type Tools } from './mosquitto.ts'

const TIMEOUT = { timeout: 30_000 }

async function transport(
  t: TestContext,
  settings: MqttSettings,
  opts: Partial<MqttTransportOptions> = {},
  ctx: FakeContext = fakeContext(),
) {
  const tr = new MqttTransport(settings, ctx, { integrationId: 'it1', reconnectPeriodMs: 100, ...opts })
  t.after(() => tr.stop())
  await tr.start()
  return { ctx, tr }
}

/** An MQTT.js client of the broker, closed after the test. */
async function client(t: TestContext, broker: Broker): Promise<MqttClient> {
  const c = await connectAsync(broker.url, { reconnectPeriod: 0 })
  t.after(() => c.endAsync(true))
  return c
}

function nextMessage(c: MqttClient): Promise<{ topic: string; payload: string; packet: IPublishPacket }> {
  return new Promise((resolve) => {
    c.once('message', (topic, payload, packet) => resolve({ topic, payload: payload.toString(), packet }))
  })
}

const pub = (tools: Tools, broker: Broker, topic: string, message: string) =>
  run(tools.mosquitto_pub, [
    '-h',
    '127.0.0.1',
    '-p',
    String(broker.port),
    '-q',
    '1',
    '-t',
    topic,
    '-m',
    message,
  ])

test('uplinks and downlinks through a Mosquitto broker', TIMEOUT, async (t) => {
  const tools = requireMosquitto(t)
  if (!tools) return
  const broker = await startBroker(t, tools)
  const settings: MqttSettings = {
    url: broker.url,
    topicFilters: [{ filter: 'dev/+/up', qos: 1 }, { filter: 'raw/#' }],
    downlinkTopic: 'down/{{device}}/cmd',
  }
  const { ctx, tr } = await transport(t, settings, { integrationName: 'plant' })
  assert.match(tr.clientId, /^tether-it1-[0-9a-f]{8}$/)
  const status = tr.status()
  assert.deepEqual([status.state, status.url, status.connections], ['running', broker.url, 1])

  await t.test('messages published with MQTT.js and mosquitto_pub become uplinks', async () => {
    const c = await client(t, broker)
    await c.publishAsync('dev/d1/up', 'd1:from mqtt.js', { qos: 1 })
    const first = await ctx.next()
    assert.equal(text(first), 'd1:from mqtt.js')
    assert.deepEqual(first.metadata, { topic: 'dev/d1/up', integrationName: 'plant' })
    assert.ok(first.payload instanceof Uint8Array)
    await pub(tools, broker, 'raw/a/b', 'd2:from mosquitto_pub')
    const second = await ctx.next()
    assert.deepEqual([text(second), second.metadata.topic], ['d2:from mosquitto_pub', 'raw/a/b'])
    assert.equal(tr.status().received, 2)
  })

  await t.test('downlinks go to downlinkTopic or metadata.topic, with qos and retain', async () => {
    const c = await client(t, broker)
    await c.subscribeAsync('down/#', { qos: 2 })
    let message = nextMessage(c)
    await tr.deliver('d1', { contentType: 'JSON', data: { led: 'on' }, metadata: {} })
    let got = await message
    assert.deepEqual([got.topic, got.payload, got.packet.qos], ['down/d1/cmd', '{"led":"on"}', 1])

    message = nextMessage(c)
    await tr.deliver('d1', { contentType: 'TEXT', data: 'x', metadata: { topic: 'down/custom', qos: '0' } })
    got = await message
    assert.deepEqual([got.topic, got.payload, got.packet.qos], ['down/custom', 'x', 0])

    // retain: mosquitto_sub, subscribing only now, still gets it.
    const bytes = { contentType: 'BINARY' as const, data: 'AQI=' } // base64 of 01 02
    await tr.deliver('d3', { ...bytes, metadata: { topic: 'kept/d3', retain: true, qos: 2 } })
    const args = ['-h', '127.0.0.1', '-p', String(broker.port), '-t', 'kept/#', '-C', '1', '-v', '-W', '5']
    assert.equal(await run(tools.mosquitto_sub, args), 'kept/d3 \x01\x02\n')
    assert.equal(tr.status().sent, 3)

    await assert.rejects(tr.deliver('d1', { ...bytes, metadata: { topic: 'a/+' } }), /not a topic/)
  })

  await t.test('without downlinkTopic a downlink needs metadata.topic', async () => {
    const { tr: bare } = await transport(t, { url: broker.url, topicFilters: [{ filter: 'none' }] })
    await assert.rejects(
      bare.deliver('d1', { contentType: 'TEXT', data: 'x', metadata: {} }),
      /no downlink topic/,
    )
  })

  await t.test('a failed uplink is logged and its QoS 1 message still acknowledged', async () => {
    const puback = new RegExp(`Received PUBACK from ${tr.clientId}`, 'g')
    const acked = broker.output().match(puback)?.length ?? 0
    ctx.fail = new Error('converter threw')
    await pub(tools, broker, 'dev/d1/up', 'poison')
    await ctx.next()
    assert.equal((await ctx.logged(/uplink failed/)).err, 'converter threw')
    ctx.fail = undefined
    await broker.logged(puback, acked + 1)
  })
})

test(
  'QoS 1: acknowledged after the uplink; a kept session redelivers what a crash left',
  TIMEOUT,
  async (t) => {
    const tools = requireMosquitto(t)
    if (!tools) return
    const broker = await startBroker(t, tools)
    const settings: MqttSettings = {
      url: broker.url,
      clientId: 'tether-keep',
      topicFilters: [{ filter: 'k/#', qos: 1 }],
    }
    const first = await transport(t, settings)
    const gate = deferred()
    first.ctx.hold = () => gate.promise
    const puback = /Received PUBACK from tether-keep/g
    await pub(tools, broker, 'k/1', 'k:held')
    assert.equal(text(await first.ctx.next()), 'k:held')
    assert.equal(broker.output().match(puback), null, 'no PUBACK while the uplink runs')
    gate.resolve()
    await broker.logged(puback, 1)

    // A second message whose uplink never finishes, then the relay "crashes" (stops without acknowledging).
    first.ctx.hold = () => new Promise(() => {})
    await pub(tools, broker, 'k/2', 'k:lost?')
    assert.equal(text(await first.ctx.next()), 'k:lost?')
    await first.tr.stop()
    await pub(tools, broker, 'k/3', 'k:while away') // queued in the kept session

    const second = await transport(t, settings)
    assert.deepEqual(await second.ctx.texts(2), ['k:lost?', 'k:while away'])
    await broker.logged(puback, 3)
  },
)

test('reconnects and resubscribes after the broker restarts on the same port', TIMEOUT, async (t) => {
  const tools = requireMosquitto(t)
  if (!tools) return
  const broker = await startBroker(t, tools)
  const { ctx, tr } = await transport(t, { url: broker.url, topicFilters: [{ filter: 'r/#', qos: 1 }] })
  await broker.stop()
  await ctx.logged(/connection lost/)
  assert.deepEqual([tr.status().state, tr.status().connections], ['error', 0])
  assert.match(tr.status().error ?? '', /reconnecting/)

  await broker.start()
  // Retained: whenever the transport subscribes again, it receives this; no race with its reconnect.
  await run(tools.mosquitto_pub, [
    '-p',
    String(broker.port),
    '-h',
    '127.0.0.1',
    '-r',
    '-t',
    'r/x',
    '-m',
    'back',
  ])
  assert.equal(text(await ctx.next()), 'back')
  await pub(tools, broker, 'r/y', 'live')
  assert.equal(text(await ctx.next()), 'live')
  assert.deepEqual([tr.status().state, tr.status().error, tr.status().connections], ['running', undefined, 1])
})

test('login: right credentials connect; wrong ones show as an error status', TIMEOUT, async (t) => {
  const tools = requireMosquitto(t)
  if (!tools) return
  const auth = { username: 'relay', password: 'broker-secret' }
  const broker = await startBroker(t, tools, { auth })
  const filters = [{ filter: 'a/#' }]
  const good = await transport(t, { url: broker.url, ...auth, topicFilters: filters })
  assert.equal(good.tr.status().state, 'running')

  const withSecretInUrl = broker.url.replace('mqtt://', 'mqtt://relay:wrong-secret@')
  const bad = await transport(t, { url: withSecretInUrl, topicFilters: filters })
  const status = bad.tr.status()
  assert.equal(status.state, 'error')
  assert.match(status.error ?? '', /Not authorized|Bad User Name or Password/i)
  assert.equal(status.connections, 0)
  assert.doesNotMatch(JSON.stringify(status), /wrong-secret/)
  assert.doesNotMatch(JSON.stringify(bad.ctx.logs), /wrong-secret/)
})

test('TLS: the broker certificate is checked against `ca`', TIMEOUT, async (t) => {
  const tools = requireMosquitto(t)
  if (!tools) return
  const broker = await startBroker(t, tools, { tls: true })
  const ca = await readFile(join(TLS_FIXTURES, 'localhost.crt'), 'utf8')
  const filters = [{ filter: 't/#' }]
  const trusted = await transport(t, { url: broker.url, ca, topicFilters: filters })
  assert.equal(trusted.tr.status().state, 'running')
  const device = await connectAsync(broker.url, { ca, reconnectPeriod: 0 })
  t.after(() => device.endAsync(true))
  await device.publishAsync('t/1', 'over tls')
  assert.equal(text(await trusted.ctx.next()), 'over tls')

  const untrusted = await transport(t, { url: broker.url, topicFilters: filters })
  assert.equal(untrusted.tr.status().state, 'error')
  assert.match(untrusted.tr.status().error ?? '', /self[- ]signed/i)
  const unchecked = await transport(t, { url: broker.url, rejectUnauthorized: false, topicFilters: filters })
  assert.equal(unchecked.tr.status().state, 'running')
})
