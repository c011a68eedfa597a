/** TcpTransport with real sockets on 127.0.0.1: every framing, limits, and downlinks to the last connection. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import net from 'node:net'
import { type TestContext, test } from 'node:test'
import type { IntegrationConfig, TcpFraming } from '../../integrations/schemas.ts'
import {
  createTransport,
  TcpTransport,
  type TcpTransportOptions,
} from '../../integrations/transports/index.ts'
import { deferred, type FakeContext, fakeContext, text } from './fake-context.ts'

async function start(t: TestContext, framing: TcpFraming, opts: TcpTransportOptions = {}) {
  const ctx = fakeContext()
  const transport = new TcpTransport({ port: 0, address: '127.0.0.1', framing }, ctx, opts)
  await transport.start()
  t.after(() => transport.stop())
  return { ctx, transport, port: transport.status().port! }
}

/** A client connection (allowing half-open, as a request/response device does), destroyed after the test. */
async function dial(t: TestContext, port: number): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true })
  socket.on('error', () => {})
  t.after(() => socket.destroy())
  await once(socket, 'connect')
  return socket
}

/** Writes each chunk and waits for it to leave, so the server is likely to see separate chunks. */
async function send(socket: net.Socket, ...chunks: Array<string | Buffer>): Promise<void> {
  for (const chunk of chunks)
    await new Promise<void>((resolve, reject) => socket.write(chunk, (e) => (e ? reject(e) : resolve())))
}

/** Reads exactly `n` bytes from the socket. */
async function read(socket: net.Socket, n: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  while (size < n) {
    const chunk = socket.read() as Buffer | null
    if (chunk) {
      chunks.push(chunk)
      size += chunk.length
    } else await once(socket, 'readable')
  }
  const all = Buffer.concat(chunks)
  if (all.length > n) socket.unshift(all.subarray(n))
  return all.subarray(0, n)
}

/** Polls `check` (the transport has no event for it) every 10 ms, for up to 5 s. */
async function until(check: () => boolean, what: string): Promise<void> {
  for (const deadline = Date.now() + 5000; !check(); await new Promise((r) => setTimeout(r, 10))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
  }
}

/** Resolves once the server has closed the connection (our half-open client sees its end, or a reset). */
async function closed(socket: net.Socket): Promise<void> {
  if (socket.closed || socket.readableEnded) return
  socket.resume()
  await Promise.race([once(socket, 'end'), once(socket, 'close')])
}
const downlink = (data: string) => ({ contentType: 'TEXT' as const, data, metadata: {} })

test('delimiter framing: split and coalesced chunks, metadata with the peer address', async (t) => {
  const { ctx, transport, port } = await start(t, { type: 'delimiter', delimiter: '0d0a' })
  const client = await dial(t, port)
  await send(client, 'd1:he', 'llo\r', '\nd1:wor', 'ld\r\nd2:x\r\nd3:', 'y\r\n')
  assert.deepEqual(await ctx.texts(4), ['d1:hello', 'd1:world', 'd2:x', 'd3:y'])
  assert.deepEqual(ctx.messages[0].metadata, {
    remoteAddress: '127.0.0.1',
    remotePort: String(client.localPort),
  })
  const status = transport.status()
  assert.deepEqual([status.state, status.received, status.connections], ['running', 4, 1])
})

test('delimiter framing: a last frame without its delimiter goes up when the peer ends; then we end', async (t) => {
  const { ctx, port } = await start(t, { type: 'delimiter', delimiter: '0a' })
  const client = await dial(t, port)
  client.end('d1:a\nd1:last')
  assert.deepEqual(await ctx.texts(2), ['d1:a', 'd1:last'])
  await closed(client)
})

test('length framing: 2-byte big-endian prefix split from its payload', async (t) => {
  const { ctx, port } = await start(t, { type: 'length', bytes: 2 })
  const client = await dial(t, port)
  await send(client, Buffer.from([0]), Buffer.from([5, 0x64, 0x31]), Buffer.from(':ok\x00\x03abc'))
  assert.deepEqual(await ctx.texts(2), ['d1:ok', 'abc'])
})

test('length framing: 4-byte little-endian prefix, downlinks framed the same way', async (t) => {
  const { ctx, transport, port } = await start(t, { type: 'length', bytes: 4, endian: 'LE' })
  const client = await dial(t, port)
  await send(client, Buffer.from([4, 0, 0, 0]), 'd9:x')
  assert.equal(text(await ctx.next()), 'd9:x')
  await ctx.idle()
  await transport.deliver('d9', downlink('on'))
  assert.deepEqual(await read(client, 6), Buffer.from([2, 0, 0, 0, 0x6f, 0x6e]))
  assert.equal(transport.status().sent, 1)
})

test('connection framing: the message is sent at end; the reply is raw and ends the connection', async (t) => {
  const { ctx, transport, port } = await start(t, { type: 'connection' })
  const client = await dial(t, port)
  await send(client, 'dev-7:', 'line 1\n', 'line 2\n')
  client.end()
  assert.equal(text(await ctx.next()), 'dev-7:line 1\nline 2\n')
  await ctx.idle()
  const reply = read(client, 5)
  await transport.deliver('dev-7', downlink('hello'))
  assert.equal((await reply).toString(), 'hello')
  client.resume()
  await once(client, 'end')
})

