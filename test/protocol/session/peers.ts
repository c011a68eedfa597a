/** Helpers for the Session tests: session pairs over in-memory channels, raw peers that speak frames. */
import assert from 'node:assert/strict'
import type { TestContext } from 'node:test'
import { pino } from 'pino'
import { channelPair, type MessageChannel } from '../../../protocol/channel.ts'
import { decodeFrame } from '../../../protocol/codec/decode.ts'
import { encodeMessage } from '../../../protocol/codec/encode.ts'
import {
  type ConnectOkParams,
  DEFAULT_WINDOW_BYTES,
  MAX_FRAME_BYTES,
  type Message,
  MessageType,
  type StartStreamParams,
} from '../../../protocol/messages.ts'
import { type InboundStreamRequest, Session, type SessionOptions } from '../../../protocol/session.ts'
import type { TunnelStream } from '../../../protocol/tunnel-stream.ts'

export const logger = pino({ level: 'silent' })
export const OK_PARAMS: ConnectOkParams = { ka: 60, maxFrame: MAX_FRAME_BYTES, window: DEFAULT_WINDOW_BYTES }
export const TARGET = { protocol: 'tcp', address: '10.0.0.5', port: 80 } as const
export const START_PARAMS: StartStreamParams = { ...TARGET, window: DEFAULT_WINDOW_BYTES }
export const MOCKED = { apis: ['setTimeout', 'setInterval', 'Date'] } as const
export const noop = () => {}
export const never = () => new Promise<never>(noop)

/** Lets the in-memory channel deliver: each round runs one batch of setImmediate callbacks. */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve))
}

/** Runs event-loop rounds until `done()` holds; fails after `rounds`. */
export async function waitFor(
  done: () => boolean,
  what: string | (() => string),
  rounds = 2000,
): Promise<void> {
  for (let i = 0; i < rounds && !done(); i++) await new Promise((resolve) => setImmediate(resolve))
  assert.ok(done(), `timed out waiting for ${typeof what === 'function' ? what() : what}`)
}

/** Records (decoded) every frame a session hands to its channel, even ones the peer never gets to see. */
export function recordSent(channel: MessageChannel): Message[] {
  const sent: Message[] = []
  const send = channel.send.bind(channel)
  channel.send = (frame: Buffer) => {
    sent.push(decodeFrame(frame, Number.POSITIVE_INFINITY))
    send(frame)
  }
  return sent
}

/** The far end of a channel driven by hand: sends encoded messages or raw bytes, reads decoded ones. */
export class RawPeer {
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

export function connectMessage(params: Record<string, unknown> = { pv: 1, ka: 60 }): Message {
  return { type: MessageType.CONNECT, streamId: 1, params, payload: ['alice', 'gw', 'secret'] }
}

export interface PairOptions {
  ok?: Partial<ConnectOkParams>
  relay?: Partial<SessionOptions>
  agent?: Partial<SessionOptions>
}

/** A relay and an agent Session over channelPair, closed when the test ends. */
export function sessions(t: TestContext, opts: PairOptions = {}) {
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

export async function connected(t: TestContext, opts: PairOptions = {}) {
  const pair = sessions(t, opts)
  await pair.agent.connect('alice', 'gw', 'secret', 60, 'tether-test/1')
  return pair
}

/** An onStartStream that accepts everything and collects the streams (with an error sink attached). */
export function acceptInto(streams: TunnelStream[]): (req: InboundStreamRequest) => void {
  return (req) => {
    const stream = req.accept()
    stream.on('error', noop)
    streams.push(stream)
  }
}

export async function openStream(agent: Session): Promise<TunnelStream> {
  const stream = await agent.openStream('$proxy/web', TARGET)
  stream.on('error', noop)
  return stream
}

/** A relay Session facing a hand-driven agent. */
export function relayWithRawAgent(
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

export async function handshake(peer: RawPeer): Promise<Message> {
  peer.send(connectMessage())
  const reply = await peer.next()
  assert.equal(reply.type, MessageType.OK, JSON.stringify(reply))
  return reply
}

/** An agent Session facing a hand-driven relay; `accept` answers its CONNECT with OK. */
export function agentWithRawRelay(t: TestContext, opts: Partial<SessionOptions> = {}) {
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
