/**
 * Faults between the agent's buffer and the relay's bucket:
 * - the network black-holed by a TCP proxy (bytes stop flowing both ways, no socket is closed, as on a dead
 *   link): the agent's keep-alive declares the link dead, it reconnects once bytes flow again, and delivery
 *   resumes by itself with every record stored once;
 * - a record damaged in the agent's LevelDB while it was stopped: skipped, counted, logged; the rest delivered.
 */
import assert from 'node:assert/strict'
import { EventEmitter, once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import net, { type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { Level } from 'level'
import { type Agent, startAgent } from '../../agent/agent.ts'
import { recordKey } from '../../agent/buffer/front-reader.ts'
import type { RecordInput } from '../../agent/buffer/records.ts'
import { bucketPoints, drained } from './bucket-points.ts'
import { createAgentDevice, freePort, memoryLogger, startTestRelay, type TestRelay } from './harness.ts'

/**
 * A TCP proxy to 127.0.0.1:`target` that can black-hole: while it does, bytes in both directions are discarded
 * and closes are not passed on (a dead link tells neither end anything), and new connections are accepted but
 * not connected onward until the link is restored (as a SYN waits out a dead link). Events: `held` (a new
 * connection waits for the restore).
 */
class BlackHoleProxy extends EventEmitter {
  readonly #server: net.Server
  readonly #target: number
  readonly #sockets = new Set<net.Socket>()
  readonly #held: net.Socket[] = []
  /** Pairs whose one side closed during the black hole: closed on restore. */
  readonly #closing = new Set<() => void>()
  #dead = false

  constructor(target: number) {
    super()
    this.#target = target
    this.#server = net.createServer((client) => {
      this.#track(client)
      if (this.#dead) {
        client.pause()
        this.#held.push(client)
        this.emit('held')
      } else this.#pipe(client)
    })
  }

  async listen(): Promise<number> {
    this.#server.listen(0, '127.0.0.1')
    await once(this.#server, 'listening')
    return (this.#server.address() as AddressInfo).port
  }

  blackHole(): void {
    this.#dead = true
  }

  restore(): void {
    this.#dead = false
    for (const close of this.#closing) close()
    this.#closing.clear()
    for (const client of this.#held.splice(0)) this.#pipe(client)
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy()
    await new Promise((resolve) => this.#server.close(resolve))
  }

  #track(socket: net.Socket): void {
    this.#sockets.add(socket)
    socket.on('close', () => this.#sockets.delete(socket))
    socket.on('error', () => {})
  }

  #pipe(client: net.Socket): void {
    const upstream = net.connect({ host: '127.0.0.1', port: this.#target })
    this.#track(upstream)
    const forward = (from: net.Socket, to: net.Socket) =>
      from.on('data', (chunk: Buffer) => {
        if (!this.#dead) to.write(chunk)
      })
    forward(client, upstream)
    forward(upstream, client)
    const close = () => {
      client.destroy()
      upstream.destroy()
    }
    const onClose = () => {
      if (this.#dead) this.#closing.add(close)
      else close()
    }
    client.on('close', onClose)
    upstream.on('close', onClose)
    client.resume()
  }
}

/** `n` readings of sensor-1 from `from`, payload `{i}`, four per millisecond (seq orders them). */
const readings = (n: number, from = 0): RecordInput[] =>
  Array.from({ length: n }, (_, k) => ({
    source: 'mqtt',
    device: 'sensor-1',
    ts: 1_700_000_000_000 + Math.floor((from + k) / 4),
    payload: { i: from + k },
  }))

async function stateDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tether-agent-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function agentIn(t: TestContext, dir: string, relay: string, credential: string, keepAliveSec = 5) {
  const { logger, lines } = memoryLogger('info')
  const agent = await startAgent(
    { relay, user: 'admin', device: 'gw', credential, stateDir: dir, keepAliveSec },
    logger,
  )
  t.after(() => agent.stop())
  return { agent, lines }
}

/** The bucket holds readings `expected` (by i), exactly once each, in this order. */
async function assertReadings(relay: TestRelay, expected: number[]) {
  const got = (await bucketPoints(relay, 'sensor-1')).map((p) => p.val.i)
  assert.equal(got.length, expected.length, `points stored: ${got.length}, expected ${expected.length}`)
  assert.deepEqual(got, expected)
}

test('network black-holed, then restored: the keep-alive notices, the agent reconnects, delivery resumes', async (t) => {
  const relay = await startTestRelay(t)
  const credential = await createAgentDevice(relay, 'gw')
  const proxy = new BlackHoleProxy(Number(new URL(relay.relay.url).port))
  const port = await proxy.listen()
  t.after(() => proxy.close())
  const { agent, lines } = await agentIn(t, await stateDir(t), `ws://127.0.0.1:${port}`, credential, 1)
  await agent.connected()
  await agent.buffer.append(readings(1000))
  await drained(agent)

  proxy.blackHole()
  const lost = once(agent.link, 'disconnected')
  const attempt = once(proxy, 'held')
  // Appended into the dead link: the forwarder sends batches that never arrive.
  await appendInChunks(agent, 1000, 3000)
  const [reason] = (await lost) as [string]
  assert.match(reason, /no message for 1\.15 s \(keep-alive 1 s\)/, `the keep-alive declared the link dead`)
  assert.ok(agent.buffer.stats().depth > 0)
  // Its next attempt hangs on the dead link, like a SYN: then the link comes back.
  await attempt
  const reconnected = once(agent.link, 'connected')
  proxy.restore()
  await reconnected
  await drained(agent)
  await assertReadings(
    relay,
    Array.from({ length: 4000 }, (_, i) => i),
  )
  assert.ok(
    lines.some((l) => /link dead/.test(String(l.msg))),
    'the keep-alive deadline logged it',
  )
  const { stored, duplicates } = relay.relay.data.counters
  assert.equal(stored, 4000)
  assert.ok(duplicates >= 0)
})

async function appendInChunks(agent: Agent, from: number, n: number) {
  for (let i = from; i < from + n; i += 500) await agent.buffer.append(readings(500, i))
}

test('a record damaged in the LevelDB while the agent was stopped: skipped, counted, logged; the rest delivered', async (t) => {
  const port = await freePort()
  const dir = await stateDir(t)
  // No relay yet: every record stays in the buffer.
  const first = await agentIn(t, dir, `ws://127.0.0.1:${port}`, 'no-relay-yet')
  await first.agent.buffer.append(readings(100))
  await first.agent.stop()

  const db = new Level<string, Buffer>(join(dir, 'buffer'), { keyEncoding: 'utf8', valueEncoding: 'buffer' })
  await db.open()
  // Seq 1 (the oldest, read at open): valid msgpack but not a record. Seq 37: bytes msgpack cannot read.
  await db.put(recordKey(1), Buffer.from([0xa3, 0x61, 0x62, 0x63])) // the string "abc"
  await db.put(recordKey(37), Buffer.from([0xc1, 0xde, 0xad, 0xbe, 0xef]))
  await db.close()

  const relay = await startTestRelay(t, { port })
  const credential = await createAgentDevice(relay, 'gw')
  const second = await agentIn(t, dir, `ws://127.0.0.1:${port}`, credential)
  await drained(second.agent)
  await assertReadings(
    relay,
    Array.from({ length: 100 }, (_, i) => i).filter((i) => i !== 0 && i !== 36),
  )
  const s = second.agent.buffer.stats()
  assert.deepEqual([s.corrupted, s.forwarded, s.depth, s.appended], [2, 98, 0, 100])
  const logged = second.lines.filter((l) => /unreadable/.test(String(l.msg)))
  assert.deepEqual(
    logged.map((l) => l.seq),
    [1, 37],
  )
})
