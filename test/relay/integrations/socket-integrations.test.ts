/**
 * TCP and UDP integrations end to end: real sockets into the relay's listeners, ThingsBoard converters, points in
 * buckets, and downlinks written back to the device's last connection or address.
 */
import assert from 'node:assert/strict'
import dgram from 'node:dgram'
import { once } from 'node:events'
import net from 'node:net'
import { test } from 'node:test'
import { startTestRelay } from '../../e2e/harness.ts'
import { converter, integration, waitForPoints } from './helpers.ts'

/** After ThingsBoard's TCP/UDP integration docs: a text frame `SN-002,default,temperature,25.7`. */
const CSV_DECODER = `var parts = decodeToString(payload).trim().split(',');
return {
  deviceName: parts[0], deviceType: parts[1],
  attributes: { peer: metadata.remoteAddress },
  telemetry: (function () { var t = {}; t[parts[2]] = parseFloat(parts[3]); return t; })()
};
function decodeToString(p) { return String.fromCharCode.apply(String, p); }`

/** Encodes an RPC as a TEXT command line. */
const TEXT_ENCODER = `return { contentType: 'TEXT', data: 'SET ' + msg.interval, metadata: {} };`

test('tcp integration: delimited frames split across chunks are converted; a downlink reaches the last connection', async (t) => {
  const relay = await startTestRelay(t)
  await converter(relay, 'csv', 'thingsboard', 'uplink', CSV_DECODER)
  await converter(relay, 'cmd', 'thingsboard', 'downlink', TEXT_ENCODER)
  const view = await integration(relay, {
    id: 'tcp1',
    type: 'tcp',
    uplinkConverter: 'csv',
    downlinkConverter: 'cmd',
    tcp: { port: 0, address: '127.0.0.1', framing: { type: 'delimiter', delimiter: '0a' } },
  })
  assert.equal(view.status.state, 'running')
  const port = view.status.port as number
  assert.ok(port > 0)
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  t.after(() => socket.destroy())
  socket.write('SN-002,default,temp')
  socket.write('erature,25.7\nSN-002,default,humidity,40\n')
  const stored = await waitForPoints(relay, 'SN-002', 2)
  assert.deepEqual(
    stored.map((p) => p.val).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
    [{ humidity: 40 }, { temperature: 25.7 }],
  )
  const peer = (await relay.api<{ value: unknown }>('GET', '/v3/users/admin/devices/SN-002/properties/peer'))
    .body
  assert.equal(peer.value, '127.0.0.1')

  const received = once(socket, 'data')
  const res = await relay.api<{ status: string }>('POST', '/v1/users/admin/devices/SN-002/downlink', {
    interval: 15,
  })
  assert.equal(res.status, 200, JSON.stringify(res.body))
  assert.equal(res.body.status, 'delivered')
  assert.equal(String((await received)[0]), 'SET 15\n')
})

test('udp integration: each datagram is a message; a downlink goes back to the sender address', async (t) => {
  const relay = await startTestRelay(t)
  await converter(relay, 'csv', 'thingsboard', 'uplink', CSV_DECODER)
  await converter(relay, 'cmd', 'thingsboard', 'downlink', TEXT_ENCODER)
  const view = await integration(relay, {
    id: 'udp1',
    type: 'udp',
    uplinkConverter: 'csv',
    downlinkConverter: 'cmd',
    udp: { port: 0, address: '127.0.0.1' },
  })
  const port = view.status.port as number
  const device = dgram.createSocket('udp4')
  t.after(() => device.close())
  await new Promise<void>((resolve) => device.bind(0, '127.0.0.1', resolve))
  device.send('SN-003,default,temperature,19.5', port, '127.0.0.1')
  assert.deepEqual(
    (await waitForPoints(relay, 'SN-003', 1)).map((p) => p.val),
    [{ temperature: 19.5 }],
  )
  const received = once(device, 'message')
  const res = await relay.api<{ status: string }>('POST', '/v1/users/admin/devices/SN-003/downlink', {
    interval: 5,
  })
  assert.equal(res.body.status, 'delivered')
  assert.equal(String((await received)[0]), 'SET 5')
})

test('a device with no live connection: the downlink call answers 409 naming why', async (t) => {
  const relay = await startTestRelay(t)
  await converter(relay, 'csv', 'thingsboard', 'uplink', CSV_DECODER)
  await converter(relay, 'cmd', 'thingsboard', 'downlink', TEXT_ENCODER)
  const view = await integration(relay, {
    id: 'tcp1',
    type: 'tcp',
    uplinkConverter: 'csv',
    downlinkConverter: 'cmd',
    tcp: { port: 0, address: '127.0.0.1', framing: { type: 'length', bytes: 2 } },
  })
  const socket = net.connect(view.status.port as number, '127.0.0.1')
  await once(socket, 'connect')
  const frame = Buffer.from('SN-004,default,temperature,1')
  const header = Buffer.alloc(2)
  header.writeUInt16BE(frame.length)
  // The transport ends its side once the device ended and its last uplink settled.
  const closed = once(socket, 'close')
  socket.end(Buffer.concat([header, frame]))
  await waitForPoints(relay, 'SN-004', 1)
  await closed
  const res = await relay.api<{ error: { message: string } }>(
    'POST',
    '/v1/users/admin/devices/SN-004/downlink',
    { interval: 1 },
  )
  assert.equal(res.status, 409)
  assert.match(res.body.error.message, /not delivered/)
})
