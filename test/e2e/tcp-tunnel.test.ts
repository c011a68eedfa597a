/** TCP over IoTMP end to end: real relay, real agent, real sockets on loopback. */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type net from 'node:net'
import { test } from 'node:test'
import tls from 'node:tls'
import {
  connect,
  createAgentDevice,
  createTcpProxy,
  echoServer,
  freePort,
  readAll,
  startTestRelay,
  startTunnel,
  tcpServer,
  waitForLog,
} from './harness.ts'

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** Writes `data` to the socket in 1 MiB pieces respecting backpressure, then ends it. */
async function writeAll(socket: net.Socket, data: Buffer): Promise<void> {
  for (let at = 0; at < data.length; at += 1 << 20) {
    if (!socket.write(data.subarray(at, at + (1 << 20)))) {
      await new Promise((resolve) => socket.once('drain', resolve))
    }
  }
  socket.end()
}

test('echo through TCP over IoTMP', async (t) => {
  const target = await echoServer(t)
  const { relay } = await startTunnel(t, [`127.0.0.1:${target}`])
  const port = await createTcpProxy(relay, 'echo', { device: 'gw', address: '127.0.0.1', port: target })
  const socket = await connect(port)
  const reply = readAll(socket)
  socket.end('hello tether')
  const { data, ended } = await reply
  assert.equal(data.toString(), 'hello tether')
  assert.equal(ended, true)
})

test('64 MiB of random bytes each way arrive intact (sha256)', async (t) => {
  const target = await echoServer(t)
  const { relay } = await startTunnel(t, [`127.0.0.1:${target}`])
  const port = await createTcpProxy(relay, 'bulk', { device: 'gw', address: '127.0.0.1', port: target })
  const sent = randomBytes(64 * 1024 * 1024)
  const socket = await connect(port)
  const reply = readAll(socket)
  await writeAll(socket, sent)
  const { data } = await reply
  assert.equal(data.length, sent.length)
  assert.equal(sha256(data), sha256(sent))
  const stats = await relay.api<{
    status: { rx_bytes: number; tx_bytes: number; total_connections: number }
  }>('GET', '/v1/server/proxies/bulk')
  assert.equal(stats.body.status.rx_bytes, sent.length)
  assert.equal(stats.body.status.tx_bytes, sent.length)
})

test('200 concurrent streams each get their own bytes back', async (t) => {
  const target = await echoServer(t)
  const { relay } = await startTunnel(t, [`127.0.0.1:${target}`])
  const port = await createTcpProxy(relay, 'many', { device: 'gw', address: '127.0.0.1', port: target })
  const results = await Promise.all(
    Array.from({ length: 200 }, async () => {
      const payload = randomBytes(32 * 1024)
      const socket = await connect(port)
      const reply = readAll(socket)
      socket.end(payload)
      const { data } = await reply
      return data.equals(payload)
    }),
  )
  assert.equal(results.filter(Boolean).length, 200)
})

test('half-close: the client ends its side and still receives the whole reply', async (t) => {
  // The target answers only after the client's FIN: it sends the sha256 of what it read, then a large tail.
  const tail = randomBytes(3 * 1024 * 1024)
  const target = await tcpServer(t, (socket) => {
    const hash = createHash('sha256')
    socket.on('data', (c) => hash.update(c))
    socket.on('end', () => {
      socket.write(hash.digest())
      socket.end(tail)
    })
  })
  const { relay } = await startTunnel(t, [`127.0.0.1:${target}`])
  const port = await createTcpProxy(relay, 'half', { device: 'gw', address: '127.0.0.1', port: target })
  const request = randomBytes(1024 * 1024)
  const socket = await connect(port)
  const reply = readAll(socket)
  socket.end(request)
  const { data, ended } = await reply
  assert.equal(ended, true)
  assert.deepEqual(data.subarray(0, 32), createHash('sha256').update(request).digest())
  assert.equal(sha256(data.subarray(32)), sha256(tail))
})

