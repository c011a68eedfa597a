/**
 * MQTT integration against a real Mosquitto broker: messages published with mosquitto_pub become points of the
 * device named in the topic; downlinks (RPC and attribute updates) are published to the converter's topic.
 */
import assert from 'node:assert/strict'
import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { freePort, startTestRelay } from '../../e2e/harness.ts'
import { accepts, ok, ready, requireTools, run, sandbox, TIMEOUT } from '../../e2e/real-clients/tools.ts'
import { converter, integration, waitForPoints } from './helpers.ts'

/** After ThingsBoard's MQTT integration docs: the device name is a topic segment. */
const TOPIC_DECODER = `var data = decodeToJson(payload);
var deviceName = metadata.topic.split('/')[3];
return { deviceName: deviceName, deviceType: 'sensor', telemetry: { temperature: data.value } };
function decodeToJson(p) { return JSON.parse(String.fromCharCode.apply(String, p)); }`

const TOPIC_ENCODER = `return {
  contentType: 'JSON',
  data: JSON.stringify({ type: msgType, msg: msg }),
  metadata: { topic: 'tb/mqtt-integration-tutorial/sensors/' + metadata['deviceName'] + '/rx' }
};`

test(
  'mqtt integration: mosquitto_pub uplinks, downlinks published to the converter topic',
  TIMEOUT,
  async (t) => {
    const tools = requireTools(t, {
      mosquitto: 'mosquitto',
      mosquitto_pub: 'mosquitto-clients',
      mosquitto_sub: 'mosquitto-clients',
    })
    if (!tools) return
    const box = await sandbox(t, 'mqtt-int')
    const mqttPort = await freePort()
    const conf = join(box.dir, 'mosquitto.conf')
    await writeFile(
      conf,
      `listener ${mqttPort} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type all\n`,
    )
    await chmod(box.dir, 0o755)
    await chmod(conf, 0o644)
    const broker = box.spawn(tools.mosquitto as string, ['-c', conf])
    await ready(broker, 'mosquitto', () => accepts(mqttPort))

    const relay = await startTestRelay(t)
    await converter(relay, 'topic', 'thingsboard', 'uplink', TOPIC_DECODER)
    await converter(relay, 'enc', 'thingsboard', 'downlink', TOPIC_ENCODER)
    const view = await integration(relay, {
      id: 'mqtt1',
      type: 'mqtt',
      uplinkConverter: 'topic',
      downlinkConverter: 'enc',
      mqtt: {
        url: `mqtt://127.0.0.1:${mqttPort}`,
        clientId: 'tether-test-integration',
        topicFilters: [{ filter: 'tb/mqtt-integration-tutorial/sensors/+/temperature', qos: 1 }],
      },
    })
    assert.equal(view.type, 'mqtt')
    // The integration's subscription stands once the broker has sent its SUBACK.
    await ready(broker, 'integration subscription', async () =>
      /Sending SUBACK to tether-test-integration/.test(broker.output()),
    )

    for (const value of [25.1, 26.3]) {
      ok(
        await run(tools.mosquitto_pub as string, [
          '-h',
          '127.0.0.1',
          '-p',
          String(mqttPort),
          '-q',
          '1',
          '-t',
          'tb/mqtt-integration-tutorial/sensors/SN-001/temperature',
          '-m',
          JSON.stringify({ value }),
        ]),
        'mosquitto_pub',
      )
    }
    assert.deepEqual(
      (await waitForPoints(relay, 'SN-001', 2)).map((p) => p.val),
      [{ temperature: 25.1 }, { temperature: 26.3 }],
    )

    const sub = box.spawn(tools.mosquitto_sub as string, [
      '-h',
      '127.0.0.1',
      '-p',
      String(mqttPort),
      '-i',
      'downlink-watcher',
      '-t',
      'tb/mqtt-integration-tutorial/sensors/SN-001/rx',
      '-C',
      '2',
      '-W',
      '20',
    ])
    await ready(sub, 'mosquitto_sub', async () => /Sending SUBACK to downlink-watcher/.test(broker.output()))
    const rpc = await relay.api<{ status: string }>('POST', '/v1/users/admin/devices/SN-001/downlink', {
      interval: 10,
    })
    assert.equal(rpc.status, 200, JSON.stringify(rpc.body))
    assert.equal(rpc.body.status, 'delivered')
    const prop = await relay.api('POST', '/v3/users/admin/devices/SN-001/properties', {
      property: 'led',
      value: 'on',
    })
    assert.equal(prop.status, 201)
    await sub.exited
    assert.equal(sub.proc.exitCode, 0, sub.output())
    const lines = sub
      .output()
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{')) // the sandbox appends an "[exited with …]" line
      .map((l) => JSON.parse(l))
    assert.deepEqual(lines, [
      { type: 'RPC_CALL', msg: { interval: 10 } },
      { type: 'ATTRIBUTES_UPDATED', msg: { led: 'on' } },
    ])
    const status = (
      await relay.api<{ status: { state: string; uplinks: number; downlinks: number } }>(
        'GET',
        '/v1/users/admin/integrations/mqtt1',
      )
    ).body.status
    assert.deepEqual([status.state, status.uplinks, status.downlinks], ['running', 2, 2])
  },
)
