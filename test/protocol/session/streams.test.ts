/** Session streams over the in-memory channelPair: opening, ids, data, credit flow control, half-close. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { describe, it, type TestContext } from 'node:test'
import { DEFAULT_WINDOW_BYTES, type Message, MessageType, WireErrorCode } from '../../../protocol/messages.ts'
import type { CloseInfo, InboundStreamRequest } from '../../../protocol/session.ts'
import { StreamAbortedError, type TunnelStream } from '../../../protocol/tunnel-stream.ts'
import {
  acceptInto,
  connected,
  handshake,
  never,
  noop,
  openStream,
  relayWithRawAgent,
  START_PARAMS,
  settle,
  TARGET,
  waitFor,
} from './peers.ts'

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
