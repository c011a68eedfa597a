/**
 * Garbage on the IoTMP endpoint: raw WebSocket clients send malformed, oversized and out-of-order input to
 * the real relay. Each must get ERROR {code, message} and/or a close with the right code, the process must
 * keep serving, and a good agent connected beside them must keep its link and its tunnels.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import net from 'node:net'
import { test } from 'node:test'
import WebSocket from 'ws'
import { decodeFrame } from '../../protocol/codec/decode.ts'
import { encodeMessage } from '../../protocol/codec/encode.ts'
import {
  IOTMP_SUBPROTOCOL,
  type Message,
  MessageType,
  PROTOCOL_VERSION,
  WireErrorCode,
} from '../../protocol/messages.ts'
import {
  connect,
  createAgentDevice,
  createTcpProxy,
  echoServer,
  eventually,
  readAll,
  startTestAgent,
  startTestRelay,
  type TestRelay,
} from './harness.ts'

const MiB = 1024 * 1024
/** WebSocket close codes the relay uses (RFC 6455). */
const PROTOCOL_ERROR = 1002
const POLICY = 1008
const TOO_BIG = 1009

interface Closed {
  code: number
  reason: string
}

/** A raw IoTMP client: frames decoded as they come, close code and reason recorded. */
interface RawClient {
  ws: WebSocket
  /** The next frame from the relay (in order; frames already received are not lost). */
  next(): Promise<Message>
  send(msg: Message): void
  closed: Promise<Closed>
}

function watch(ws: WebSocket): RawClient {
  const frames: Message[] = []
  const waiters: Array<(msg: Message) => void> = []
  ws.on('message', (data: Buffer) => {
    const msg = decodeFrame(data, 16 * MiB)
    if (msg.type === MessageType.DESCRIBE) {
      // The relay asks every agent to describe itself once connected: answer like a real agent.
      const payload = { version: 'bad-input-test', allow: [], refusals: 0 }
      ws.send(encodeMessage({ type: MessageType.OK, streamId: msg.streamId, payload }))
      return
    }
    const waiter = waiters.shift()
    if (waiter) waiter(msg)
    else frames.push(msg)
  })
  ws.on('error', () => {}) // the close event carries the outcome
  const closed = new Promise<Closed>((resolve) =>
    ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })),
  )
  return {
    ws,
    closed,
    next: () => {
      const msg = frames.shift()
      if (msg) return Promise.resolve(msg)
      return new Promise<Message>((resolve, reject) => {
        waiters.push(resolve)
        void closed.then((c) =>
          reject(new Error(`socket closed (${c.code} ${c.reason}) before a frame came`)),
        )
      })
    },
    send: (msg) => ws.send(encodeMessage(msg)),
  }
}

/** Opens a raw WebSocket to the relay's IoTMP endpoint with the IoTMP subprotocol. */
async function rawClient(relay: TestRelay): Promise<RawClient> {
  const ws = new WebSocket(relay.relay.iotmpUrl, IOTMP_SUBPROTOCOL, { perMessageDeflate: false })
  const client = watch(ws)
  await once(ws, 'open')
  return client
}

/** Asserts the next frame is ERROR `code` (on `streamId`), then that the relay closed with `closeCode`. */
async function expectErrorAndClose(
  client: RawClient,
  code: number,
  closeCode: number,
  streamId = 0,
): Promise<Message> {
  const msg = await client.next()
  assert.equal(msg.type, MessageType.ERROR, `expected ERROR, got ${JSON.stringify(msg)}`)
  assert.equal(msg.streamId, streamId)
  const params = msg.params as { code: number; message: string }
  assert.equal(params.code, code, `ERROR code (message: ${params.message})`)
  assert.equal(typeof params.message, 'string')
  assert.ok(params.message.length > 0)
  const closed = await client.closed
  assert.equal(closed.code, closeCode, `close code (reason: ${closed.reason})`)
  return msg
}

function connectMsg(
  user: string,
  device: string,
  credential: string,
  ka: number = 60,
  streamId = 1,
): Message {
  return {
    type: MessageType.CONNECT,
    streamId,
    params: { pv: PROTOCOL_VERSION, ka, agent: 'bad-input-test' },
    payload: [user, device, credential],
  }
}

let deviceSeq = 0
/** A fresh agent device and its credential (unique names, so cases can run side by side). */
async function freshDevice(
  relay: TestRelay,
  prefix: string,
): Promise<{ device: string; credential: string }> {
  const device = `${prefix}-${++deviceSeq}`
  return { device, credential: await createAgentDevice(relay, device) }
}