test('target refusing the connection: client closed, reason logged', async (t) => {
  const closedPort = await freePort()
  const { relay } = await startTunnel(t, [`127.0.0.1:${closedPort}`])
  const port = await createTcpProxy(relay, 'refused', {
    device: 'gw',
    address: '127.0.0.1',
    port: closedPort,
  })
  const { data } = await readAll(await connect(port))
  assert.equal(data.length, 0)
  await waitForLog(relay.logs, /proxy refused: agent could not open 127\.0\.0\.1:\d+: connection refused/)
})

test('target not in the allowlist: client closed, nothing dialed, reason logged on both sides', async (t) => {
  let dialed = 0
  const target = await tcpServer(t, () => dialed++)
  const { relay, agent } = await startTunnel(t, ['127.0.0.1:1-1000'])
  const port = await createTcpProxy(relay, 'denied', { device: 'gw', address: '127.0.0.1', port: target })
  const { data } = await readAll(await connect(port))
  assert.equal(data.length, 0)
  assert.equal(dialed, 0)
  await waitForLog(relay.logs, /proxy denied: .*not in the agent's allowlist/)
  await waitForLog(agent.logs, /refused 127\.0\.0\.1:\d+: .*not in the agent's allowlist/)
})

test('target that never completes the handshake: dial times out, client closed', async (t) => {
  // A TCP server that accepts but never answers the TLS ClientHello: the agent's TLS dial must time out.
  const target = await tcpServer(t, () => {})
  const { relay } = await startTunnel(t, [`127.0.0.1:${target}`], {}, { dialTimeoutMs: 300 })
  const port = await createTcpProxy(relay, 'silent', {
    device: 'gw',
    address: '127.0.0.1',
    port: target,
    tls: true,
  })
  const { data } = await readAll(await connect(port))
  assert.equal(data.length, 0)
  await waitForLog(relay.logs, /proxy silent: .*no answer from 127\.0\.0\.1:\d+ within 300 ms/)
})

test('device offline: client connection closed at once, reason logged', async (t) => {
  const relay = await startTestRelay(t)
  await createAgentDevice(relay, 'gw')
  const port = await createTcpProxy(relay, 'offline', { device: 'gw', address: '127.0.0.1', port: 80 })
  const { data } = await readAll(await connect(port))
  assert.equal(data.length, 0)
  await waitForLog(relay.logs, /proxy offline: device admin\/gw is offline/)
})

test('TLS to the target with SNI and certificate verification', async (t) => {
  const cert = readFileSync(new URL('../fixtures/tls/localhost.crt', import.meta.url))
  const key = readFileSync(new URL('../fixtures/tls/localhost.key', import.meta.url))
  const seenServerNames: string[] = []
  const server = tls.createServer({ cert, key }, (socket) => {
    seenServerNames.push((socket as tls.TLSSocket & { servername?: string }).servername ?? '')
    socket.end('secret over tls')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => server.close())
  const targetPort = (server.address() as net.AddressInfo).port
  const { relay } = await startTunnel(t, [`localhost:${targetPort}`])

  // verify: true with a certificate the agent cannot verify → refused
  const strict = await createTcpProxy(relay, 'tls-strict', {
    device: 'gw',
    address: 'localhost',
    port: targetPort,
    tls: true,
  })
  const refused = await readAll(await connect(strict))
  assert.equal(refused.data.length, 0)
  await waitForLog(relay.logs, /proxy tls-strict: .*is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\)/)

  // verify: false (self-signed device UI) → works, SNI carried the target host name
  const lax = await createTcpProxy(relay, 'tls-lax', {
    device: 'gw',
    address: 'localhost',
    port: targetPort,
    tls: true,
    verify: false,
  })
  const { data } = await readAll(await connect(lax))
  assert.equal(data.toString(), 'secret over tls')
  assert.ok(seenServerNames.includes('localhost'))
})
