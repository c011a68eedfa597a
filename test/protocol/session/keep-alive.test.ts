/** Session keep-alive deadline over the in-memory channelPair, with mock timers. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { KEEP_ALIVE_GRACE, MessageType } from '../../../protocol/messages.ts'
import { CloseCode, type CloseInfo } from '../../../protocol/session.ts'
import {
  agentWithRawRelay,
  connected,
  handshake,
  MOCKED,
  OK_PARAMS,
  relayWithRawAgent,
  settle,
} from './peers.ts'

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