/** A raw client that completed CONNECT as a real device. */
async function connectedFake(relay: TestRelay, device: string, credential: string): Promise<RawClient> {
  const client = await rawClient(relay)
  client.send(connectMsg('admin', device, credential))
  const ok = await client.next()
  assert.equal(ok.type, MessageType.OK, `CONNECT refused: ${JSON.stringify(ok.params)}`)
  assert.equal(ok.streamId, 1)
  const params = ok.params as { ka: number; maxFrame: number; window: number }
  assert.equal(params.ka, 60)
  assert.equal(params.maxFrame, MiB)
  assert.ok(params.window >= 1024)
  return client
}

/** Random bytes the decoder cannot take (re-drawn in the rare case they form a valid message). */
function garbage(size: number): Buffer {
  for (;;) {
    const bytes = randomBytes(size)
    try {
      decodeFrame(bytes, MiB)
    } catch (err) {
      if ((err as { wireCode?: number }).wireCode === WireErrorCode.BAD_ENCODING) return bytes
    }
  }
}

/** The relay still answers HTTP and accepts a fresh, valid CONNECT. */
async function assertRelayServes(relay: TestRelay): Promise<void> {
  const health = await fetch(`${relay.relay.url}/healthz`)
  assert.equal(health.status, 200)
  assert.equal(((await health.json()) as { status: string }).status, 'ok')
  const { device, credential } = await freshDevice(relay, 'after')
  const client = await connectedFake(relay, device, credential)
  client.ws.close()
  await client.closed
}

type Case = { name: string; run: (relay: TestRelay) => Promise<void> }

