/** Session RUN and DESCRIBE over the in-memory channelPair: correlation, timeouts, handler errors. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { protocolError, RemoteError } from '../../../protocol/errors.ts'
import { MAX_FRAME_BYTES, MessageType, WireErrorCode } from '../../../protocol/messages.ts'
import { connected, handshake, never, noop, relayWithRawAgent, settle } from './peers.ts'

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
