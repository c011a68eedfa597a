/**
 * The agent's embedded MQTT broker, end to end: real MQTT clients (`mosquitto_pub` from Debian mosquitto-clients,
 * and MQTT.js) publish to a real agent (in process, or a `tether agent` child process that gets SIGKILLed), and a
 * real relay stores what it uplinks. A QoS 1 PUBACK means the message is in the agent's buffer: it reaches the
 * device's bucket exactly once, in order, across relay outages and agent crashes; a full buffer either drops the
 * oldest (counted) or refuses new messages (no PUBACK: the publisher keeps them). Bad input is refused without
 * harm, and the relay publishes property changes and RUN `$mqtt/publish` to LAN subscribers.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { type TestContext, test } from 'node:test'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { type Agent, startAgent } from '../../agent/agent.ts'
import type { MqttBroker } from '../../agent/broker/mqtt-broker.ts'
import { RemoteError } from '../../protocol/errors.ts'
import { WireErrorCode } from '../../protocol/messages.ts'
import {
  createAgentDevice,
  drained,
  freePort,
  memoryLogger,
  startTestRelay,
  type TestRelay,
} from './harness.ts'
import { FIXTURES, requireTools } from './real-clients/tools.ts'

const CLI = new URL('../../cli/tether.mjs', import.meta.url).pathname
const TOPICS = [{ filter: 'devices/+/data', device: '{1}' }]

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tether-broker-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** The config of agent `gw` of admin with its broker on a free port and TOPICS mapped. */
async function agentConfig(
  t: TestContext,
  relay: string,
  credential: string,
  extra: Record<string, unknown> = {},
) {
  return {
    relay,
    user: 'admin',
    device: 'gw',
    credential,
    stateDir: await tempDir(t),
    keepAliveSec: 5,
    broker: { port: 0 },
    topics: TOPICS,
    ...extra,
  }
}

/** Starts an in-process agent; stopped after the test. */
async function startBrokerAgent(t: TestContext, config: Record<string, unknown>) {
  const { logger, lines } = memoryLogger('info')
  const agent = await startAgent(config, logger)
  t.after(() => agent.stop())
  return { agent, broker: agent.broker as MqttBroker, logs: lines }
}

/** A relay with agent device `gw`, closed again at once when `down`: it comes back later on its port and dir. */
async function relayFor(t: TestContext, down = false) {
  const port = await freePort()
  const relay = await startTestRelay(t, { port })
  const credential = await createAgentDevice(relay, 'gw')
  if (down) await relay.relay.close()
  return { relay, port, credential, url: `ws://127.0.0.1:${port}` }
}

/** An MQTT.js client that does not reconnect unless told to; ended after the test. */
async function mqttClient(t: TestContext, url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts })
  // A broker that cuts a client off mid-write (oversize, SIGKILL) resets the connection: expected here.
  client.on('error', () => {})
  t.after(() => client.endAsync(true).catch(() => {}))
  return client
}

/** Resolves when the client closes. */
const closed = (client: MqttClient) => new Promise<void>((resolve) => client.once('close', () => resolve()))

/** Resolves with the payload and packet of the next message the client receives on `topic`. */
function messageOn(client: MqttClient, topic: string): Promise<{ payload: Buffer; retain: boolean }> {
  return new Promise((resolve) => {
    const onMessage = (received: string, payload: Buffer, packet: { retain: boolean }) => {
      if (received !== topic) return
      client.off('message', onMessage)
      resolve({ payload, retain: packet.retain })
    }
    client.on('message', onMessage)
  })
}

interface PublishOutcome {
  /** Messages whose PUBACK arrived, in arrival order. */
  acked: number[]
  /** Messages handed to the client that were never acknowledged (the connection closed first). */
  unacked: number[]
}

/**
 * Publishes `{"i":k}` for k = 0…n-1 on `topic`, at most `window` unacknowledged at a time, and resolves once each
 * message handed to the client was acknowledged or failed. A client that does not reconnect stops at the first
 * close: it is ended (its pending messages fail) and no further message is handed to it.
 */
