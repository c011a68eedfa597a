/**
 * TLS targets (openssl s_server) through the relay and the agent: verification, names, trusted CAs.
 * A missing tool skips the test locally and fails it in CI (CI=true), naming the Debian package.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import type net from 'node:net'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { test } from 'node:test'
import tls from 'node:tls'
import { connect, createTcpProxy, readAll, startTestRelay, startTunnel, waitForLog } from '../harness.ts'
import { createProxy, FIXTURES, opensslServer, proxyStatus, requireTools, TIMEOUT } from './tools.ts'

test(
  'TLS target behind the agent: verify:false works, verify:true fails on the self-signed cert',
  TIMEOUT,
  async (t) => {
    const secured: boolean[] = []
    const server = tls.createServer(
      {
        cert: readFileSync(join(FIXTURES, 'localhost.crt')),
        key: readFileSync(join(FIXTURES, 'localhost.key')),
      },
      (socket) => {
        secured.push(socket.encrypted)
        socket.on('error', () => {})
        socket.on('data', (d: Buffer) => socket.write(`secure ${d}`))
        socket.on('end', () => socket.end())
      },
    )
    server.on('tlsClientError', () => {}) // the verifying agent hangs up during the handshake
    const sockets = new Set<net.Socket>()
    server.on('connection', (socket: net.Socket) => {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.after(async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    })
    const tlsPort = (server.address() as AddressInfo).port

    const { relay, agent } = await startTunnel(t, [`127.0.0.1:${tlsPort}`])
    const open = await createTcpProxy(relay, 'tls-unverified', {
      device: 'gw',
      address: '127.0.0.1',
      port: tlsPort,
      tls: true,
      verify: false,
    })
    await waitForLog(relay.logs, /tls-unverified: TLS to the target without certificate verification/)
    const socket = await connect(open)
    const reply = readAll(socket)
    socket.end('ping')
    assert.equal((await reply).data.toString(), 'secure ping')
    assert.deepEqual(secured, [true])
    await waitForLog(agent.logs, /without certificate verification/)

    const verified = await createTcpProxy(relay, 'tls-verified', {
      device: 'gw',
      address: '127.0.0.1',
      port: tlsPort,
      tls: true,
      verify: true,
    })
    const refused = await connect(verified)
    const nothing = readAll(refused)
    refused.write('ping')
    assert.equal((await nothing).data.length, 0, 'no bytes from an unverified target')
    const line = await waitForLog(
      relay.logs,
      /proxy tls-verified: .*is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\)/,
    )
    assert.match(String(line.msg), /agent could not open 127\.0\.0\.1:\d+/)
    const status = await proxyStatus(relay, 'tls-verified')
    assert.match(
      status.last_error?.message ?? '',
      /is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\): add its CA to targetCa/,
    )
    assert.equal(status.rejected_connections, 1)
    assert.equal(secured.length, 1, 'the TLS server never completed a handshake with the verifying agent')
  },
)

test('TLS target: openssl s_server reached with tls:true through tcp-iotmp', TIMEOUT, async (t) => {
  const tools = requireTools(t, { openssl: 'openssl' })
  if (!tools) return
  const tlsPort = await opensslServer(t, tools.openssl!, 'openssl')
  const { relay } = await startTunnel(t, [`127.0.0.1:${tlsPort}`])
  const port = await createTcpProxy(relay, 's-server', {
    device: 'gw',
    address: '127.0.0.1',
    port: tlsPort,
    tls: true,
    verify: false,
  })
  const socket = await connect(port)
  const reply = readAll(socket)
  socket.write('GET / HTTP/1.0\r\n\r\n')
  const page = (await reply).data.toString()
  assert.match(page, /^HTTP\/1\.0 200 ok/)
  assert.match(page, /TLSv1\.[23]/, 'the status page names the negotiated TLS version')
})

test(
  'TLS target verified against a trusted CA on both sides; a wrong name fails with a clear error',
  TIMEOUT,
  async (t) => {
    const tools = requireTools(t, { openssl: 'openssl' })
    if (!tools) return
    const tlsPort = await opensslServer(t, tools.openssl!, 'openssl-verify')
    // The fixture certificate (CN/SAN localhost, 127.0.0.1) is its own CA: trusting it is what a site CA does.
    const ca = [join(FIXTURES, 'localhost.crt')]
    const { relay } = await startTunnel(t, [`127.0.0.1:${tlsPort}`], { targetCa: ca }, { targetCa: ca })
    const fetchPage = async (port: number) => {
      const socket = await connect(port)
      const reply = readAll(socket)
      socket.write('GET / HTTP/1.0\r\n\r\n')
      return (await reply).data.toString()
    }
    const tlsTarget = { address: '127.0.0.1', port: tlsPort, tls: true }
    const profiles = {
      // verify defaults to true: the agent checks the certificate against 127.0.0.1 and its targetCa.
      'via-agent': {
        protocol: 'tcp-iotmp',
        target: { type: 'device', user: 'admin', device: 'gw', ...tlsTarget },
      },
      'via-relay': { protocol: 'tcp', target: { type: 'host', ...tlsTarget } },
      'agent-wrong-name': {
        protocol: 'tcp-iotmp',
        target: { type: 'device', user: 'admin', device: 'gw', ...tlsTarget, servername: 'wrong.example' },
      },
      'relay-wrong-name': {
        protocol: 'tcp',
        target: { type: 'host', ...tlsTarget, servername: 'wrong.example' },
      },
    }
    const ports: Record<string, number> = {}
    for (const [id, profile] of Object.entries(profiles))
      ports[id] = await createProxy(relay, { id, ...profile })

    for (const id of ['via-agent', 'via-relay']) {
      const page = await fetchPage(ports[id]!)
      assert.match(page, /^HTTP\/1\.0 200 ok/, `${id}: the verified handshake completed`)
    }
    for (const id of ['agent-wrong-name', 'relay-wrong-name']) {
      assert.equal(await fetchPage(ports[id]!), '', `${id}: the client connection is closed without data`)
      const status = await proxyStatus(relay, id)
      assert.equal(status.rejected_connections, 1)
      assert.match(
        status.last_error?.message ?? '',
        /certificate of 127\.0\.0\.1:\d+ is not valid for wrong\.example/,
      )
    }
    // Without the CA, the same target is refused as untrusted, with the remedy named.
    const untrusted = await startTestRelay(t)
    const plain = await createProxy(untrusted, { id: 'untrusted', ...profiles['via-relay'] })
    assert.equal(await fetchPage(plain), '')
    const status = await proxyStatus(untrusted, 'untrusted')
    assert.match(
      status.last_error?.message ?? '',
      /is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\): add its CA to targetCa/,
    )
  },
)
