/** Devices API on a real relay: CRUD and validation, connection status and link statistics of a real agent. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { test } from 'node:test'
import WebSocket from 'ws'
import { decodeFrame } from '../../protocol/codec/decode.ts'
import { encodeMessage } from '../../protocol/codec/encode.ts'
import { IOTMP_SUBPROTOCOL, MessageType, PROTOCOL_VERSION } from '../../protocol/messages.ts'
import { eventually, startTestAgent, startTestRelay, type TestRelay } from '../e2e/harness.ts'

interface DeviceView {
  device: string
  user: string
  type: string
  name: string
  description: string
  enabled: boolean
  created_ts: number
  connection: { active: boolean; ts?: number }
  credential?: string
}

interface DeviceStats {
  connected: boolean
  connected_ts?: number
  disconnected_ts?: number
  ip_address?: string
  rx_bytes: number
  tx_bytes: number
}

interface ErrorBody {
  error: { code: string; message: string }
}

/** Asserts an error answer: status, `{error: {code, message}}`, and that the message matches. */
function assertError(res: { status: number; body: unknown }, status: number, message?: RegExp): void {
  assert.equal(res.status, status, JSON.stringify(res.body))
  const { error } = res.body as ErrorBody
  assert.equal(typeof error?.code, 'string')
  assert.equal(typeof error?.message, 'string')
  if (message) assert.match(error.message, message)
}

/** No stored secret ever leaves the API, whatever the field is called. */
function assertNoSecrets(view: object): void {
  assert.equal('credential' in view, false, JSON.stringify(view))
  assert.equal('credentialHash' in view, false, JSON.stringify(view))
}

/** One user's devices, managed with the admin token: each subtest gets its own user, so lists are its own. */
interface Scope {
  user: string
  /** `/v1/users/<user>/devices` */
  path: string
  get(device: string): Promise<{ status: number; body: DeviceView }>
  stats(device: string): Promise<{ status: number; body: DeviceStats }>
}

async function userScope(relay: TestRelay, user: string): Promise<Scope> {
  const created = await relay.api('POST', '/v1/users', { username: user, password: `password-of-${user}` })
  assert.equal(created.status, 201, JSON.stringify(created.body))
  const path = `/v1/users/${user}/devices`
  return {
    user,
    path,
    get: (device) => relay.api<DeviceView>('GET', `${path}/${device}`),
    stats: (device) => relay.api<DeviceStats>('GET', `/v3/users/${user}/devices/${device}/stats`),
  }
}