function publishMany(
  client: MqttClient,
  topic: string,
  n: number,
  opts: { window?: number; onAck?: (acked: number) => void } = {},
): Promise<PublishOutcome> {
  const window = opts.window ?? 1000
  const outcome: PublishOutcome = { acked: [], unacked: [] }
  return new Promise((resolve) => {
    let next = 0
    let inflight = 0
    let stopped = false
    const settle = () => {
      if (inflight > 0 || (next < n && !stopped)) return
      client.off('close', onClose)
      resolve(outcome)
    }
    const onClose = () => {
      if (client.options.reconnectPeriod !== 0) return
      stopped = true
      client.end(true)
    }
    const pump = () => {
      while (!stopped && inflight < window && next < n) {
        const i = next++
        inflight++
        client.publish(topic, JSON.stringify({ i }), { qos: 1 }, (err) => {
          inflight--
          if (err) outcome.unacked.push(i)
          else {
            outcome.acked.push(i)
            opts.onAck?.(outcome.acked.length)
          }
          pump()
          settle()
        })
      }
    }
    client.on('close', onClose)
    pump()
  })
}

/** Runs mosquitto_pub with `lines` on stdin (for `-l`); resolves with its exit code and stderr. */
function mosquittoPub(bin: string, args: string[], lines?: string[]) {
  const proc = spawn(bin, args, { stdio: ['pipe', 'ignore', 'pipe'] })
  let stderr = ''
  proc.stderr.on('data', (c: Buffer) => {
    stderr += c
  })
  proc.stdin.on('error', () => {})
  proc.stdin.end(lines ? `${lines.join('\n')}\n` : '')
  return new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    proc.once('error', reject)
    proc.once('close', (code) => resolve({ code, stderr }))
  })
}

/** Resolves once the buffer has given out seq `seq` (on its `appended` event). */
function appendedUpTo(agent: Agent, seq: number): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      if (agent.buffer.stats().lastSeq < seq) return
      agent.buffer.off('appended', check)
      resolve()
    }
    agent.buffer.on('appended', check)
    check()
  })
}

/** The `i` of every point of a bucket, oldest first, through the export API. */
async function storedIndexes(relay: TestRelay, bucket: string): Promise<number[]> {
  const res = await fetch(`${relay.relay.url}/v1/users/admin/buckets/${bucket}/export?format=ndjson`, {
    headers: { authorization: `Bearer ${relay.token}` },
  })
  assert.equal(res.status, 200, await res.clone().text())
  return (await res.text())
    .split('\n')
    .filter(Boolean)
    .map((line) => (JSON.parse(line) as { val: { i: number } }).val.i)
}

/** `indexes` is exactly `expected`, in order (reported compactly when not). */
function assertSequence(indexes: number[], expected: number[], what: string) {
  assert.equal(
    indexes.length,
    expected.length,
    `${what}: ${indexes.length} points, expected ${expected.length}`,
  )
  const at = indexes.findIndex((v, k) => v !== expected[k])
  assert.equal(at, -1, `${what}: point ${at} is ${indexes[at]}, expected ${expected[at]}`)
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => from + k)

