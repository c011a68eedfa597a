/** UdpTransport with real datagram sockets on 127.0.0.1: uplinks, downlinks to the last address, limits. */
import assert from 'node:assert/strict'
import dgram from 'node:dgram'
import { once } from 'node:events'
import { type TestContext, test } from 'node:test'
import { UdpTransport, type UdpTransportOptions } from '../../integrations/transports/index.ts'
import { deferred, fakeContext, text } from './fake-context.ts'

async function start(t: TestContext, opts: UdpTransportOptions = {}, address = '127.0.0.1') {
  const ctx = fakeContext()
  const transport = new UdpTransport({ port: 0, address }, ctx, opts)
  await transport.start()
  t.after(() => transport.stop())
  return { ctx, transport, port: transport.status().port! }
}

/** A device's socket on an ephemeral port, closed after the test. */
async function device(t: TestContext, type: 'udp4' | 'udp6' = 'udp4') {
  const socket = dgram.createSocket(type)
  await new Promise<void>((resolve) => socket.bind(0, type === 'udp4' ? '127.0.0.1' : '::1', resolve))
  t.after(() => socket.close())
  return socket
}

const send = (socket: dgram.Socket, port: number, data: string | Buffer, host = '127.0.0.1') =>
  new Promise<void>((resolve, reject) => socket.send(data, port, host, (e) => (e ? reject(e) : resolve())))
const received = (socket: dgram.Socket) => once(socket, 'message').then(([msg]) => (msg as Buffer).toString())
const downlink = (data: string) => ({ contentType: 'TEXT' as const, data, metadata: {} })

test('each datagram is one uplink with the source address in its metadata', async (t) => {
  const { ctx, transport, port } = await start(t)
  const dev = await device(t)
  await send(dev, port, 'd1:one\nstill one')
  await send(dev, port, Buffer.from([0x64, 0x32, 0x3a, 0x00, 0xff]))
  const first = await ctx.next()
  assert.equal(text(first), 'd1:one\nstill one')
  assert.deepEqual(first.metadata, { remoteAddress: '127.0.0.1', remotePort: String(dev.address().port) })
  assert.deepEqual([...((await ctx.next()).payload as Uint8Array)], [0x64, 0x32, 0x3a, 0x00, 0xff])
  assert.deepEqual(transport.status(), {
    state: 'running',
    port,
    received: 2,
    sent: 0,
    droppedDatagrams: 0,
  })
})

test("downlinks go to the device's last address; unknown devices are refused", async (t) => {
  const { ctx, transport, port } = await start(t)
  await assert.rejects(transport.deliver('d1', downlink('x')), /d1 has no known udp address/)
  const a = await device(t)
  await send(a, port, 'd1:from a')
  await ctx.next()
  await ctx.idle()
  const atA = received(a)
  await transport.deliver('d1', downlink('to a'))
  assert.equal(await atA, 'to a')

  const b = await device(t) // the device moved (a new NAT mapping, a new port)
  await send(b, port, 'd1:from b')
  await ctx.next()
  await ctx.idle()
  const atB = received(b)
  await transport.deliver('d1', { contentType: 'JSON', data: { led: 'on' }, metadata: {} })
  assert.equal(await atB, '{"led":"on"}')
  assert.equal(transport.status().sent, 2)
  await assert.rejects(transport.deliver('d1', downlink('x'.repeat(70_000))), /exceeds one datagram/)
})

test('a failed uplink is logged and teaches no address', async (t) => {
  const { ctx, transport, port } = await start(t)
  ctx.fail = new Error('converter threw')
  const dev = await device(t)
  await send(dev, port, 'd1:bad')
  await ctx.next()
  assert.equal((await ctx.logged(/uplink failed/)).err, 'converter threw')
  await assert.rejects(transport.deliver('d1', downlink('x')), /no known udp address/)
})

test('past maxPendingUplinks in flight, datagrams are dropped and counted', async (t) => {
  const { ctx, transport, port } = await start(t, { maxPendingUplinks: 1 })
  const gate = deferred()
  ctx.hold = () => gate.promise
  const dev = await device(t)
  await send(dev, port, 'held')
  await ctx.next()
  await send(dev, port, 'dropped')
  await ctx.logged(/too many uplinks in flight/)
  gate.resolve()
  await ctx.idle()
  await send(dev, port, 'after')
  assert.equal(text(await ctx.next()), 'after')
  assert.deepEqual([transport.status().received, transport.status().droppedDatagrams], [3, 1])
})

test('an IPv6 address binds a udp6 socket', async (t) => {
  const { ctx, transport, port } = await start(t, {}, '::1')
  const dev = await device(t, 'udp6')
  await send(dev, port, 'd6:hi', '::1')
  assert.equal((await ctx.next()).metadata.remoteAddress, '::1')
  await ctx.idle()
  const reply = received(dev)
  await transport.deliver('d6', downlink('hello'))
  assert.equal(await reply, 'hello')
})

test('a port in use fails start() and shows in the status', async (t) => {
  const { port } = await start(t)
  const second = new UdpTransport({ port, address: '127.0.0.1' }, fakeContext())
  await assert.rejects(second.start(), /EADDRINUSE/)
  assert.equal(second.status().state, 'error')
  assert.match(second.status().error ?? '', /EADDRINUSE/)
})
