/**
 * Session over the in-memory channelPair (no ports): CONNECT handshake, RUN/DESCRIBE, link faults,
 * keep-alive deadline (mock timers) and multiplexed streams with flow control.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { describe, it, type TestContext } from 'node:test'
import { pino } from 'pino'
import { channelPair, type MessageChannel } from '../../protocol/channel.ts'
import { decodeFrame } from '../../protocol/codec/decode.ts'
import { encodeMessage, encodeStreamData } from '../../protocol/codec/encode.ts'
import { protocolError, RemoteError } from '../../protocol/errors.ts'
import {
  type ConnectOkParams,
  DEFAULT_WINDOW_BYTES,
  KEEP_ALIVE_GRACE,
  MAX_FRAME_BYTES,
  MAX_WINDOW_BYTES,
  type Message,
  MessageType,
  type StartStreamParams,
  WireErrorCode,
} from '../../protocol/messages.ts'
import {
  CloseCode,
  type CloseInfo,
  CONNECT_WAIT_MS,
  type ConnectRequest,
  type InboundStreamRequest,
  Session,
  type SessionOptions,
} from '../../protocol/session.ts'
import { StreamAbortedError, type TunnelStream } from '../../protocol/tunnel-stream.ts'

const logger = pino({ level: 'silent' })
const OK_PARAMS: ConnectOkParams = { ka: 60, maxFrame: MAX_FRAME_BYTES, window: DEFAULT_WINDOW_BYTES }
const TARGET = { protocol: 'tcp', address: '10.0.0.5', port: 80 } as const
const START_PARAMS: StartStreamParams = { ...TARGET, window: DEFAULT_WINDOW_BYTES }
const MOCKED = { apis: ['setTimeout', 'setInterval', 'Date'] } as const
const noop = () => {}
const never = () => new Promise<never>(noop)

/** Lets the in-memory channel deliver: each round runs one batch of setImmediate callbacks. */
async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve))
}

/** Runs event-loop rounds until `done()` holds; fails after `rounds`. */
async function waitFor(done: () => boolean, what: string | (() => string), rounds = 2000): Promise<void> {
  for (let i = 0; i < rounds && !done(); i++) await new Promise((resolve) => setImmediate(resolve))
  assert.ok(done(), `timed out waiting for ${typeof what === 'function' ? what() : what}`)
}

/** Records (decoded) every frame a session hands to its channel, even ones the peer never gets to see. */
function recordSent(channel: MessageChannel): Message[] {
  const sent: Message[] = []
  const send = channel.send.bind(channel)
  channel.send = (frame: Buffer) => {
    sent.push(decodeFrame(frame, Number.POSITIVE_INFINITY))
    send(frame)
  }
  return sent
}

/** The far end of a channel driven by hand: sends encoded messages or raw bytes, reads decoded ones. */
class RawPeer {
  readonly #inbox: Message[] = []
  readonly #waiters: Array<(msg: Message) => void> = []
  closed?: { code: number; reason: string }

  constructor(readonly channel: MessageChannel) {
    channel.on('frame', (frame: Buffer) => {
      const msg = decodeFrame(frame, Number.POSITIVE_INFINITY)
      const waiter = this.#waiters.shift()
      if (waiter) waiter(msg)
      else this.#inbox.push(msg)
    })
    channel.on('close', (code: number, reason: string) => {
      this.closed = { code, reason }
    })
  }

  send(msg: Message): void {
    this.channel.send(encodeMessage(msg))
  }

  sendRaw(frame: Buffer): void {
    this.channel.send(frame)
  }