test('relay outage: QoS 1 messages from mosquitto_pub and MQTT.js reach their buckets exactly once, in order', async (t) => {
  const tools = requireTools(t, { mosquitto_pub: 'mosquitto-clients' })
  if (!tools) return
  const first = await relayFor(t, true)
  const { agent, broker } = await startBrokerAgent(t, await agentConfig(t, first.url, first.credential))
  const n = 50_000
  const lines = range(0, n).map((i) => JSON.stringify({ i }))
  const mosquitto = ['-h', '127.0.0.1', '-p', String(broker.port), '-q', '1', '-l', '-M', '1000']
  const js = await mqttClient(t, `mqtt://127.0.0.1:${broker.port}`)
  const [pub, fromJs] = await Promise.all([
    mosquittoPub(tools.mosquitto_pub, [...mosquitto, '-t', 'devices/mosq/data', '-i', 'mosq-outage'], lines),
    publishMany(js, 'devices/mqttjs/data', n),
  ])
  assert.equal(pub.code, 0, pub.stderr)
  assert.deepEqual([fromJs.acked.length, fromJs.unacked.length], [n, 0])
  assert.equal(agent.buffer.stats().depth, 2 * n, 'every acknowledged message is buffered')
  const s = broker.stats()
  assert.deepEqual([s.messagesIn, s.appended, s.refusedFull], [2 * n, 2 * n, 0])

  const second = await startTestRelay(t, { port: first.port }, first.relay.dataDir)
  await drained(agent)
  assertSequence(await storedIndexes(second, 'mosq'), range(0, n), 'mosquitto_pub')
  assertSequence(await storedIndexes(second, 'mqttjs'), range(0, n), 'MQTT.js')
  const device = await second.api<{ type: string; via: { agent: string } }>(
    'GET',
    '/v1/users/admin/devices/mosq',
  )
  assert.deepEqual([device.body.type, device.body.via], ['integration', { agent: 'gw' }])
})