test('connection framing: without a downlink our side ends after replyWaitMs', async (t) => {
  const { ctx, port } = await start(t, { type: 'connection' }, { replyWaitMs: 10 })
  const client = await dial(t, port)
  client.end('whole message')
  assert.equal(text(await ctx.next()), 'whole message')
  client.resume()
  await once(client, 'end')
})

test('a delimiter frame over maxFrameBytes closes the connection; it is logged and counted', async (t) => {
  const { ctx, transport, port } = await start(t, { type: 'delimiter', delimiter: '0a', maxFrameBytes: 8 })
  const client = await dial(t, port)
  await send(client, 'ok:1\n0123456789') // the valid frame before the oversized one still goes up
  await closed(client)
  assert.equal(text(await ctx.next()), 'ok:1')
  const line = await ctx.logged(/frame too large/)
  assert.equal(line.maxFrameBytes, 8)
  assert.equal(transport.status().oversizedFrames, 1)
})

test('a length prefix over maxFrameBytes closes the connection before the payload arrives', async (t) => {
  const { transport, port } = await start(t, { type: 'length', bytes: 4, maxFrameBytes: 100 })
  const client = await dial(t, port)
  client.write(Buffer.from([0, 0, 0, 101]))
  await closed(client)
  assert.equal(transport.status().oversizedFrames, 1)
})

test("downlinks go to the device's last live connection; unknown devices are refused", async (t) => {
  const { ctx, transport, port } = await start(t, { type: 'delimiter', delimiter: '0a' })
  await assert.rejects(transport.deliver('nobody', downlink('x')), /nobody has no live tcp connection/)
  const a = await dial(t, port)
  await send(a, 'dev1:from a\n')
  await ctx.next()
  await ctx.idle()
  await transport.deliver('dev1', downlink('to a'))
  assert.equal((await read(a, 5)).toString(), 'to a\n')

  const b = await dial(t, port)
  await send(b, 'dev1:from b\n')
  await ctx.next()
  await ctx.idle()
  await transport.deliver('dev1', downlink('to b'))
  assert.equal((await read(b, 5)).toString(), 'to b\n')
  await assert.rejects(transport.deliver('dev1', downlink('two\nlines')), /delimiter/)

  b.destroy()
  await until(() => transport.status().connections === 1, 'the server side to close')
  await assert.rejects(transport.deliver('dev1', downlink('gone')), /dev1 has no live tcp connection/)
})

test('an idle connection is closed after idleTimeoutMs', async (t) => {
  const { port } = await start(t, { type: 'delimiter', delimiter: '0a' }, { idleTimeoutMs: 100 })
  const client = await dial(t, port)
  await closed(client)
})

test('connections beyond maxConnections are refused and counted', async (t) => {
  const { ctx, transport, port } = await start(
    t,
    { type: 'delimiter', delimiter: '0a' },
    { maxConnections: 1 },
  )
  const first = await dial(t, port)
  await send(first, 'a:1\n')
  await ctx.next() // the first connection is accepted and counted before the second arrives
  const second = await dial(t, port)
  await closed(second)
  assert.equal(transport.status().refusedConnections, 1)
  await ctx.logged(/connection limit reached/)
  await send(first, 'a:2\n')
  assert.equal(text(await ctx.next()), 'a:2')
})

test('a failing uplink is logged and the connection carries on', async (t) => {
  const { ctx, port } = await start(t, { type: 'delimiter', delimiter: '0a' })
  ctx.fail = new Error('converter threw')
  const client = await dial(t, port)
  await send(client, 'bad\n')
  await ctx.next()
  assert.equal((await ctx.logged(/uplink failed/)).err, 'converter threw')
  ctx.fail = undefined
  await send(client, 'good\n')
  assert.equal(text(await ctx.next()), 'good')
})

test('backpressure: past maxPendingFrames uplinks in flight the socket is not read', async (t) => {
  const { ctx, port } = await start(t, { type: 'delimiter', delimiter: '0a' }, { maxPendingFrames: 2 })
  const gate = deferred()
  ctx.hold = () => gate.promise
  const slow = await dial(t, port)
  for (const frame of ['s:1\n', 's:2\n', 's:3\n']) {
    await send(slow, frame)
    await ctx.next()
  }
  await send(slow, 's:4\n') // arrives while three uplinks are in flight: stays in the socket
  const other = await dial(t, port)
  await send(other, 'o:1\n')
  assert.equal(text(await ctx.next()), 'o:1', 'the paused socket did not deliver s:4 first')
  gate.resolve()
  assert.equal(text(await ctx.next()), 's:4')
})

test('createTransport builds tcp, udp and mqtt transports and refuses http', () => {
  const ctx: FakeContext = fakeContext()
  const common = { id: 'i1', uplinkConverter: 'c1' }
  const tcp = { ...common, type: 'tcp', tcp: { port: 0, framing: { type: 'connection' } } } as const
  assert.ok(createTransport(tcp, ctx) instanceof TcpTransport)
  assert.equal(createTransport({ ...common, type: 'udp', udp: { port: 0 } }, ctx).status().state, 'starting')
  const mqtt: IntegrationConfig = {
    ...common,
    type: 'mqtt',
    mqtt: { url: 'mqtt://x', topicFilters: [{ filter: '#' }] },
  }
  assert.equal(createTransport(mqtt, ctx).status().url, 'mqtt://x')
  assert.throws(() => createTransport({ ...common, type: 'http' }, ctx), /served by the relay/)
})
