/**
 * `mqtt` endpoints publishing to a real Mosquitto broker (Debian `mosquitto`, with password auth) in a sandbox.
 * Without mosquitto the test skips locally and fails in CI (CI=true), naming the package.
 */
import assert from 'node:assert/strict'
import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { connectAsync, type IPublishPacket, type MqttClient } from 'mqtt'
import { freePort, startTestRelay } from '../../e2e/harness.ts'
import { accepts, ok, ready, requireTools, run, type Server, sandbox } from '../../e2e/real-clients/tools.ts'
import { type CallResult, createUser, type LogEntry, nextResult } from './helpers.ts'

const BROKER_USER = 'relay'
const BROKER_PASSWORD = 'relay-broker-password'

/** Resolves once the server's output matches `pattern` at least `count` times (it logs every client event). */
function output(server: Server, pattern: RegExp, count = 1, timeoutMs = 10_000): Promise<void> {
  const global = new RegExp(pattern.source, 'g')
  const enough = () => (server.output().match(global) ?? []).length >= count
  if (enough()) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!enough()) return
      done()
      resolve()
    }
    const timer = setTimeout(() => {
      done()
      reject(new Error(`broker never logged ${pattern} ×${count}:\n${server.output()}`))
    }, timeoutMs)
    const done = () => {
      clearTimeout(timer)
      server.proc.stderr?.off('data', check)
    }
    // The Server's own listener records the chunk first (it was added first), so output() already has it here.
    server.proc.stderr?.on('data', check)
  })
}

/** The next message the subscriber receives. */
function nextMessage(
  client: MqttClient,
): Promise<{ topic: string; payload: string; packet: IPublishPacket }> {
  return new Promise((resolve) => {
    client.once('message', (topic, payload, packet) =>
      resolve({ topic, payload: payload.toString(), packet }),
    )
  })
}