/** Runs `tether agent --config file` as a child process; resolves with it and its broker's bound port. */
async function agentProcess(t: TestContext, config: Record<string, unknown>) {
  const file = join(await tempDir(t), 'agent.json')
  await writeFile(file, JSON.stringify({ ...config, logLevel: 'info' }))
  const child: ChildProcess = spawn(
    process.execPath,
    ['--no-node-snapshot', CLI, 'agent', '--config', file],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  t.after(() => child.kill('SIGKILL'))
  child.stderr?.resume()
  // The listener stays: a full stdout pipe would block the agent's logging.
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const port = await new Promise<number>((resolve, reject) => {
    lines.on('line', (line) => {
      const entry = JSON.parse(line) as { msg?: string; port?: number }
      if (entry.msg === 'MQTT broker listening') resolve(entry.port as number)
    })
    child.once('exit', (code) =>
      reject(new Error(`tether agent exited with ${code} before its broker listened`)),
    )
  })
  return { child, port }
}

test('agent SIGKILLed while MQTT.js publishes at full speed: every acknowledged message is stored, none twice', async (t) => {
  const relay = await startTestRelay(t)
  const credential = await createAgentDevice(relay, 'gw')
  const config = await agentConfig(t, relay.relay.iotmpUrl, credential)
  const { child, port } = await agentProcess(t, config)
  const client = await mqttClient(t, `mqtt://127.0.0.1:${port}`)
  const exited = once(child, 'exit')
  const killAfter = 8000
  const { acked, unacked } = await publishMany(client, 'devices/crash/data', 1_000_000, {
    window: 2000,
    onAck: (count) => {
      if (count === killAfter) child.kill('SIGKILL')
    },
  })
  const [, signal] = await exited
  assert.equal(signal, 'SIGKILL')
  assert.ok(acked.length >= killAfter && unacked.length > 0, `killed mid-stream: ${acked.length} acked`)

  // The same state dir, in process this time.
  const { agent } = await startBrokerAgent(t, config)
  await drained(agent)
  const stored = await storedIndexes(relay, 'crash')
  assert.equal(new Set(stored).size, stored.length, 'no message stored twice')
  const missing = acked.filter((i) => !stored.includes(i))
  assert.deepEqual(missing, [], 'every acknowledged message is stored')
  // Stored: the acknowledged ones plus perhaps some made durable whose PUBACK the kill cut off; in order.
  assertSequence(stored, range(0, stored.length), 'crash')
  assert.ok(stored.length <= acked.length + unacked.length)
})

test('full buffer, drop-oldest: delivered + dropped = sent', async (t) => {
  const first = await relayFor(t, true)
  const maxRecords = 1000
  const config = await agentConfig(t, first.url, first.credential, {
    buffer: { maxRecords, policy: 'drop-oldest' },
  })
  const { agent, broker } = await startBrokerAgent(t, config)
  const sent = 3000
  const client = await mqttClient(t, `mqtt://127.0.0.1:${broker.port}`)
  const { acked } = await publishMany(client, 'devices/full/data', sent, { window: 200 })
  assert.equal(acked.length, sent, 'drop-oldest acknowledges every message')
  const { dropped, depth } = agent.buffer.stats()
  assert.deepEqual([dropped, depth], [sent - maxRecords, maxRecords])

  const second = await startTestRelay(t, { port: first.port }, first.relay.dataDir)
  await drained(agent)
  const delivered = await storedIndexes(second, 'full')
  assert.equal(delivered.length + agent.buffer.stats().dropped, sent)
  assertSequence(delivered, range(sent - maxRecords, sent), 'the newest are kept')
})

test('full buffer, reject-new: delivered + refused at the publisher (no PUBACK) = sent', async (t) => {
  const first = await relayFor(t, true)
  const maxRecords = 1000
  const config = await agentConfig(t, first.url, first.credential, {
    buffer: { maxRecords, policy: 'reject-new' },
  })
  const { agent, broker, logs } = await startBrokerAgent(t, config)
  const client = await mqttClient(t, `mqtt://127.0.0.1:${broker.port}`)
  const { acked, unacked } = await publishMany(client, 'devices/full/data', 3000, { window: 200 })
  const sent = acked.length + unacked.length
  assert.equal(acked.length, maxRecords, 'exactly what fits is acknowledged')
  assert.ok(unacked.length > 0, 'the publisher was refused')
  assert.ok(broker.stats().refusedFull > 0 && agent.buffer.stats().rejected > 0)
  assert.ok(logs.some((l) => /PUBLISH not acknowledged, connection closed: buffer full/.test(String(l.msg))))

  const second = await startTestRelay(t, { port: first.port }, first.relay.dataDir)
  await drained(agent)
  const delivered = await storedIndexes(second, 'full')
  assert.equal(delivered.length + unacked.length, sent)
  assertSequence(delivered, acked, 'exactly the acknowledged messages')
})

test('reject-new: a refused MQTT.js client keeps its messages and delivers every one once there is room', async (t) => {
  const first = await relayFor(t, true)
  const config = await agentConfig(t, first.url, first.credential, {
    buffer: { maxRecords: 500, policy: 'reject-new' },
  })
  const { agent, broker } = await startBrokerAgent(t, config)
  const client = await mqttClient(t, `mqtt://127.0.0.1:${broker.port}`, { reconnectPeriod: 100 })
  const n = 2000
  // The relay comes back after the first refusal; until the buffer drains the client is refused again and again.
  let second: Promise<TestRelay> | undefined
  client.on('close', () => {
    second ??= startTestRelay(t, { port: first.port }, first.relay.dataDir)
  })
  const { acked } = await publishMany(client, 'devices/retry/data', n, { window: 300 })
  assert.equal(acked.length, n)
  assert.ok(broker.stats().refusedFull > 0, 'refused at least once')
  await drained(agent)
  assertSequence(await storedIndexes(await (second as Promise<TestRelay>), 'retry'), range(0, n), 'retry')
})

/** An MQTT UTF-8 string: two length bytes, then the bytes. */
const mqttString = (s: string) => {
  const bytes = Buffer.from(s)
  return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 0xff]), bytes])
}

/** A control packet: its first byte, the remaining length (MQTT variable byte integer), the body. */
function mqttPacket(first: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts)
  const length: number[] = []
  let n = body.length
  do {
    length.push((n % 128) | (n >= 128 ? 0x80 : 0))
    n = Math.floor(n / 128)
  } while (n > 0)
  return Buffer.concat([Buffer.from([first, ...length]), body])
}

/** MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s, with a username and password. */
const connectPacket = (clientId: string, username: string, password: string) =>
  mqttPacket(
    0x10,
    mqttString('MQTT'),
    Buffer.from([4, 0xc2, 0, 60]),
    mqttString(clientId),
    mqttString(username),
    mqttString(password),
  )

/** QoS 1 PUBLISH with message id 1, built by hand: MQTT.js and mosquitto_pub refuse to send a bad topic. */
const publishPacket = (topic: string, payload: string) =>
  mqttPacket(0x32, mqttString(topic), Buffer.from([0, 1]), Buffer.from(payload))

/** Sends `packets` on a raw connection; resolves with every byte received until the broker closed it. */
async function rawSession(port: number, packets: Buffer[]): Promise<Buffer> {
  const socket = net.connect({ host: '127.0.0.1', port })
  await once(socket, 'connect')
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  socket.on('error', () => {})
  for (const p of packets) socket.write(p)
  await once(socket, 'close')
  return Buffer.concat(chunks)
}

test('bad input: wrong credentials, oversized payloads and invalid topics are refused; TLS works', async (t) => {
  const relay = await startTestRelay(t)
  const credential = await createAgentDevice(relay, 'gw')
  const users = [{ username: 'lan', password: 'lan-password' }]
  const config = await agentConfig(t, relay.relay.iotmpUrl, credential, {
    broker: {
      port: 0,
      users,
      maxPayloadBytes: 1024,
      tls: { cert: join(FIXTURES, 'localhost.crt'), key: join(FIXTURES, 'localhost.key'), port: 0 },
    },
  })
  const { agent, broker, logs } = await startBrokerAgent(t, config)
  await agent.connected()
  const url = `mqtt://127.0.0.1:${broker.port}`
  const login = { username: 'lan', password: 'lan-password' }

  // Unauthenticated, unknown user, wrong password: CONNACK 4, bad user name or password.
  for (const opts of [{}, { username: 'nobody', password: 'x' }, { username: 'lan', password: 'wrong' }]) {
    await assert.rejects(
      mqtt.connectAsync(url, { reconnectPeriod: 0, ...opts }),
      (err: { code?: number }) => {
        assert.equal(err.code, 4, String(err))
        return true
      },
    )
  }
  assert.equal(broker.stats().authFailures, 3)

  // A payload above maxPayloadBytes: the client is disconnected without PUBACK, nothing is uplinked.
  const client = await mqttClient(t, url, login)
  await client.publishAsync('devices/ok/data', JSON.stringify({ i: 0 }), { qos: 1 })
  const cut = closed(client)
  client.publish('devices/ok/data', Buffer.alloc(1025, 'x'), { qos: 1 }, () => {})
  await cut
  // Far above it: cut at the fixed header, before the payload is read.
  const big = await mqttClient(t, url, login)
  const bigCut = closed(big)
  big.publish('devices/ok/data', Buffer.alloc(2 * 1024 * 1024, 'y'), { qos: 1 }, () => {})
  await bigCut
  assert.equal(broker.stats().oversize, 2)
  assert.equal(
    logs.filter((l) => /exceeds maxPayloadBytes 1024: client disconnected/.test(String(l.msg))).length,
    2,
  )

  // Wildcards or nothing as a PUBLISH topic: aedes closes the connection without PUBACK [MQTT-3.3.2-2].
  for (const topic of ['devices/+/data', 'devices/#', '']) {
    const received = await rawSession(broker.port, [
      connectPacket(`raw-${topic.length}`, 'lan', 'lan-password'),
      publishPacket(topic, '{"i":99}'),
    ])
    assert.deepEqual(
      [...received],
      [0x20, 2, 0, 0],
      `only CONNACK (accepted), no PUBACK, for ${JSON.stringify(topic)}`,
    )
  }
  // Without credentials a raw client gets CONNACK 4 and its PUBLISH goes nowhere.
  const refused = await rawSession(broker.port, [
    connectPacket('raw-nobody', 'lan', 'nope'),
    publishPacket('devices/ok/data', '{"i":98}'),
  ])
  assert.deepEqual([...refused], [0x20, 2, 0, 4])
  assert.ok(broker.stats().clientErrors >= 3, JSON.stringify(broker.stats()))

  // TLS with the fixture certificate, and a good message over it.
  assert.equal(typeof broker.tlsPort, 'number')
  const secure = await mqttClient(t, `mqtts://localhost:${broker.tlsPort}`, {
    ...login,
    ca: readFileSync(join(FIXTURES, 'localhost.crt')),
  })
  await secure.publishAsync('devices/ok/data', JSON.stringify({ i: 1 }), { qos: 1 })
  await drained(agent)
  assertSequence(await storedIndexes(relay, 'ok'), [0, 1], 'only the good messages')
  assert.equal(broker.stats().appended, 2)
})