test('devices API on one relay', async (t) => {
  const relay = await startTestRelay(t)

  await t.test('create shows the credential once; reads never show it', async () => {
    const u = await userScope(relay, 'crud')
    const before = Date.now()
    const created = await relay.api<DeviceView>('POST', u.path, {
      device: 'gw',
      type: 'agent',
      name: 'Gateway',
      description: 'lab bench',
    })
    assert.equal(created.status, 201)
    assert.equal(typeof created.body.credential, 'string')
    assert.ok(created.body.credential!.length >= 16)
    assert.equal('credentialHash' in created.body, false)
    assert.equal(created.body.device, 'gw')
    assert.equal(created.body.user, u.user)
    assert.equal(created.body.type, 'agent')
    assert.equal(created.body.name, 'Gateway')
    assert.equal(created.body.description, 'lab bench')
    assert.equal(created.body.enabled, true)
    assert.ok(created.body.created_ts >= before && created.body.created_ts <= Date.now())
    assert.deepEqual(created.body.connection, { active: false })

    // Defaults, and a credential chosen by the caller.
    const own = await relay.api<DeviceView>('POST', u.path, {
      device: 'own-cred',
      type: 'agent',
      credential: 'my-own-credential',
    })
    assert.equal(own.status, 201)
    assert.equal(own.body.credential, 'my-own-credential')
    assert.equal(own.body.name, 'own-cred')
    assert.equal(own.body.description, '')

    const one = await u.get('gw')
    assert.equal(one.status, 200)
    assertNoSecrets(one.body)
    assert.equal(one.body.name, 'Gateway')

    const list = await relay.api<DeviceView[]>('GET', u.path)
    assert.equal(list.status, 200)
    assert.deepEqual(
      list.body.map((d) => d.device),
      ['gw', 'own-cred'],
    )
    for (const view of list.body) assertNoSecrets(view)
  })

  await t.test('duplicate, invalid and unknown-field bodies', async () => {
    const u = await userScope(relay, 'invalid')
    assert.equal((await relay.api('POST', u.path, { device: 'gw', type: 'agent' })).status, 201)

    assertError(await relay.api('POST', u.path, { device: 'gw', type: 'agent' }), 409, /gw/)

    for (const device of ['bad id!', '', 'x'.repeat(65), 'a/b']) {
      assertError(await relay.api('POST', u.path, { device, type: 'agent' }), 400, /body\/device/)
    }
    assertError(await relay.api('POST', u.path, { type: 'agent' }), 400, /^body\/device is required$/)
    assertError(await relay.api('POST', u.path, { device: 'gw2' }), 400, /^body\/type is required$/)
    assertError(await relay.api('POST', u.path, { device: 'gw2', type: 'toaster' }), 400, /body\/type/)
    assertError(
      await relay.api('POST', u.path, { device: 'gw2', type: 'agent', credential: 'short' }),
      400,
      /body\/credential/,
    )
    assertError(
      await relay.api('POST', u.path, { device: 'gw2', type: 'agent', name: 'n'.repeat(200) }),
      400,
      /body\/name/,
    )
    assertError(
      await relay.api('POST', u.path, { device: 'gw2', type: 'agent', colour: 'red' }),
      400,
      /^body\/colour is not a known field$/,
    )
    assertError(
      await relay.api('PATCH', `${u.path}/gw`, { colour: 'red' }),
      400,
      /^body\/colour is not a known field$/,
    )
    assertError(await relay.api('PATCH', `${u.path}/gw`, { enabled: 'maybe' }), 400, /body\/enabled/)
    assertError(await relay.api('PATCH', `${u.path}/gw`, { credential: 'short' }), 400, /body\/credential/)

    // Nothing was created or changed by the refused requests.
    const list = await relay.api<DeviceView[]>('GET', u.path)
    assert.deepEqual(
      list.body.map((d) => [d.device, d.enabled]),
      [['gw', true]],
    )
  })

  await t.test('PATCH and DELETE; 404 for unknown devices', async () => {
    const u = await userScope(relay, 'patch')
    assert.equal((await relay.api('POST', u.path, { device: 'gw', type: 'agent' })).status, 201)

    const patched = await relay.api<DeviceView>('PATCH', `${u.path}/gw`, {
      name: 'Renamed',
      description: 'moved to the roof',
      enabled: false,
    })
    assert.equal(patched.status, 200)
    assertNoSecrets(patched.body)
    assert.equal(patched.body.name, 'Renamed')
    assert.equal(patched.body.description, 'moved to the roof')
    assert.equal(patched.body.enabled, false)
    const read = await u.get('gw')
    assert.equal(read.body.name, 'Renamed')
    assert.equal(read.body.enabled, false)

    // An empty PATCH changes nothing.
    const same = await relay.api<DeviceView>('PATCH', `${u.path}/gw`, {})
    assert.equal(same.status, 200)
    assert.equal(same.body.name, 'Renamed')

    assertError(await u.get('nope'), 404, /nope/)
    assertError(await relay.api('PATCH', `${u.path}/nope`, { name: 'x' }), 404, /nope/)
    assertError(await relay.api('DELETE', `${u.path}/nope`), 404, /nope/)
    assertError(await u.stats('nope'), 404, /nope/)

    const deleted = await relay.api('DELETE', `${u.path}/gw`)
    assert.equal(deleted.status, 204)
    assert.equal(deleted.body, undefined)
    assertError(await u.get('gw'), 404)
    assertError(await relay.api('DELETE', `${u.path}/gw`), 404)
    assert.deepEqual((await relay.api('GET', u.path)).body, [])

    // The id is free again.
    assert.equal((await relay.api('POST', u.path, { device: 'gw', type: 'agent' })).status, 201)
  })

  await t.test(
    'connection status and stats follow a real agent, and keep the last session after it leaves',
    async (t) => {
      const u = await userScope(relay, 'live')
      const created = await relay.api<DeviceView>('POST', u.path, { device: 'gw', type: 'agent' })
      const before = Date.now()
      const { agent } = await startTestAgent(t, {
        relay: relay.relay.iotmpUrl,
        user: u.user,
        device: 'gw',
        credential: created.body.credential!,
      })
      await agent.connected()

      const live = await u.get('gw')
      assert.equal(live.status, 200)
      assert.equal(live.body.connection.active, true)
      assert.ok(live.body.connection.ts! >= before && live.body.connection.ts! <= Date.now())
      const listed = await relay.api<DeviceView[]>('GET', u.path)
      assert.equal(listed.body[0]?.connection.active, true)

      const stats = await u.stats('gw')
      assert.equal(stats.status, 200)
      assert.equal(stats.body.connected, true)
      assert.equal(stats.body.ip_address, '127.0.0.1')
      assert.equal(stats.body.connected_ts, live.body.connection.ts)
      assert.ok(stats.body.rx_bytes > 0, 'rx bytes while connected')
      assert.ok(stats.body.tx_bytes > 0, 'tx bytes while connected')

      const stoppedAt = Date.now()
      await agent.stop()
      await eventually(
        async () => (await u.get('gw')).body.connection.active === false,
        5000,
        'connection.active false',
      )
      assert.equal(relay.relay.hub.get(u.user, 'gw'), undefined)

      // The last session's figures are written once the link is gone.
      const last = (await eventually(
        async () => {
          const res = await u.stats('gw')
          return res.body.disconnected_ts ? res : undefined
        },
        5000,
        'last session statistics',
      ))!
      assert.equal(last.body.connected, false)
      assert.equal(last.body.ip_address, '127.0.0.1')
      assert.equal(last.body.connected_ts, stats.body.connected_ts)
      assert.ok(last.body.disconnected_ts! >= stoppedAt)
      assert.ok(last.body.rx_bytes >= stats.body.rx_bytes && last.body.rx_bytes > 0)
      assert.ok(last.body.tx_bytes >= stats.body.tx_bytes && last.body.tx_bytes > 0)
      const after = await u.get('gw')
      assert.equal(after.body.connection.ts, last.body.disconnected_ts)
    },
  )

  await t.test('disabling or deleting a connected device ends its link', async (t) => {
    const u = await userScope(relay, 'kick')
    for (const device of ['off', 'del']) {
      const created = await relay.api<DeviceView>('POST', u.path, { device, type: 'agent' })
      const { agent } = await startTestAgent(t, {
        relay: relay.relay.iotmpUrl,
        user: u.user,
        device,
        credential: created.body.credential!,
      })
      const session = await agent.connected()
      const closed = once(session, 'close') as Promise<[{ reason: string; wireCode?: number }]>
      if (device === 'off') {
        assert.equal((await relay.api('PATCH', `${u.path}/off`, { enabled: false })).status, 200)
      } else {
        assert.equal((await relay.api('DELETE', `${u.path}/del`)).status, 204)
      }
      const [info] = await closed
      assert.equal(info.wireCode, device === 'off' ? 5 : 2, info.reason)
      assert.equal(relay.relay.hub.get(u.user, device), undefined)
      await agent.stop()
    }
    const off = await u.get('off')
    assert.equal(off.body.connection.active, false)
    assert.equal(off.body.enabled, false)
  })

  await t.test(
    'GET of a device answers promptly even when its agent is slow to answer DESCRIBE',
    async (t) => {
      const u = await userScope(relay, 'slow')
      const created = await relay.api<DeviceView>('POST', u.path, { device: 'slow', type: 'agent' })
      // A raw agent on a slow link: it completes CONNECT, then answers DESCRIBE only after 600 ms.
      const ws = new WebSocket(relay.relay.iotmpUrl, IOTMP_SUBPROTOCOL, { perMessageDeflate: false })
      ws.on('error', () => {})
      const timers = new Set<NodeJS.Timeout>()
      t.after(() => {
        for (const timer of timers) clearTimeout(timer)
        ws.terminate()
      })
      await once(ws, 'open')
      const connected = new Promise<number>((resolve) =>
        ws.on('message', (data: Buffer) => {
          const msg = decodeFrame(data, 1 << 24)
          if (msg.streamId === 1) resolve(msg.type)
          if (msg.type !== MessageType.DESCRIBE) return
          const payload = { version: 'slow-agent', allow: [], refusals: 0 }
          const reply = encodeMessage({ type: MessageType.OK, streamId: msg.streamId, payload })
          timers.add(setTimeout(() => ws.send(reply), 600))
        }),
      )
      ws.send(
        encodeMessage({
          type: MessageType.CONNECT,
          streamId: 1,
          params: { pv: PROTOCOL_VERSION, ka: 60 },
          payload: [u.user, 'slow', created.body.credential!],
        }),
      )
      assert.equal(await connected, MessageType.OK)

      const started = Date.now()
      const res = await u.get('slow')
      const elapsedMs = Date.now() - started
      assert.equal(res.status, 200)
      assert.equal(res.body.connection.active, true)
      // The device list does not ask the agent; a single device should not either (or only with a short bound).
      assert.ok(elapsedMs < 300, `GET took ${elapsedMs} ms: it waited for the agent's DESCRIBE answer`)
    },
  )
})

test('a value outside a list of allowed literals is answered with the allowed values', async (t) => {
  const relay = await startTestRelay(t)
  const res = await relay.api<{ error: { message: string } }>('POST', '/v1/users/admin/devices', {
    device: 'd',
    type: 'router',
  })
  assert.equal(res.status, 400)
  assert.equal(res.body.error.message, 'body/type must be one of "agent", "http", "integration"')
})