  next(): Promise<Message> {
    const msg = this.#inbox.shift()
    return msg ? Promise.resolve(msg) : new Promise((resolve) => this.#waiters.push(resolve))
  }

  get pending(): number {
    return this.#inbox.length
  }
}

function connectMessage(params: Record<string, unknown> = { pv: 1, ka: 60 }): Message {
  return { type: MessageType.CONNECT, streamId: 1, params, payload: ['alice', 'gw', 'secret'] }
}

interface PairOptions {
  ok?: Partial<ConnectOkParams>
  relay?: Partial<SessionOptions>
  agent?: Partial<SessionOptions>
}

/** A relay and an agent Session over channelPair, closed when the test ends. */
function sessions(t: TestContext, opts: PairOptions = {}) {
  const [agentChannel, relayChannel] = channelPair()
  const relay = new Session(relayChannel, {
    role: 'relay',
    logger,
    authenticate: async () => ({ ...OK_PARAMS, ...opts.ok }),
    ...opts.relay,
  })
  const agent = new Session(agentChannel, { role: 'agent', logger, ...opts.agent })
  t.after(() => {
    agent.close('test over')
    relay.close('test over')
  })
  return { agent, relay, agentChannel, relayChannel }
}

async function connected(t: TestContext, opts: PairOptions = {}) {
  const pair = sessions(t, opts)
  await pair.agent.connect('alice', 'gw', 'secret', 60, 'tether-test/1')
  return pair
}

/** An onStartStream that accepts everything and collects the streams (with an error sink attached). */
function acceptInto(streams: TunnelStream[]): (req: InboundStreamRequest) => void {
  return (req) => {
    const stream = req.accept()
    stream.on('error', noop)
    streams.push(stream)
  }
}

async function openStream(agent: Session): Promise<TunnelStream> {
  const stream = await agent.openStream('$proxy/web', TARGET)
  stream.on('error', noop)
  return stream
}

/** A relay Session facing a hand-driven agent. */
function relayWithRawAgent(
  t: TestContext,
  opts: Partial<SessionOptions> = {},
  ok: Partial<ConnectOkParams> = {},
) {
  const [peerChannel, relayChannel] = channelPair()
  const sent = recordSent(relayChannel)
  const relay = new Session(relayChannel, {
    role: 'relay',
    logger,
    authenticate: async () => ({ ...OK_PARAMS, ...ok }),
    ...opts,
  })
  t.after(() => relay.close('test over'))
  return { relay, peer: new RawPeer(peerChannel), sent }
}

async function handshake(peer: RawPeer): Promise<Message> {
  peer.send(connectMessage())
  const reply = await peer.next()
  assert.equal(reply.type, MessageType.OK, JSON.stringify(reply))
  return reply
}

/** An agent Session facing a hand-driven relay; `accept` answers its CONNECT with OK. */
function agentWithRawRelay(t: TestContext, opts: Partial<SessionOptions> = {}) {
  const [agentChannel, peerChannel] = channelPair()
  const agent = new Session(agentChannel, { role: 'agent', logger, ...opts })
  t.after(() => agent.close('test over'))
  const peer = new RawPeer(peerChannel)
  const accept = async (ok: ConnectOkParams = OK_PARAMS) => {
    const connecting = agent.connect('alice', 'gw', 'secret', ok.ka, 'tether-test/1')
    const connect = await peer.next()
    assert.equal(connect.type, MessageType.CONNECT)
    peer.send({ type: MessageType.OK, streamId: connect.streamId, params: { ...ok } })
    return connecting
  }
  return { agent, peer, accept }
}

describe('Session: CONNECT', { timeout: 10_000 }, () => {
  it('the relay authenticates the CONNECT, both sides open and adopt the relay keep-alive', async (t) => {
    const requests: ConnectRequest[] = []
    const opened: { relay: unknown[]; agent: unknown[] } = { relay: [], agent: [] }
    const { agent, relay } = sessions(t, {
      relay: {
        authenticate: async (req) => {
          requests.push(req)
          return { ka: 30, maxFrame: MAX_FRAME_BYTES, window: 65536 }
        },
      },
    })
    relay.on('open', (x) => opened.relay.push(x))
    agent.on('open', (x) => opened.agent.push(x))
    const ok = await agent.connect('alice', 'gw', 'secret', 60, 'tether-test/1')

    assert.deepEqual(ok, { ka: 30, maxFrame: MAX_FRAME_BYTES, window: 65536 })
    assert.deepEqual(requests, [
      {
        user: 'alice',
        device: 'gw',
        credential: 'secret',
        params: { pv: 1, ka: 60, agent: 'tether-test/1', window: DEFAULT_WINDOW_BYTES },
      },
    ])
    assert.deepEqual(relay.peer, requests[0])
    assert.deepEqual(opened, { relay: [requests[0]], agent: [ok] })
    assert.equal(agent.isOpen, true)
    assert.equal(relay.isOpen, true)
    assert.equal(agent.keepAliveSec, 30)
    assert.equal(relay.keepAliveSec, 30)
    assert.ok(agent.txBytes > 0 && agent.rxBytes > 0)
    assert.equal(agent.txBytes, relay.rxBytes)
    assert.equal(relay.txBytes, agent.rxBytes)
  })

  it('a refusal thrown as protocolError(BAD_CREDENTIALS) answers ERROR {code: 2} and closes the relay side', async (t) => {
    const { agent, relay, relayChannel } = sessions(t, {
      relay: {
        authenticate: async () => {
          throw protocolError('TETHER_ERR_BAD_CREDENTIALS')
        },
      },
    })
    const sent = recordSent(relayChannel)
    const relayClosed = once(relay, 'close')
    await assert.rejects(agent.connect('alice', 'gw', 'wrong', 60, 'tether-test/1'))
    const [info] = (await relayClosed) as [CloseInfo]
    assert.deepEqual(info, {
      reason: 'bad credentials',
      wireCode: WireErrorCode.BAD_CREDENTIALS,
      by: 'local',
    })
    assert.deepEqual(sent, [
      { type: MessageType.ERROR, streamId: 1, params: { code: 2, message: 'bad credentials' } },
    ])
    assert.equal(relay.isOpen, false)
    assert.equal(agent.isOpen, false)
  })

  it("a refusal rejects the agent's connect() with RemoteError wireCode 2", async (t) => {
    const { agent } = sessions(t, {
      relay: {
        authenticate: async () => {
          throw protocolError('TETHER_ERR_BAD_CREDENTIALS')
        },
      },
    })
    await assert.rejects(agent.connect('alice', 'gw', 'wrong', 60, 'tether-test/1'), (err: unknown) => {
      assert.ok(err instanceof RemoteError, `got ${String(err)}`)
      assert.equal(err.wireCode, WireErrorCode.BAD_CREDENTIALS)
      assert.equal(err.message, 'bad credentials')
      return true
    })
  })

  it('agent: an ERROR answering CONNECT rejects connect() with RemoteError', async (t) => {
    const { agent, peer } = agentWithRawRelay(t)
    const connecting = agent.connect('alice', 'gw', 'wrong', 60, 'tether-test/1')
    const connect = await peer.next()
    assert.deepEqual(connect, {
      type: MessageType.CONNECT,
      streamId: 1,
      params: { pv: 1, ka: 60, agent: 'tether-test/1', window: DEFAULT_WINDOW_BYTES },
      payload: ['alice', 'gw', 'wrong'],
    })
    peer.send({ type: MessageType.ERROR, streamId: 1, params: { code: 2, message: 'bad credentials' } })
    await assert.rejects(connecting, (err: unknown) => {
      assert.ok(err instanceof RemoteError)
      assert.equal(err.code, 'TETHER_ERR_REMOTE')
      assert.equal(err.wireCode, WireErrorCode.BAD_CREDENTIALS)
      assert.equal(err.message, 'bad credentials')
      return true
    })
    assert.equal(agent.isOpen, false)
  })

  it('agent: a malformed OK answering CONNECT rejects connect()', async (t) => {
    const { agent, peer } = agentWithRawRelay(t)
    const connecting = agent.connect('alice', 'gw', 'secret', 60, 'tether-test/1')
    await peer.next()
    peer.send({ type: MessageType.OK, streamId: 1, params: { ka: 0, maxFrame: 1, window: 1 } })
    await assert.rejects(connecting, { code: 'TETHER_ERR_PROTOCOL', message: /malformed CONNECT reply/ })
  })

  it('a failing authenticate that is not a protocol error answers HANDLER_FAILED without its message', async (t) => {
    const { relay, peer, sent } = relayWithRawAgent(t, {
      authenticate: async () => {
        throw new Error('database password is hunter2')
      },
    })
    const closed = once(relay, 'close')
    peer.send(connectMessage())
    const [info] = (await closed) as [CloseInfo]
    assert.equal(info.wireCode, WireErrorCode.HANDLER_FAILED)
    assert.deepEqual(sent.at(-1), {
      type: MessageType.ERROR,
      streamId: 1,
      params: { code: WireErrorCode.HANDLER_FAILED, message: 'authentication failed' },
    })
  })

  it('a message other than CONNECT first closes the link with wireCode 10', async (t) => {
    const { relay, peer, sent } = relayWithRawAgent(t)
    const closed = once(relay, 'close')
    peer.send({ type: MessageType.RUN, streamId: 1, resource: 'x' })
    const [info] = (await closed) as [CloseInfo]
    assert.equal(info.wireCode, WireErrorCode.PROTOCOL_VIOLATION)
    assert.equal(info.by, 'local')
    assert.match(info.reason, /CONNECT must come first/)
    assert.deepEqual(sent.at(-1)?.params, { code: 10, message: info.reason })
    await settle()
    assert.equal(peer.closed?.code, CloseCode.POLICY)
  })

  it('an agent that sends RUN before connect() gets its link closed by the relay', async (t) => {
    const { agent, relay } = sessions(t)
    const closed = once(relay, 'close')
    const running = agent.run('early')
    const [info] = (await closed) as [CloseInfo]
    assert.equal(info.wireCode, WireErrorCode.PROTOCOL_VIOLATION)
    await assert.rejects(running)
  })

  it('a frame while CONNECT is being authenticated is a protocol violation', async (t) => {
    const { relay, peer } = relayWithRawAgent(t, { authenticate: never })
    const closed = once(relay, 'close')
    peer.send(connectMessage())
    peer.send({ type: MessageType.KEEP_ALIVE, streamId: 0 })
    const [info] = (await closed) as [CloseInfo]
    assert.equal(info.wireCode, WireErrorCode.PROTOCOL_VIOLATION)
    assert.match(info.reason, /before the CONNECT reply/)
  })

  it('a keep-alive outside 1..1800 s is answered ERROR {code: 3}', async (t) => {
    for (const ka of [0, 1801, 1.5]) {
      const { relay, peer, sent } = relayWithRawAgent(t)
      const closed = once(relay, 'close')
      peer.send(connectMessage({ pv: 1, ka }))
      const [info] = (await closed) as [CloseInfo]
      assert.equal(info.wireCode, WireErrorCode.INVALID_KEEP_ALIVE, `ka ${ka}`)
      assert.deepEqual(sent.at(-1), {
        type: MessageType.ERROR,
        streamId: 1,
        params: { code: 3, message: 'keep-alive must be 1..1800 s' },
      })
    }
  })

  it('a CONNECT payload that is not [user, device, credential] closes with BAD_ENCODING', async (t) => {
    const { relay, peer } = relayWithRawAgent(t)
    const closed = once(relay, 'close')
    peer.send({ ...connectMessage(), payload: ['alice', 'gw'] })
    const [info] = (await closed) as [CloseInfo]
    assert.equal(info.wireCode, WireErrorCode.BAD_ENCODING)
    await settle()
    assert.equal(peer.closed?.code, CloseCode.PROTOCOL)
  })

  it('unknown CONNECT params keys are ignored', async (t) => {
    const { relay, peer } = relayWithRawAgent(t)
    peer.send(connectMessage({ pv: 1, ka: 60, future: 'feature', compression: { algo: 'none' } }))
    const reply = await peer.next()
    assert.deepEqual(reply, { type: MessageType.OK, streamId: 1, params: OK_PARAMS })
    assert.equal(relay.isOpen, true)
  })

  it('the relay closes the link when no CONNECT arrives within CONNECT_WAIT_MS', (t) => {
    t.mock.timers.enable(MOCKED)
    const { relay } = relayWithRawAgent(t)
    const closeInfo = () => relay.closeInfo // a getter: read it afresh after each tick
    t.mock.timers.tick(CONNECT_WAIT_MS - 1)
    assert.equal(closeInfo(), undefined)
    t.mock.timers.tick(1)
    assert.equal(closeInfo()?.wireCode, WireErrorCode.PROTOCOL_VIOLATION)
    assert.match(closeInfo()?.reason ?? '', /no CONNECT within 10 s/)
  })

  it('agent: a frame other than OK/ERROR before the CONNECT reply closes the link', async (t) => {
    const { agent, peer } = agentWithRawRelay(t)
    const closed = once(agent, 'close')
    const connecting = agent.connect('alice', 'gw', 'secret', 60, 'tether-test/1')
    await peer.next()
    peer.send({ type: MessageType.RUN, streamId: 2, resource: 'x' })
    const [info] = (await closed) as [CloseInfo]
    assert.equal(info.wireCode, WireErrorCode.PROTOCOL_VIOLATION)
    assert.match(info.reason, /RUN before the CONNECT reply/)
    await assert.rejects(connecting)
  })
})

describe('Session: RUN and DESCRIBE', { timeout: 10_000 }, () => {
  it('RUN resolves with the handler result, in both directions', async (t) => {
    const calls: unknown[][] = []
    const { agent, relay } = await connected(t, {
      relay: {
        onRun: async (resource, payload, params) => {
          calls.push([resource, payload, params])
          return { echoed: payload }
        },
      },
      agent: { onRun: async (resource) => `agent ran ${resource}` },
    })
    assert.deepEqual(await agent.run('$echo', [1, 'two'], { q: 1 }), { echoed: [1, 'two'] })
    assert.deepEqual(calls, [['$echo', [1, 'two'], { q: 1 }]])
    assert.equal(await relay.run('$mqtt/publish'), 'agent ran $mqtt/publish')
  })

  it('a binary payload arrives as bytes', async (t) => {
    const { agent } = await connected(t, {
      relay: { onRun: async (_r, payload) => Buffer.from(payload as Uint8Array).reverse() },
    })
    const reply = (await agent.run('$reverse', Buffer.from([1, 2, 3]))) as Uint8Array
    assert.deepEqual([...reply], [3, 2, 1])
  })

  it('a handler rejecting with a protocol error answers ERROR with its wire code → RemoteError', async (t) => {
    const { agent } = await connected(t, {
      relay: {
        onRun: async () => {
          throw protocolError('TETHER_ERR_DEVICE_DISABLED')
        },
      },
    })
    await assert.rejects(agent.run('$data'), (err: unknown) => {
      assert.ok(err instanceof RemoteError)
      assert.equal(err.wireCode, WireErrorCode.DEVICE_DISABLED)
      assert.equal(err.message, 'device disabled')
      return true
    })
    assert.equal(agent.isOpen, true)
  })

  it('a handler rejecting with a plain Error answers HANDLER_FAILED with its message', async (t) => {
    const { agent } = await connected(t, {
      relay: {
        onRun: async () => {
          throw new Error('broker unavailable')
        },
      },
    })
    await assert.rejects(agent.run('$mqtt/publish'), {
      wireCode: WireErrorCode.HANDLER_FAILED,
      message: 'broker unavailable',
    })
  })

  it('RUN on a side without a handler answers UNKNOWN_RESOURCE', async (t) => {
    const { agent } = await connected(t)
    await assert.rejects(agent.run('$nothing'), {
      name: 'RemoteError',
      wireCode: WireErrorCode.UNKNOWN_RESOURCE,
    })
  })

  it('a RUN with stream id 0 is fire-and-forget: the handler runs, nothing is answered', async (t) => {
    const ran: string[] = []
    const { peer } = relayWithRawAgent(t, {
      onRun: async (resource) => {
        ran.push(resource)
        return 'ignored'
      },
    })
    await handshake(peer)
    peer.send({ type: MessageType.RUN, streamId: 0, resource: '$log' })
    peer.send({ type: MessageType.RUN, streamId: 0, resource: '$unknown-but-silent' })
    peer.send({ type: MessageType.KEEP_ALIVE, streamId: 0 })
    // The keep-alive echo is the next frame: neither RUN was answered.
    assert.deepEqual(await peer.next(), { type: MessageType.KEEP_ALIVE, streamId: 0 })
    await settle()
    assert.equal(peer.pending, 0)
    assert.deepEqual(ran, ['$log', '$unknown-but-silent'])
  })

  it('DESCRIBE returns the peer description, or UNKNOWN_RESOURCE without one', async (t) => {
    const { agent, relay } = await connected(t, {
      agent: { onDescribe: () => ({ version: '0.1.0', allow: ['*:22'] }) },
    })
    assert.deepEqual(await relay.describe(), { version: '0.1.0', allow: ['*:22'] })
    await assert.rejects(agent.describe(), { wireCode: WireErrorCode.UNKNOWN_RESOURCE })
  })

  it('a request without a reply rejects with TETHER_ERR_REQUEST_TIMEOUT and the link stays open', async (t) => {
    const { agent } = await connected(t, { relay: { onRun: never }, agent: { requestTimeoutMs: 50 } })
    const started = Date.now()
    await assert.rejects(agent.run('$slow'), (err: unknown) => {
      assert.ok(!(err instanceof RemoteError))
      const e = err as { code: string; wireCode: number; message: string }
      assert.equal(e.code, 'TETHER_ERR_REQUEST_TIMEOUT')
      assert.equal(e.wireCode, WireErrorCode.REQUEST_TIMEOUT)
      assert.match(e.message, /RUN \$slow got no reply within 50 ms/)
      return true
    })
    assert.ok(Date.now() - started >= 45)
    assert.equal(agent.isOpen, true)
  })

  it('a per-call timeout overrides requestTimeoutMs, and a late reply is ignored', async (t) => {
    let release: (value: string) => void = noop
    const { agent } = await connected(t, {
      relay: {
        onRun: (resource) => {
          if (resource !== '$late') return Promise.resolve('fast')
          return new Promise<string>((resolve) => {
            release = resolve
          })
        },
      },
      agent: { requestTimeoutMs: 60_000 },
    })
    await assert.rejects(agent.run('$late', undefined, undefined, 20), { code: 'TETHER_ERR_REQUEST_TIMEOUT' })
    release('too late')
    await settle()
    assert.equal(agent.isOpen, true)
    assert.equal(await agent.run('$fast'), 'fast')
  })

  it('a RUN result over the peer frame cap is answered with ERROR, not an unhandled rejection', async (t) => {
    // The test runner's own unhandledRejection listener would fail the whole file: swap it out for a capture.
    const unhandled: unknown[] = []
    const capture = (reason: unknown) => unhandled.push(reason)
    const saved = process.listeners('unhandledRejection')
    process.removeAllListeners('unhandledRejection')
    process.on('unhandledRejection', capture)
    try {
      const { agent } = await connected(t, {
        relay: { onRun: async () => Buffer.alloc(MAX_FRAME_BYTES + 1) },
        agent: { requestTimeoutMs: 300 },
      })
      const outcome = await agent.run('$big').then(
        () => 'resolved',
        (err: unknown) => err,
      )
      await settle()
      assert.deepEqual(
        unhandled.map((e) => String(e)),
        [],
      )
      assert.ok(outcome instanceof RemoteError, `got ${String(outcome)}`)
    } finally {
      process.off('unhandledRejection', capture)
      for (const listener of saved) process.on('unhandledRejection', listener)
    }
  })

  it('a request whose own frame is over the cap rejects and leaves no pending timer behind', async (t) => {
    const { agent } = await connected(t)
    const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
    const before = timeouts()
    await assert.rejects(agent.run('$big', Buffer.alloc(MAX_FRAME_BYTES + 1)), {
      code: 'TETHER_ERR_FRAME_TOO_LARGE',
    })
    assert.equal(timeouts(), before)
  })
})

describe('Session: link faults', { timeout: 10_000 }, () => {
  const faults: Array<{ name: string; frame: Buffer; wireCode: number; closeCode: number; reason: RegExp }> =
    [
      {
        name: 'garbage bytes',
        frame: Buffer.from([0xc1, 0xc1]),
        wireCode: 4,
        closeCode: CloseCode.PROTOCOL,
        reason: /malformed frame/,
      },
      {
        name: 'a frame over the cap',
        frame: encodeStreamData(3, Buffer.alloc(70_000)),
        wireCode: 4,
        closeCode: CloseCode.TOO_BIG,
        reason: /70009 bytes exceeds the 65536-byte cap/,
      },
      {
        name: 'unknown type 99',
        frame: Buffer.from([0x92, 99, 0x00]),
        wireCode: 4,
        closeCode: CloseCode.PROTOCOL,
        reason: /unknown message type 99/,
      },
      {
        name: 'STREAM_DATA with a non-binary payload',
        frame: encodeMessage({ type: MessageType.STREAM_DATA, streamId: 3, payload: 'text' }),
        wireCode: 4,
        closeCode: CloseCode.PROTOCOL,
        reason: /STREAM_DATA payload must be binary/,
      },
      ...[0, -1, 1.5, MAX_WINDOW_BYTES + 1, '1024'].map((payload) => ({
        name: `STREAM_CREDIT of ${JSON.stringify(payload)}`,
        frame: encodeMessage({ type: MessageType.STREAM_CREDIT, streamId: 3, payload }),
        wireCode: 4,
        closeCode: CloseCode.PROTOCOL,
        reason: /positive byte count/,
      })),
      {
        name: 'a second CONNECT',
        frame: encodeMessage(connectMessage()),
        wireCode: 10,
        closeCode: CloseCode.POLICY,
        reason: /CONNECT sent twice/,
      },
      {
        name: "START_STREAM with the relay's (even) parity",
        frame: encodeMessage({
          type: MessageType.START_STREAM,
          streamId: 2,
          resource: '$proxy/x',
          params: START_PARAMS,
        }),
        wireCode: 10,
        closeCode: CloseCode.POLICY,
        reason: /stream id 2 has the wrong parity/,
      },
      {
        name: 'START_STREAM with stream id 0',
        frame: encodeMessage({
          type: MessageType.START_STREAM,
          streamId: 0,
          resource: '$proxy/x',
          params: START_PARAMS,
        }),
        wireCode: 10,
        closeCode: CloseCode.POLICY,
        reason: /stream id 0 has the wrong parity/,
      },
    ]
  for (const fault of faults) {
    it(`${fault.name} closes the link with ERROR {code: ${fault.wireCode}}`, async (t) => {
      const { relay, peer, sent } = relayWithRawAgent(
        t,
        { maxFrameBytes: 65536, onStartStream: acceptInto([]) },
        { maxFrame: 65536 },
      )
      await handshake(peer)
      const closed = once(relay, 'close')
      peer.sendRaw(fault.frame)
      const [info] = (await closed) as [CloseInfo]
      assert.equal(info.wireCode, fault.wireCode)
      assert.equal(info.by, 'local')
      assert.match(info.reason, fault.reason)
      assert.deepEqual(sent.at(-1), {
        type: MessageType.ERROR,
        streamId: 0,
        params: { code: fault.wireCode, message: info.reason },
      })
      await settle()
      assert.equal(peer.closed?.code, fault.closeCode)
    })
  }

  it('a link-level ERROR from the peer closes the link with its wire code', async (t) => {
    const { relay, peer } = relayWithRawAgent(t)
    await handshake(peer)
    const closed = once(relay, 'close')
    peer.send({
      type: MessageType.ERROR,
      streamId: 0,
      params: { code: 6, message: 'replaced by a newer connection' },
    })
    const [info] = (await closed) as [CloseInfo]
    assert.deepEqual(info, { reason: 'replaced by a newer connection', wireCode: 6, by: 'remote' })
  })

  it('DISCONNECT from the peer closes the link normally', async (t) => {
    const { relay, peer } = relayWithRawAgent(t)
    await handshake(peer)
    const closed = once(relay, 'close')
    peer.send({ type: MessageType.DISCONNECT, streamId: 0 })
    const [info] = (await closed) as [CloseInfo]
    assert.deepEqual(info, { reason: 'peer sent DISCONNECT', by: 'remote' })
    await settle()
    assert.equal(peer.closed?.code, CloseCode.NORMAL)
  })

  it('a reply to an unknown request and data for an unknown stream are ignored', async (t) => {
    const { relay, peer } = relayWithRawAgent(t)
    await handshake(peer)
    peer.send({ type: MessageType.OK, streamId: 99, payload: 'stray' })
    peer.send({ type: MessageType.ERROR, streamId: 97, params: { code: 16, message: 'stray' } })
    peer.sendRaw(encodeStreamData(95, Buffer.from('stray')))
    peer.send({ type: MessageType.STREAM_CREDIT, streamId: 95, payload: 1024 })
    peer.send({ type: MessageType.STOP_STREAM, streamId: 95 })
    peer.send({ type: MessageType.KEEP_ALIVE, streamId: 0 })
    assert.deepEqual(await peer.next(), { type: MessageType.KEEP_ALIVE, streamId: 0 })
    assert.equal(relay.isOpen, true)
  })
})

describe('Session: keep-alive', { timeout: 10_000 }, () => {
  const ka = 10
  const deadlineMs = ka * 1000 * KEEP_ALIVE_GRACE // 11.5 s

  it('the relay echoes KEEP_ALIVE at once', async (t) => {
    const { peer } = relayWithRawAgent(t)
    await handshake(peer)
    peer.send({ type: MessageType.KEEP_ALIVE, streamId: 0 })
    assert.deepEqual(await peer.next(), { type: MessageType.KEEP_ALIVE, streamId: 0 })
  })

  it('the relay declares the link dead after ka*1.15 s without inbound messages, and not before', async (t) => {
    t.mock.timers.enable(MOCKED)
    const { relay, peer } = relayWithRawAgent(t, {}, { ka })
    await handshake(peer)
    const closes: CloseInfo[] = []
    relay.on('close', (info: CloseInfo) => closes.push(info))

    t.mock.timers.tick(Math.ceil(deadlineMs) - 1)
    assert.equal(relay.isOpen, true, 'still open 1 ms before the deadline')
    t.mock.timers.tick(1)
    assert.equal(relay.isOpen, false)
    assert.deepEqual(closes, [{ reason: 'no message for 11.50 s (keep-alive 10 s)', by: 'local' }])
    await settle()
    assert.deepEqual(peer.closed, { code: CloseCode.DEAD, reason: 'keep-alive timeout' })
  })

  it('any inbound message pushes the deadline back', async (t) => {
    t.mock.timers.enable(MOCKED)
    const { relay, peer } = relayWithRawAgent(t, {}, { ka })
    await handshake(peer)
    t.mock.timers.tick(6000)
    peer.send({ type: MessageType.KEEP_ALIVE, streamId: 0 })
    await peer.next() // the echo: the relay has seen it at t = 6 s

    t.mock.timers.tick(Math.ceil(deadlineMs) - 6000) // t = 11.5 s: the first deadline check re-arms
    assert.equal(relay.isOpen, true)
    t.mock.timers.tick(6000 - 1) // t = 17.499 s
    assert.equal(relay.isOpen, true, 'still open 1 ms before 6 s + ka*1.15')
    t.mock.timers.tick(1)
    assert.equal(relay.isOpen, false)
  })

  it('the agent pings every ka s and declares the link dead when nothing comes back', async (t) => {
    t.mock.timers.enable(MOCKED)
    const { agent, peer, accept } = agentWithRawRelay(t)
    await accept({ ...OK_PARAMS, ka })
    assert.equal(peer.pending, 0)

    t.mock.timers.tick(ka * 1000)
    await settle()
    assert.deepEqual(await peer.next(), { type: MessageType.KEEP_ALIVE, streamId: 0 })
    t.mock.timers.tick(Math.ceil(deadlineMs) - 1 - ka * 1000)
    assert.equal(agent.isOpen, true)
    t.mock.timers.tick(1)
    assert.equal(agent.isOpen, false)
    assert.equal(agent.closeInfo?.by, 'local')
    assert.match(agent.closeInfo?.reason ?? '', /no message for 11\.50 s/)
  })

  it('a healthy link whose keep-alives are echoed stays up', async (t) => {
    t.mock.timers.enable(MOCKED)
    const { agent, relay } = await connected(t, { ok: { ka } })
    for (let i = 0; i < 12; i++) {
      t.mock.timers.tick(ka * 1000)
      await settle()
    }
    assert.equal(agent.isOpen, true)
    assert.equal(relay.isOpen, true)
  })
})

describe('Session: streams', { timeout: 10_000 }, () => {
  it('openStream: the peer sees the request, accepts, and bytes flow both ways', async (t) => {
    const requests: InboundStreamRequest[] = []
    const relayStreams: TunnelStream[] = []
    const accept = acceptInto(relayStreams)
    const { agent, relay } = await connected(t, {
      relay: {
        onStartStream: (req) => {
          requests.push(req)
          accept(req)
        },
      },
    })
    const stream = await openStream(agent)
    assert.equal(requests.length, 1)
    assert.equal(requests[0].id, stream.id)
    assert.equal(requests[0].resource, '$proxy/web')
    assert.deepEqual(requests[0].params, { ...TARGET, window: DEFAULT_WINDOW_BYTES })
    assert.equal(stream.resource, '$proxy/web')
    assert.equal(agent.streamCount, 1)
    assert.equal(relay.streamCount, 1)
    const [peerStream] = relayStreams

    stream.write('ping')
    const [up] = await once(peerStream, 'data')
    assert.equal(up.toString(), 'ping')
    peerStream.write('pong')
    const [down] = await once(stream, 'data')
    assert.equal(down.toString(), 'pong')
  })

  it('stream ids are odd when the agent opens them and even when the relay does', async (t) => {
    const { agent, relay } = await connected(t, {
      relay: { onStartStream: acceptInto([]) },
      agent: { onStartStream: acceptInto([]) },
    })
    const a1 = await openStream(agent)
    const a2 = await openStream(agent)
    const r1 = await openStream(relay)
    const r2 = await openStream(relay)
    assert.deepEqual(
      [a1.id, a2.id].map((id) => id % 2),
      [1, 1],
    )
    assert.deepEqual(
      [r1.id, r2.id].map((id) => id % 2),
      [0, 0],
    )
    assert.notEqual(a1.id, a2.id)
    assert.notEqual(r1.id, r2.id)
    assert.equal(agent.streamCount, 4)
  })

  it('a rejected START_STREAM rejects openStream with RemoteError and opens nothing', async (t) => {
    const { agent, relay } = await connected(t, {
      relay: {
        onStartStream: (req) => req.reject(WireErrorCode.TARGET_NOT_ALLOWED, '10.0.0.5:80 is not allowed'),
      },
    })
    await assert.rejects(agent.openStream('$proxy/web', TARGET), {
      name: 'RemoteError',
      wireCode: WireErrorCode.TARGET_NOT_ALLOWED,
      message: '10.0.0.5:80 is not allowed',
    })
    assert.equal(agent.streamCount, 0)
    assert.equal(relay.streamCount, 0)
  })

  it('START_STREAM with malformed params, or to a side without a handler, is refused without closing the link', async (t) => {
    const { agent, relay } = await connected(t, { relay: { onStartStream: acceptInto([]) } })
    await assert.rejects(agent.openStream('$proxy/web', { ...TARGET, port: 0 }), {
      wireCode: WireErrorCode.BAD_ENCODING,
    })
    await assert.rejects(relay.openStream('$proxy/web', TARGET), { wireCode: WireErrorCode.UNKNOWN_RESOURCE })
    assert.equal(agent.isOpen, true)
    assert.equal(relay.isOpen, true)
  })

  it('bytes survive the tunnel intact across many credit grants (1 MiB echoed)', async (t) => {
    const relayStreams: TunnelStream[] = []
    const { agent } = await connected(t, {
      relay: {
        onStartStream: (req) => {
          acceptInto(relayStreams)(req)
          relayStreams[0].pipe(relayStreams[0]) // echo
        },
      },
    })
    const stream = await openStream(agent)
    const sent = Buffer.alloc(1024 * 1024)
    for (let i = 0; i < sent.length; i++) sent[i] = (i * 7 + (i >> 11)) & 0xff
    const received: Buffer[] = []
    stream.on('data', (d: Buffer) => received.push(d))
    stream.end(sent)
    await once(stream, 'end')
    assert.ok(Buffer.concat(received).equals(sent))
  })

  it("half-close: end() makes the peer see 'end', and the peer can still write back", async (t) => {
    const relayStreams: TunnelStream[] = []
    const { agent, relay } = await connected(t, { relay: { onStartStream: acceptInto(relayStreams) } })
    const stream = await openStream(agent)
    const [peerStream] = relayStreams

    const upstream: string[] = []
    peerStream.on('data', (d: Buffer) => upstream.push(d.toString()))
    const peerEnded = once(peerStream, 'end')
    stream.end('request')
    await peerEnded
    assert.deepEqual(upstream, ['request'])
    assert.equal(peerStream.destroyed, false)

    const downstream: string[] = []
    stream.on('data', (d: Buffer) => downstream.push(d.toString()))
    const ended = once(stream, 'end')
    peerStream.write('response, ')
    peerStream.end('after the FIN')
    await ended
    assert.equal(downstream.join(''), 'response, after the FIN')

    await waitFor(() => agent.streamCount === 0 && relay.streamCount === 0, 'both sides to forget the stream')
    assert.equal(agent.isOpen, true)
  })

  it('destroy(err) aborts the peer stream with StreamAbortedError carrying the message', async (t) => {
    const relayStreams: TunnelStream[] = []
    const { agent, relay } = await connected(t, { relay: { onStartStream: acceptInto(relayStreams) } })
    const stream = await openStream(agent)
    const peerError = once(relayStreams[0], 'error')
    stream.destroy(new Error('ECONNRESET from 10.0.0.5:80'))
    const [err] = await peerError
    assert.ok(err instanceof StreamAbortedError)
    assert.equal(err.code, 'TETHER_ERR_STREAM_ABORTED')
    assert.equal(err.message, 'ECONNRESET from 10.0.0.5:80')
    await waitFor(() => agent.streamCount === 0 && relay.streamCount === 0, 'both sides to forget the stream')
    assert.equal(relay.isOpen, true)
  })

  it('destroy() without an error closes the peer stream without an error', async (t) => {
    const relayStreams: TunnelStream[] = []
    const { agent } = await connected(t, {
      relay: { onStartStream: (req) => relayStreams.push(req.accept()) },
    })
    const stream = await openStream(agent)
    const peerClosed = once(relayStreams[0], 'close') // no error listener: an 'error' would fail the test
    stream.destroy()
    await peerClosed
    assert.equal(relayStreams[0].errored, null)
  })

  /**
   * Writes `total` bytes in 4 KiB writes to a peer that does not read; checks the writer stalls after exactly
   * `window` bytes (write callbacks stop, the peer holds exactly `window` bytes), then reads and checks it resumes.
   */
  async function flowControl(t: TestContext, window: number) {
    const relayStreams: TunnelStream[] = []
    const { agent } = await connected(t, {
      relay: { windowBytes: window, onStartStream: acceptInto(relayStreams) },
    })
    const stream = await openStream(agent)
    const [peerStream] = relayStreams
    const total = 4 * window
    const chunk = Buffer.alloc(4096, 0x5a)
    let queued = 0
    let acked = 0
    const onWritten = () => {
      acked += chunk.length
    }
    const pump = () => {
      while (queued < total) {
        queued += chunk.length
        if (!stream.write(chunk, onWritten)) {
          stream.once('drain', pump)
          return
        }
      }
    }
    pump()

    await waitFor(() => acked >= window, 'the first window to be sent')
    await settle(20)
    assert.equal(acked, window, 'write callbacks stall after exactly the window')
    assert.equal(peerStream.readableLength, window, 'the peer holds exactly the window')

    let received = 0
    peerStream.on('data', (d: Buffer) => {
      received += d.length
    })
    await waitFor(
      () => received === total && acked === total,
      () => `all ${total} bytes (got ${received}, acked ${acked})`,
    )
  }

  it('flow control: a peer that never reads stops the writer after exactly the window; reading resumes it', async (t) => {
    await flowControl(t, DEFAULT_WINDOW_BYTES)
  })

  it('flow control with a window no larger than the readable high-water mark (16 KiB) also resumes', async (t) => {
    await flowControl(t, 16 * 1024)
  })

  it("STREAM_DATA frames respect the peer's maxFrame (relay maxFrameBytes 64 KiB)", async (t) => {
    const relayStreams: TunnelStream[] = []
    const { agent, relay } = await connected(t, {
      ok: { maxFrame: 65536 },
      relay: { maxFrameBytes: 65536, onStartStream: acceptInto(relayStreams) },
    })
    const stream = await openStream(agent)
    let received = 0
    relayStreams[0].on('data', (d: Buffer) => {
      received += d.length
    })
    stream.write(Buffer.alloc(100_000))
    await waitFor(() => received === 100_000 || !relay.isOpen, 'the data or a close')
    assert.equal(relay.isOpen, true, relay.closeInfo?.reason)
    assert.equal(received, 100_000)
  })

  it('a duplicate START_STREAM id for an open stream closes the link', async (t) => {
    const { relay, peer } = relayWithRawAgent(t, { onStartStream: acceptInto([]) })
    await handshake(peer)
    const start: Message = {
      type: MessageType.START_STREAM,
      streamId: 3,
      resource: '$proxy/x',
      params: START_PARAMS,
    }
    peer.send(start)
    assert.deepEqual(await peer.next(), {
      type: MessageType.OK,
      streamId: 3,
      params: { window: DEFAULT_WINDOW_BYTES },
    })
    assert.equal(relay.streamCount, 1)
    const closed = once(relay, 'close')
    peer.send(start)
    const [info] = (await closed) as [CloseInfo]
    assert.equal(info.wireCode, WireErrorCode.PROTOCOL_VIOLATION)
    assert.match(info.reason, /stream id 3 is already in use/)
    assert.equal(relay.streamCount, 0)
  })

  it('a duplicate START_STREAM id while the first is still being answered closes the link', async (t) => {
    const { relay, peer } = relayWithRawAgent(t, { onStartStream: noop })
    await handshake(peer)
    const start: Message = {
      type: MessageType.START_STREAM,
      streamId: 5,
      resource: '$proxy/x',
      params: START_PARAMS,
    }
    const closed = once(relay, 'close')
    peer.send(start)
    peer.send(start)
    const [info] = (await closed) as [CloseInfo]
    assert.equal(info.wireCode, WireErrorCode.PROTOCOL_VIOLATION)
    assert.match(info.reason, /stream id 5 is already in use/)
  })

  it('closing the link destroys open streams and rejects pending requests on both sides', async (t) => {
    const relayStreams: TunnelStream[] = []
    const accept = acceptInto(relayStreams)
    const { agent, relay } = await connected(t, {
      // Accepts the first stream; later START_STREAMs stay unanswered.
      relay: { onStartStream: (req) => relayStreams.length === 0 && accept(req), onRun: never },
      agent: { onRun: never },
    })
    const stream = await openStream(agent)
    const agentRun = agent.run('$hang')
    const relayRun = relay.run('$hang')
    const agentOpen = agent.openStream('$proxy/web', TARGET) // never answered
    await settle()
    const streamError = once(stream, 'error')
    const peerStreamError = once(relayStreams[0], 'error')
    const relayClosed = once(relay, 'close')

    agent.close('maintenance')

    await assert.rejects(agentRun, { code: 'TETHER_ERR_LINK_CLOSED', message: 'link closed: maintenance' })
    await assert.rejects(agentOpen, { code: 'TETHER_ERR_LINK_CLOSED' })
    await assert.rejects(relayRun, { code: 'TETHER_ERR_LINK_CLOSED' })
    const [err] = await streamError
    assert.ok(err instanceof StreamAbortedError)
    assert.equal(err.message, 'link lost: maintenance')
    const [peerErr] = await peerStreamError
    assert.ok(peerErr instanceof StreamAbortedError)
    assert.match(peerErr.message, /^link lost: /)
    const [info] = (await relayClosed) as [CloseInfo]
    assert.equal(info.by, 'remote')
    assert.deepEqual(agent.closeInfo, { reason: 'maintenance', by: 'local' })
    assert.equal(agent.streamCount, 0)
    assert.equal(relay.streamCount, 0)

    await assert.rejects(agent.run('$after'), {
      code: 'TETHER_ERR_LINK_CLOSED',
      message: 'link closed: maintenance',
    })
    await assert.rejects(agent.openStream('$proxy/web', TARGET), { code: 'TETHER_ERR_LINK_CLOSED' })
  })
})