test('downlink: a property change reaches a LAN subscriber; RUN $mqtt/publish publishes (retained too)', async (t) => {
  const relay = await startTestRelay(t)
  const credential = await createAgentDevice(relay, 'gw')
  const config = await agentConfig(t, relay.relay.iotmpUrl, credential, {
    downlinks: [
      { property: 'setpoint', topic: 'devices/{device}/set/{property}', qos: 1 },
      { property: '*', topic: 'all/{device}/{property}', qos: 0 },
    ],
  })
  const { agent, broker } = await startBrokerAgent(t, config)
  await agent.connected()
  const url = `mqtt://127.0.0.1:${broker.port}`

  // The thermostat's first message provisions it on the relay, through this agent.
  const thermostat = await mqttClient(t, url)
  await thermostat.publishAsync('devices/thermo/data', JSON.stringify({ i: 0 }), { qos: 1 })
  await drained(agent)
  const device = await relay.api<{ via?: { agent: string } }>('GET', '/v1/users/admin/devices/thermo')
  assert.deepEqual(device.body.via, { agent: 'gw' })

  const messages: Array<{ topic: string; payload: string }> = []
  const arrived = (count: number) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (messages.length < count) return
        thermostat.off('message', check)
        resolve()
      }
      thermostat.on('message', check)
      check()
    })
  thermostat.on('message', (topic, payload) => messages.push({ topic, payload: payload.toString() }))
  await thermostat.subscribeAsync(['devices/thermo/set/#', 'all/#'], { qos: 1 })

  const set = await relay.api('POST', '/v3/users/admin/devices/thermo/properties', {
    property: 'setpoint',
    value: 21.5,
  })
  assert.equal(set.status, 201, JSON.stringify(set.body))
  await arrived(2)
  assert.deepEqual(messages.map((m) => [m.topic, m.payload]).sort(), [
    ['all/thermo/setpoint', '21.5'],
    ['devices/thermo/set/setpoint', '21.5'],
  ])
  // Only the `*` rule applies to another property.
  await relay.api('POST', '/v3/users/admin/devices/thermo/properties', {
    property: 'mode',
    value: { eco: true },
  })
  await arrived(3)
  assert.deepEqual(messages[2], { topic: 'all/thermo/mode', payload: '{"eco":true}' })

  // RUN $mqtt/publish straight from the relay, retained: a later subscriber gets it too.
  const link = relay.relay.hub.get('admin', 'gw')
  assert.ok(link)
  const answer = await link.session.run('$mqtt/publish', Buffer.from('hello'), {
    topic: 'lan/direct',
    qos: 1,
    retain: true,
  })
  assert.deepEqual(answer, { topic: 'lan/direct', qos: 1, retain: true, bytes: 5 })
  const later = await mqttClient(t, url)
  const retained = messageOn(later, 'lan/direct')
  await later.subscribeAsync('lan/direct', { qos: 1 })
  const { payload, retain } = await retained
  assert.deepEqual([payload.toString(), retain], ['hello', true])

  // A bad request is answered ERROR, and the link stays up.
  for (const params of [{ topic: 'lan/+/x' }, { topic: '$SYS/x' }, { topic: 'ok', qos: 3 }, {}]) {
    const err: unknown = await link.session.run('$mqtt/publish', Buffer.from('x'), params).then(
      () => assert.fail(`accepted ${JSON.stringify(params)}`),
      (e: unknown) => e,
    )
    assert.ok(err instanceof RemoteError, String(err))
    assert.equal(err.wireCode, WireErrorCode.BAD_ENCODING, err.message)
  }
  assert.equal(link.session.isOpen, true)
  assert.equal(broker.stats().downlinks, 4)
  // The relay learnt the rules from DESCRIBE; the device view shows the broker's counters live.
  const gw = await relay.api<{ agent: { downlinks: unknown[]; broker: { downlinks: number } } }>(
    'GET',
    '/v1/users/admin/devices/gw',
  )
  assert.equal(gw.body.agent.downlinks.length, 2)
  assert.equal(gw.body.agent.broker.downlinks, 4)
})