const cases: Case[] = [
  {
    name: 'random bytes: ERROR 4 (bad encoding), close 1002',
    run: async (relay) => {
      const client = await rawClient(relay)
      client.ws.send(garbage(512))
      await expectErrorAndClose(client, WireErrorCode.BAD_ENCODING, PROTOCOL_ERROR)
    },
  },
  {
    name: 'truncated msgpack: ERROR 4, close 1002',
    run: async (relay) => {
      const client = await rawClient(relay)
      const full = encodeMessage(connectMsg('admin', 'gw', 'some-credential'))
      client.ws.send(full.subarray(0, full.length - 6))
      const msg = await expectErrorAndClose(client, WireErrorCode.BAD_ENCODING, PROTOCOL_ERROR)
      assert.match((msg.params as { message: string }).message, /malformed frame/)
    },
  },
  {
    name: 'frame above the 1 MiB cap: ERROR 4 naming the cap, close 1009',
    run: async (relay) => {
      const client = await rawClient(relay)
      const big = encodeMessage({
        type: MessageType.KEEP_ALIVE,
        streamId: 0,
        payload: Buffer.alloc(MiB + 512 * 1024),
      })
      client.ws.send(big)
      const msg = await expectErrorAndClose(client, WireErrorCode.BAD_ENCODING, TOO_BIG)
      assert.match((msg.params as { message: string }).message, new RegExp(`${MiB}-byte cap`))
    },
  },
  {
    name: 'frame above 2 MiB: cut by ws itself with close 1009',
    run: async (relay) => {
      const client = await rawClient(relay)
      client.ws.send(Buffer.alloc(2 * MiB + 1024))
      const closed = await client.closed
      assert.equal(closed.code, TOO_BIG)
    },
  },
  {
    name: 'unknown message type 99: ERROR 4 naming the type, close 1002',
    run: async (relay) => {
      const client = await rawClient(relay)
      client.send({ type: 99 as MessageType, streamId: 0 })
      const msg = await expectErrorAndClose(client, WireErrorCode.BAD_ENCODING, PROTOCOL_ERROR)
      assert.match((msg.params as { message: string }).message, /unknown message type 99/)
    },
  },
  {
    name: 'text frame: ERROR 4, close 1002',
    run: async (relay) => {
      const client = await rawClient(relay)
      client.ws.send('{"type":"CONNECT","user":"admin"}')
      await expectErrorAndClose(client, WireErrorCode.BAD_ENCODING, PROTOCOL_ERROR)
    },
  },
  {
    name: 'KEEP_ALIVE before CONNECT: ERROR 10, close 1008',
    run: async (relay) => {
      const client = await rawClient(relay)
      client.send({ type: MessageType.KEEP_ALIVE, streamId: 0 })
      const msg = await expectErrorAndClose(client, WireErrorCode.PROTOCOL_VIOLATION, POLICY)
      assert.match((msg.params as { message: string }).message, /CONNECT must come first/)
    },
  },
  {
    name: 'CONNECT twice: ERROR 10, close 1008',
    run: async (relay) => {
      const { device, credential } = await freshDevice(relay, 'twice')
      const client = await connectedFake(relay, device, credential)
      client.send(connectMsg('admin', device, credential, 60, 3))
      await expectErrorAndClose(client, WireErrorCode.PROTOCOL_VIOLATION, POLICY)
    },
  },
  {
    name: 'wrong credential and unknown device: the same ERROR 2, close 1008 (no enumeration)',
    run: async (relay) => {
      const { device } = await freshDevice(relay, 'cred')
      const wrong = await rawClient(relay)
      wrong.send(connectMsg('admin', device, 'not-the-credential'))
      const a = await expectErrorAndClose(wrong, WireErrorCode.BAD_CREDENTIALS, POLICY, 1)
      const unknown = await rawClient(relay)
      unknown.send(connectMsg('admin', 'no-such-device', 'not-the-credential'))
      const b = await expectErrorAndClose(unknown, WireErrorCode.BAD_CREDENTIALS, POLICY, 1)
      assert.deepEqual(b.params, a.params)
      const otherUser = await rawClient(relay)
      otherUser.send(connectMsg('nobody', device, 'not-the-credential'))
      const c = await expectErrorAndClose(otherUser, WireErrorCode.BAD_CREDENTIALS, POLICY, 1)
      assert.deepEqual(c.params, a.params)
    },
  },
  {
    name: 'keep-alive 0 and 5000: ERROR 3, close 1008',
    run: async (relay) => {
      const { device, credential } = await freshDevice(relay, 'ka')
      for (const ka of [0, 5000]) {
        const client = await rawClient(relay)
        client.send(connectMsg('admin', device, credential, ka))
        await expectErrorAndClose(client, WireErrorCode.INVALID_KEEP_ALIVE, POLICY, 1)
      }
      assert.equal(relay.relay.hub.get('admin', device), undefined)
    },
  },
  {
    name: 'disabled device: ERROR 5, close 1008',
    run: async (relay) => {
      const { device, credential } = await freshDevice(relay, 'off')
      const patched = await relay.api('PATCH', `/v1/users/admin/devices/${device}`, { enabled: false })
      assert.equal(patched.status, 200)
      const client = await rawClient(relay)
      client.send(connectMsg('admin', device, credential))
      await expectErrorAndClose(client, WireErrorCode.DEVICE_DISABLED, POLICY, 1)
    },
  },
  {
    name: 'START_STREAM with an even (relay-side) id from the agent: ERROR 10, close 1008',
    run: async (relay) => {
      const { device, credential } = await freshDevice(relay, 'parity')
      const client = await connectedFake(relay, device, credential)
      client.send({
        type: MessageType.START_STREAM,
        streamId: 4,
        resource: '$proxy/x',
        params: { protocol: 'tcp', address: '127.0.0.1', port: 80, window: 65536 },
      })
      const msg = await expectErrorAndClose(client, WireErrorCode.PROTOCOL_VIOLATION, POLICY)
      assert.match((msg.params as { message: string }).message, /wrong parity/)
    },
  },
  {
    name: 'no subprotocol: the relay closes with 1002',
    run: async (relay) => {
      const ws = new WebSocket(relay.relay.iotmpUrl, { perMessageDeflate: false })
      const client = watch(ws)
      const closed = await client.closed
      assert.equal(closed.code, PROTOCOL_ERROR)
      assert.match(closed.reason, /subprotocol iotmp\.msgpack\.v1 required/)
    },
  },
  {
    name: 'wrong subprotocol: the handshake fails and the connection is closed',
    run: async (relay) => {
      const ws = new WebSocket(relay.relay.iotmpUrl, 'mqtt', { perMessageDeflate: false })
      const error = once(ws, 'error')
      const client = watch(ws)
      const [err] = (await error) as [Error]
      assert.match(err.message, /subprotocol/i)
      const closed = await client.closed
      assert.equal(closed.code, 1006)
    },
  },
  {
    name: 'WebSocket upgrade on another path: 404',
    run: async (relay) => {
      const url = `${relay.relay.url.replace(/^http/, 'ws')}/not-iotmp`
      const ws = new WebSocket(url, IOTMP_SUBPROTOCOL, { perMessageDeflate: false })
      ws.on('error', () => {})
      const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage]
      assert.equal(res.statusCode, 404)
      res.resume()
      ws.terminate()
    },
  },
  {
    name: 'a second connection for the same device replaces the first (ERROR 6, close 1008)',
    run: async (relay) => {
      const { device, credential } = await freshDevice(relay, 'twin')
      const first = await connectedFake(relay, device, credential)
      const firstLink = relay.relay.hub.get('admin', device)
      assert.ok(firstLink)
      const second = await connectedFake(relay, device, credential)
      const msg = await expectErrorAndClose(first, WireErrorCode.REPLACED, POLICY)
      assert.match((msg.params as { message: string }).message, /replaced/)
      // The newer link is the live one and still works: KEEP_ALIVE is echoed.
      const link = relay.relay.hub.get('admin', device)
      assert.ok(link && link !== firstLink && link.session.isOpen)
      second.send({ type: MessageType.KEEP_ALIVE, streamId: 0 })
      assert.equal((await second.next()).type, MessageType.KEEP_ALIVE)
      second.ws.close()
      await second.closed
    },
  },
]

