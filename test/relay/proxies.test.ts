/** Proxies API on a real relay: validation, port conflicts, PUT/DELETE rules and persistence across restarts. */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import net, { type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { connect, echoServer, freePort, readAll, startTestRelay, type TestRelay } from '../e2e/harness.ts'

interface ProxyView {
  id: string
  protocol: string
  enabled: boolean
  source: { port: number; address?: string }
  target: Record<string, unknown>
  status: { listening: boolean; port?: number; error?: string; active_connections: number }
}

interface ErrorBody {
  error: { code: string; message: string }
}

/** Asserts an error answer: status, `{error: {code, message}}`, and that the message matches. */
function assertError(res: { status: number; body: unknown }, status: number, message?: RegExp): string {
  assert.equal(res.status, status, JSON.stringify(res.body))
  const { error } = res.body as ErrorBody
  assert.equal(typeof error?.code, 'string')
  assert.equal(typeof error?.message, 'string')
  if (message) assert.match(error.message, message)
  return error.message
}

/** A valid `tcp` profile to a host target on loopback; `patch` overrides top-level fields. */
function tcpProfile(id: string, sourcePort: number, targetPort: number, patch: Record<string, unknown> = {}) {
  return {
    id,
    protocol: 'tcp',
    enabled: true,
    source: { port: sourcePort, address: '127.0.0.1' },
    target: { type: 'host', address: '127.0.0.1', port: targetPort },
    ...patch,
  }
}

/** A TCP server of our own holding `port` (0 = any) on 127.0.0.1, closed after the test. */
async function holdPort(t: TestContext, port = 0): Promise<{ port: number; server: net.Server }> {
  const server = net.createServer((socket) => socket.destroy())
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve())
  })
  t.after(
    () => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve())),
  )
  return { port: (server.address() as AddressInfo).port, server }
}

async function echoThrough(port: number, text: string): Promise<string> {
  const socket = await connect(port)
  const reply = readAll(socket)
  socket.end(text)
  return (await reply).data.toString()
}

/** Resolves with the error code of a connection attempt to 127.0.0.1:port (undefined when it connects). */
function connectError(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(undefined)
    })
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code))
  })
}

async function listProxies(relay: TestRelay): Promise<ProxyView[]> {
  const res = await relay.api<ProxyView[]>('GET', '/v1/server/proxies')
  assert.equal(res.status, 200)
  return res.body
}

