/** Session CONNECT handshake over the in-memory channelPair (no ports): parameters, credentials, ordering. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { describe, it } from 'node:test'
import { protocolError, RemoteError } from '../../../protocol/errors.ts'
import {
  DEFAULT_WINDOW_BYTES,
  MAX_FRAME_BYTES,
  MessageType,
  WireErrorCode,
} from '../../../protocol/messages.ts'
import { CloseCode, type CloseInfo, CONNECT_WAIT_MS, type ConnectRequest } from '../../../protocol/session.ts'
import {
  agentWithRawRelay,
  connectMessage,
  MOCKED,
  never,
  OK_PARAMS,
  recordSent,
  relayWithRawAgent,
  sessions,
  settle,
} from './peers.ts'

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