test('topic mapping: device and bucket from the topic, unmapped topics stay local, retained and wills as usual', async (t) => {
  const relay = await startTestRelay(t)
  const credential = await createAgentDevice(relay, 'gw')
  const config = await agentConfig(t, relay.relay.iotmpUrl, credential, {
    topics: [...TOPICS, { filter: 'site/+/+/telemetry', device: '{2}', bucket: 'site-{1}' }],
  })
  const { agent, broker } = await startBrokerAgent(t, config)
  await agent.connected()
  const url = `mqtt://127.0.0.1:${broker.port}`
  const watcher = await mqttClient(t, url)
  await watcher.subscribeAsync(['devices/#', 'site/#'], { qos: 1 })
  const seen: string[] = []
  watcher.on('message', (topic) => seen.push(topic))

  const lan = await mqttClient(t, url)
  await lan.publishAsync('site/north/pump7/telemetry', JSON.stringify({ i: 7 }), { qos: 1 })
  await lan.publishAsync('lan/retained', 'kept', { qos: 1, retain: true })
  // QoS 2: PUBREC (and so PUBCOMP) after the durable write, like PUBACK.
  await lan.publishAsync('devices/q2/data', JSON.stringify({ i: 2 }), { qos: 2 })
  // A will on a mapped topic: published to subscribers and uplinked when its client vanishes.
  const dying = await mqttClient(t, url, {
    will: { topic: 'devices/will-dev/data', payload: Buffer.from('{"i":3}'), qos: 1, retain: false },
  })
  const willSeen = messageOn(watcher, 'devices/will-dev/data')
  dying.stream.destroy()
  assert.equal((await willSeen).payload.toString(), '{"i":3}')
  await appendedUpTo(agent, 3)
  await drained(agent)

  assertSequence(await storedIndexes(relay, 'site-north'), [7], 'the mapped bucket')
  assertSequence(await storedIndexes(relay, 'will-dev'), [3], 'the will')
  assertSequence(await storedIndexes(relay, 'q2'), [2], 'QoS 2')
  const pump = await relay.api<{ via?: { agent: string } }>('GET', '/v1/users/admin/devices/pump7')
  assert.deepEqual(pump.body.via, { agent: 'gw' })
  assert.equal((await relay.api('GET', '/v1/users/admin/buckets/pump7')).status, 404, 'no bucket of its own')

  // The retained message on an unmapped topic stayed on the LAN and is given to a later subscriber.
  const later = await mqttClient(t, url)
  const retained = messageOn(later, 'lan/retained')
  await later.subscribeAsync('lan/#', { qos: 1 })
  const { payload, retain } = await retained
  assert.deepEqual([payload.toString(), retain], ['kept', true])
  const s = broker.stats()
  assert.deepEqual([s.messagesIn, s.appended, s.local], [3, 3, 1])
  assert.deepEqual(seen.sort(), ['devices/q2/data', 'devices/will-dev/data', 'site/north/pump7/telemetry'])
})
