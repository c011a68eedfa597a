/** WsChannel over a real ws connection: two-part frames written raw, in order with ws's own frames. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { describe, it, type TestContext } from 'node:test'
import WebSocket, { WebSocketServer } from 'ws'
import { binaryFrameHeader, closeReason, type RawFrames, WsChannel } from '../../protocol/ws-channel.ts'

/** A connected (server, client) channel pair on loopback. */
async function pair(t: TestContext, clientRaw: RawFrames) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
  await once(wss, 'listening')
  t.after(() => wss.close())
  const accepted = once(wss, 'connection') as Promise<[WebSocket]>
  const ws = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, {
    perMessageDeflate: false,
    ...(clientRaw === 'client-zero-mask' ? { generateMask: (mask: Buffer) => mask.fill(0) } : {}),
  })
  await once(ws, 'open')
  const [serverWs] = await accepted
  t.after(() => ws.terminate())
  return { server: new WsChannel(serverWs, 'server'), client: new WsChannel(ws, clientRaw) }
}

/** Collects `count` frames from a channel. */
function frames(channel: WsChannel, count: number): Promise<Buffer[]> {
  const got: Buffer[] = []
  return new Promise((resolve) =>
    channel.on('frame', (frame: Buffer) => {
      got.push(frame)
      if (got.length === count) resolve(got)
    }),
  )
}

const sizes = [0, 1, 125 - 3, 126, 65_535 - 3, 65_536, 300_000]
const part = (size: number, seed: number) =>
  Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + seed) & 255))

describe('WsChannel.sendParts', () => {
  for (const clientRaw of ['client-zero-mask', 'none'] as const) {
    it(`delivers each two-part frame whole, in order with plain sends, both ways (client ${clientRaw})`, async (t) => {
      const { server, client } = await pair(t, clientRaw)
      for (const [from, to] of [
        [server, client],
        [client, server],
      ] as const) {
        const expected: Buffer[] = []
        const received = frames(to, sizes.length * 2)
        sizes.forEach((size, i) => {
          const head = Buffer.from([0x94, 10, i])
          const body = part(size, i)
          from.sendParts(head, body)
          expected.push(Buffer.concat([head, body]))
          const plain = Buffer.from(`plain ${i}`) // through ws's own sender, between raw frames
          from.send(plain)
          expected.push(plain)
        })
        assert.deepEqual(await received, expected)
      }
    })
  }
})

describe('binaryFrameHeader', () => {
  it('uses the 7-bit, 16-bit and 64-bit length forms, with a zero mask key when asked', () => {
    assert.deepEqual([...binaryFrameHeader(5, false)], [0x82, 5])
    assert.deepEqual([...binaryFrameHeader(126, false)], [0x82, 126, 0, 126])
    assert.deepEqual([...binaryFrameHeader(65_536, false)], [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0])
    assert.deepEqual([...binaryFrameHeader(5, true)], [0x82, 0x85, 0, 0, 0, 0])
  })
})

describe('closeReason', () => {
  it('cuts to 123 bytes of UTF-8 on a character boundary', () => {
    const cut = closeReason('é'.repeat(100))
    assert.equal(Buffer.byteLength(cut), 122)
    assert.equal(cut, 'é'.repeat(61))
  })
})