test('bad input on /iotmp: each case answered, the relay keeps serving', async (t) => {
  const relay = await startTestRelay(t)
  for (const c of cases) {
    await t.test(c.name, async () => {
      await c.run(relay)
      const health = await fetch(`${relay.relay.url}/healthz`)
      assert.equal(health.status, 200)
    })
  }
  await assertRelayServes(relay)

  await t.test(
    'START_STREAM from an agent: the relay accepts none, answers ERROR 11 each time, keeps the link',
    async () => {
      const { device, credential } = await freshDevice(relay, 'agentstream')
      const client = await connectedFake(relay, device, credential)
      try {
        const start: Message = {
          type: MessageType.START_STREAM,
          streamId: 7,
          resource: '$proxy/x',
          params: { protocol: 'tcp', address: '127.0.0.1', port: 80, window: 65536 },
        }
        // The same odd id twice: the first refusal released it, so the second is a new request, not a duplicate.
        for (let i = 0; i < 2; i++) {
          client.send(start)
          const answer = await client.next()
          assert.equal(answer.type, MessageType.ERROR)
          assert.equal(answer.streamId, 7)
          assert.equal((answer.params as { code: number }).code, WireErrorCode.UNKNOWN_RESOURCE)
        }
        // The relay echoes KEEP_ALIVE at once: the link is still up.
        client.send({ type: MessageType.KEEP_ALIVE, streamId: 0 })
        assert.equal((await client.next()).type, MessageType.KEEP_ALIVE)
      } finally {
        client.ws.terminate()
      }
    },
  )

  await t.test('an agent that leaves while its CONNECT is being checked leaves no link behind', async () => {
    const { device, credential } = await freshDevice(relay, 'gone')
    const client = await rawClient(relay)
    client.send(connectMsg('admin', device, credential))
    client.ws.terminate() // gone before the (scrypt) credential check completes
    await client.closed
    // Nothing may ever register this device: give the credential check ample time to finish.
    const stale = await eventually(() => relay.relay.hub.get('admin', device), 1000, 'a link').catch(
      () => undefined,
    )
    assert.equal(stale, undefined, 'the hub holds a link whose session is closed')
    const view = await relay.api<{ connection: { active: boolean } }>(
      'GET',
      `/v1/users/admin/devices/${device}`,
    )
    assert.equal(view.body.connection.active, false)
    const health = await relay.api<{ agents: number }>('GET', '/healthz')
    assert.equal(health.body.agents, 0)
  })
})

test('a good agent keeps its link and its tunnel through all of the garbage', async (t) => {
  const relay = await startTestRelay(t)
  const target = await echoServer(t)
  const credential = await createAgentDevice(relay, 'gw')
  const { agent } = await startTestAgent(t, {
    relay: relay.relay.iotmpUrl,
    device: 'gw',
    credential,
    allow: [`127.0.0.1:${target}`],
  })
  const session = await agent.connected()
  let reconnects = 0
  agent.link.on('disconnected', () => reconnects++)
  const relaySide = relay.relay.hub.get('admin', 'gw')
  assert.ok(relaySide)
  const port = await createTcpProxy(relay, 'echo', { device: 'gw', address: '127.0.0.1', port: target })

  // Every case at once, while a tunnel is open through the good agent.
  const socket = await connect(port)
  const reply = readAll(socket)
  socket.write('before the garbage; ')
  await Promise.all(cases.map((c) => c.run(relay)))
  socket.end('after the garbage')
  const { data, ended } = await reply
  assert.equal(data.toString(), 'before the garbage; after the garbage')
  assert.equal(ended, true)

  assert.equal(reconnects, 0)
  assert.equal(agent.link.session, session)
  assert.ok(session.isOpen)
  assert.equal(relay.relay.hub.get('admin', 'gw'), relaySide)
  assert.ok(relaySide.session.isOpen)

  // A fresh tunnel through the same link still echoes.
  const again = await connect(port)
  const echoed = readAll(again)
  again.end('still here')
  assert.equal((await echoed).data.toString(), 'still here')
  await assertRelayServes(relay)
})

test('a TCP client that never sends a byte does not hold up the relay shutdown', async (t) => {
  const relay = await startTestRelay(t)
  const silent = net.connect({ host: '127.0.0.1', port: relay.relay.port })
  silent.on('error', () => {})
  await once(silent, 'connect')
  const closing = relay.relay.close()
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<'stuck'>((resolve) => {
    timer = setTimeout(() => resolve('stuck'), 1000)
  })
  try {
    assert.equal(await Promise.race([closing.then(() => 'closed' as const), limit]), 'closed')
  } finally {
    clearTimeout(timer)
    silent.destroy() // releases a stuck close, so the teardown finishes
    await closing
  }
})
