/**
 * mosquitto_pub/sub through a tcp proxy to a plugin target running mosquitto.
 * A missing tool skips the test locally and fails it in CI (CI=true), naming the Debian package.
 */
import assert from 'node:assert/strict'
import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { freePort, startTestRelay } from '../harness.ts'
import { accepts, createProxy, ok, proxyStatus, ready, requireTools, run, sandbox, TIMEOUT } from './tools.ts'

test('Mosquitto: mosquitto_pub/sub through a tcp proxy to a plugin target', TIMEOUT, async (t) => {
  const tools = requireTools(t, {
    mosquitto: 'mosquitto',
    mosquitto_pub: 'mosquitto-clients',
    mosquitto_sub: 'mosquitto-clients',
  })
  if (!tools) return
  const box = await sandbox(t, 'mqtt')
  const mqttPort = await freePort()
  const conf = join(box.dir, 'mosquitto.conf')
  await writeFile(
    conf,
    `listener ${mqttPort} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type all\n`,
  )
  await chmod(box.dir, 0o755) // mosquitto drops root privileges to its own user
  await chmod(conf, 0o644)
  const server = box.spawn(tools.mosquitto!, ['-c', conf])
  await ready(server, 'mosquitto', () => accepts(mqttPort))

  const relay = await startTestRelay(t, { plugins: { mqtt: { address: '127.0.0.1' } } })
  const port = await createProxy(relay, {
    id: 'mqtt',
    protocol: 'tcp',
    target: { type: 'plugin', plugin: 'mqtt', port: mqttPort },
  })

  // Publish only once the subscription stands: the broker logs (log_type all) the SUBACK it sends.
  const sub = box.spawn(tools.mosquitto_sub!, [
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-t',
    't',
    '-C',
    '1',
    '-W',
    '15',
  ])
  await ready(sub, 'mosquitto_sub', async () => /Sending SUBACK to/.test(server.output()), 10_000)
  ok(
    await run(tools.mosquitto_pub!, ['-h', '127.0.0.1', '-p', String(port), '-t', 't', '-m', 'hello']),
    'mosquitto_pub',
  )
  await sub.exited
  assert.equal(sub.proc.exitCode, 0, sub.output())
  const lines = sub.output().split('\n')
  assert.ok(lines.includes('hello'), `mosquitto_sub did not print the message:\n${sub.output()}`)
  const status = await proxyStatus(relay, 'mqtt')
  assert.equal(status.total_connections, 2)
})