test('mqtt endpoints publish to a real Mosquitto broker', { timeout: 30_000 }, async (t) => {
  const tools = requireTools(t, { mosquitto: 'mosquitto', mosquitto_passwd: 'mosquitto' })
  if (!tools) return
  const box = await sandbox(t, 'endpoints-mqtt')
  const port = await freePort()
  const passwd = join(box.dir, 'passwd')
  ok(
    await run(tools.mosquitto_passwd as string, ['-b', '-c', passwd, BROKER_USER, BROKER_PASSWORD]),
    'passwd',
  )
  const conf = join(box.dir, 'mosquitto.conf')
  await writeFile(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous false',
      `password_file ${passwd}`,
      'persistence false',
      'log_dest stderr',
      'log_type all',
      '',
    ].join('\n'),
  )
  await chmod(box.dir, 0o755) // mosquitto drops root privileges to its own user
  await chmod(conf, 0o644)
  await chmod(passwd, 0o644)
  const broker = box.spawn(tools.mosquitto as string, ['-c', conf])
  await ready(broker, 'mosquitto', () => accepts(port))
  const brokerUrl = `mqtt://127.0.0.1:${port}`

  const subscribe = async (topic: string) => {
    const client = await connectAsync(brokerUrl, { username: BROKER_USER, password: BROKER_PASSWORD })
    t.after(() => client.endAsync(true))
    await client.subscribeAsync(topic, { qos: 1 })
    return client
  }
  const sub = await subscribe('tether/#')

  const relay = await startTestRelay(t)
  relay.relay.endpoints.retry = { attempts: 2, baseDelayMs: 10 }
  const u = await createUser(relay, 'mq')
  const config = {
    url: brokerUrl,
    topic: 'tether/{{device}}/up',
    qos: 1,
    username: BROKER_USER,
    password: BROKER_PASSWORD,
    client_id: 'tether-ep-test',
  }
  const created = await u.api('POST', u.path, { endpoint: 'telemetry', type: 'mqtt', config })
  assert.equal(created.status, 201, JSON.stringify(created.body))
  const connected = /New client connected from \S+ as tether-ep-test /
  const gone = /Client tether-ep-test (disconnected|closed its connection)/

  await t.test('a callback publishes to the device topic, acknowledged at qos 1', async () => {
    const message = nextMessage(sub)
    const result = nextResult(relay, 'telemetry')
    relay.relay.endpoints.enqueue('mq', 'telemetry', { t: 21.5 }, { device: 'sensor-1' })
    const got = await message
    assert.equal(got.topic, 'tether/sensor-1/up')
    assert.equal(got.payload, '{"t":21.5}')
    assert.equal(got.packet.qos, 1)
    const done = await result
    assert.deepEqual([done.ok, done.attempts, done.device], [true, 1, 'sensor-1'])
  })

  await t.test('an API call publishes too, over the same connection', async () => {
    const message = nextMessage(sub)
    const res = await u.api<CallResult>('POST', `${u.path}/telemetry/call`, 'hello')
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.deepEqual([res.body.ok, res.body.attempts], [true, 1])
    const got = await message
    assert.deepEqual([got.topic, got.payload], ['tether//up', '"hello"'])
    assert.equal(
      (broker.output().match(new RegExp(connected.source, 'g')) ?? []).length,
      1,
      'one client, reused',
    )
    const logs = await u.api<LogEntry[]>('GET', `${u.path}/telemetry/logs`)
    assert.deepEqual(
      logs.body.map((e) => [e.ok, e.device]),
      [
        [true, undefined],
        [true, 'sensor-1'],
      ],
    )
  })

  await t.test('an update closes the client; the next call reconnects with the kept password', async () => {
    const { password: _secret, ...withoutPassword } = config
    const put = await u.api('PUT', `${u.path}/telemetry`, {
      type: 'mqtt',
      config: { ...withoutPassword, topic: 'tether/{{device}}/v2', qos: 0, retain: true },
    })
    assert.equal(put.status, 200, JSON.stringify(put.body))
    await output(broker, gone)

    const message = nextMessage(sub)
    const res = await u.api<CallResult>('POST', `${u.path}/telemetry/call`, { v: 2 })
    assert.equal(res.body.ok, true, JSON.stringify(res.body))
    const got = await message
    assert.deepEqual([got.topic, got.payload, got.packet.qos], ['tether//v2', '{"v":2}', 0])
    await output(broker, connected, 2)

    // retain: a subscriber that comes later still gets it, flagged as retained.
    const late = await connectAsync(brokerUrl, { username: BROKER_USER, password: BROKER_PASSWORD })
    t.after(() => late.endAsync(true))
    const retained = nextMessage(late)
    await late.subscribeAsync('tether/+/v2')
    const again = await retained
    assert.deepEqual([again.topic, again.payload, again.packet.retain], ['tether//v2', '{"v":2}', true])
  })

  await t.test('a refused login is a failed call naming the reason', async () => {
    await u.api('POST', u.path, {
      endpoint: 'badauth',
      type: 'mqtt',
      config: { ...config, password: 'wrong', client_id: 'tether-ep-bad' },
    })
    const res = await u.api<CallResult>('POST', `${u.path}/badauth/call`, {})
    assert.equal(res.body.ok, false)
    assert.match(res.body.error ?? '', /Not authorized|Bad User Name or Password/i)
    assert.equal(res.body.attempts, 2)
    assert.equal((await u.api('DELETE', `${u.path}/badauth`)).status, 204)
  })

  await t.test('deleting the endpoint and closing the relay close their clients', async () => {
    assert.equal((await u.api('DELETE', `${u.path}/telemetry`)).status, 204)
    await output(broker, gone, 2)

    const other = await u.api('POST', u.path, {
      endpoint: 'closing',
      type: 'mqtt',
      config: { ...config, client_id: 'tether-ep-close' },
    })
    assert.equal(other.status, 201)
    assert.equal((await u.api<CallResult>('POST', `${u.path}/closing/call`, {})).body.ok, true)
    await relay.relay.close()
    await output(broker, /Client tether-ep-close (disconnected|closed its connection)/)
  })
})

test('an unreachable broker is a timed-out call', async (t) => {
  const relay = await startTestRelay(t)
  relay.relay.endpoints.retry = { attempts: 2, baseDelayMs: 1 }
  const u = await createUser(relay, 'nobroker')
  const url = `mqtt://127.0.0.1:${await freePort()}`
  await u.api('POST', u.path, {
    endpoint: 'void',
    type: 'mqtt',
    config: { url, topic: 't', qos: 1, timeout_ms: 200 },
  })
  const res = await u.api<CallResult>('POST', `${u.path}/void/call`, {})
  assert.equal(res.body.ok, false)
  assert.equal(res.body.error, `no connection to ${url} within 200 ms`)
  assert.equal(res.body.attempts, 2)
})