test('proxies API on one relay', async (t) => {
  const relay = await startTestRelay(t)

  await t.test('validation errors name the field; nothing is saved', async () => {
    const post = (body: unknown) => relay.api('POST', '/v1/server/proxies', body)
    const good = tcpProfile('good', 0, 7)

    assertError(await post({ ...good, id: 'bad id!' }), 400, /body\/id must match pattern/)
    assertError(await post({ ...good, id: 'x'.repeat(65) }), 400, /body\/id/)
    const { target: _target, ...noTarget } = good
    assertError(await post(noTarget), 400, /^body\/target is required$/)
    const { source: _source, ...noSource } = good
    assertError(await post(noSource), 400, /^body\/source is required$/)
    assertError(
      await post({ ...good, source: { port: 70000, address: '127.0.0.1' } }),
      400,
      /body\/source\/port/,
    )
    assertError(await post({ ...good, source: { port: -1 } }), 400, /body\/source\/port/)
    assertError(
      await post({ ...good, target: { type: 'host', address: '127.0.0.1', port: 0 } }),
      400,
      /body\/target\/port/,
    )
    assertError(
      await post({ ...good, target: { type: 'host', address: '127.0.0.1', port: 65536 } }),
      400,
      /body\/target\/port/,
    )
    assertError(
      await post({ ...good, target: { type: 'host', port: 80 } }),
      400,
      /^body\/target\/address is required$/,
    )
    assertError(
      await post({
        ...good,
        protocol: 'tcp-iotmp',
        target: { type: 'device', user: 'admin', address: 'x', port: 1 },
      }),
      400,
      /^body\/target\/device is required$/,
    )
    assertError(await post({ ...good, colour: 'red' }), 400, /^body\/colour is not a known field$/)
    assertError(
      await post({ ...good, source: { port: 0, address: 'not-an-ip' } }),
      400,
      /body\/source\/address/,
    )
    assertError(
      await post({ ...good, source: { port: 0, allow: ['300.1.2.3/8'] } }),
      400,
      /body\/source\/allow\/0/,
    )

    assertError(await relay.api('GET', '/v1/server/proxies/good'), 404)
    assert.ok(!(await listProxies(relay)).some((p) => p.id === 'good'))
  })

  await t.test('unsupported protocol or protocol/target mismatch: 400', async () => {
    const post = (body: unknown) => relay.api('POST', '/v1/server/proxies', body)
    const good = tcpProfile('p', 0, 7)
    assertError(await post({ ...good, protocol: 'sctp' }), 400, /body\/protocol/)
    assertError(await post({ ...good, protocol: 'TCP' }), 400, /body\/protocol/)
    // tcp-iotmp goes through an agent: a host target makes no sense, and tcp cannot reach a device.
    assertError(await post({ ...good, protocol: 'tcp-iotmp' }), 400, /target\/type/)
    assertError(
      await post({
        ...good,
        target: { type: 'device', user: 'admin', device: 'gw', address: '127.0.0.1', port: 7 },
      }),
      400,
      /target\/type/,
    )
    assertError(
      await post({ ...good, target: { type: 'plugin', plugin: 'nope', port: 7 } }),
      400,
      /body\/target\/plugin nope/,
    )
    assertError(await relay.api('GET', '/v1/server/proxies/p'), 404)
  })

  await t.test(
    'source port held by another process: 409 naming the port, profile kept with status.error',
    async (t) => {
      const held = await holdPort(t)
      const res = await relay.api('POST', '/v1/server/proxies', tcpProfile('busy', held.port, 7))
      const message = assertError(res, 409, new RegExp(`\\b${held.port}\\b`))
      assert.match(message, /in use/)

      const listed = (await listProxies(relay)).find((p) => p.id === 'busy')
      assert.ok(listed, 'the profile is kept')
      assert.equal(listed.status.listening, false)
      assert.match(listed.status.error ?? '', new RegExp(`\\b${held.port}\\b`))
      const one = await relay.api<ProxyView>('GET', '/v1/server/proxies/busy')
      assert.equal(one.status, 200)
      assert.equal(one.body.status.listening, false)

      // Once the port is free, saving the profile again opens the listener.
      await new Promise((resolve) => held.server.close(resolve))
      const again = await relay.api<ProxyView>(
        'PUT',
        '/v1/server/proxies/busy',
        tcpProfile('busy', held.port, 7),
      )
      assert.equal(again.status, 200, JSON.stringify(again.body))
      assert.equal(again.body.status.listening, true)
      assert.equal(again.body.status.port, held.port)
      assert.equal(again.body.status.error, undefined)

      // A second profile on a port this relay already listens on conflicts the same way.
      const twin = await relay.api('POST', '/v1/server/proxies', tcpProfile('twin', held.port, 7))
      assertError(twin, 409, new RegExp(`\\b${held.port}\\b`))
    },
  )

  await t.test('PUT cannot change the id; PUT and DELETE of unknown ids: 404', async (t) => {
    const target = await echoServer(t)
    const created = await relay.api<ProxyView>('POST', '/v1/server/proxies', tcpProfile('p1', 0, target))
    assert.equal(created.status, 201)
    assertError(
      await relay.api('PUT', '/v1/server/proxies/p1', tcpProfile('p2', 0, target)),
      400,
      /body\/id cannot change/,
    )
    assertError(await relay.api('PUT', '/v1/server/proxies/nope', tcpProfile('nope', 0, target)), 404, /nope/)
    assertError(await relay.api('GET', '/v1/server/proxies/nope'), 404, /nope/)
    assertError(await relay.api('DELETE', '/v1/server/proxies/nope'), 404, /nope/)
    assertError(await relay.api('POST', '/v1/server/proxies', tcpProfile('p1', 0, target)), 409, /p1/)
    const ids = (await listProxies(relay)).map((p) => p.id)
    assert.ok(ids.includes('p1') && !ids.includes('p2'), ids.join())
  })

  await t.test('DELETE: 204 and the port is free again', async (t) => {
    const target = await echoServer(t)
    const port = await freePort()
    const created = await relay.api<ProxyView>('POST', '/v1/server/proxies', tcpProfile('gone', port, target))
    assert.equal(created.status, 201)
    assert.equal(created.body.status.listening, true)
    assert.equal(created.body.status.port, port)
    assert.equal(await echoThrough(port, 'through the proxy'), 'through the proxy')

    const deleted = await relay.api('DELETE', '/v1/server/proxies/gone')
    assert.equal(deleted.status, 204)
    assert.equal(deleted.body, undefined)
    assert.equal(await connectError(port), 'ECONNREFUSED')
    await holdPort(t, port) // binds: the relay let the port go
    assertError(await relay.api('GET', '/v1/server/proxies/gone'), 404)
    assert.ok(!(await listProxies(relay)).some((p) => p.id === 'gone'))
  })
})

test('profiles persist across a relay restart and their listeners come back', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'tether-proxies-'))
  t.after(() => rm(dataDir, { recursive: true, force: true }))
  const target = await echoServer(t)
  const port = await freePort()

  const first = await startTestRelay(t, {}, dataDir)
  const created = await first.api<ProxyView>('POST', '/v1/server/proxies', tcpProfile('kept', port, target))
  assert.equal(created.status, 201)
  const off = await first.api('POST', '/v1/server/proxies', tcpProfile('off', 0, target, { enabled: false }))
  assert.equal(off.status, 201)
  assert.equal(await echoThrough(port, 'first life'), 'first life')
  await first.relay.close()
  assert.equal(await connectError(port), 'ECONNREFUSED')

  const second = await startTestRelay(t, {}, dataDir)
  const listed = await listProxies(second)
  assert.deepEqual(
    listed.map((p) => [p.id, p.enabled, p.status.listening]),
    [
      ['kept', true, true],
      ['off', false, false],
    ],
  )
  const kept = listed[0]!
  assert.equal(kept.status.port, port)
  assert.deepEqual(kept.target, created.body.target)
  assert.equal(await echoThrough(port, 'second life'), 'second life')
  await second.relay.close()
})
