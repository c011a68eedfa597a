/** Session link faults over the in-memory channelPair: malformed frames, protocol violations, closes. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { describe, it } from 'node:test'
import { encodeMessage, encodeStreamData } from '../../../protocol/codec/encode.ts'
import { MAX_WINDOW_BYTES, MessageType } from '../../../protocol/messages.ts'
import { CloseCode, type CloseInfo } from '../../../protocol/session.ts'
import { acceptInto, connectMessage, handshake, relayWithRawAgent, START_PARAMS, settle } from './peers.ts'

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
