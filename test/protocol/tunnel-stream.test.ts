/** TunnelStream against a recording StreamHost: credit spending, chunking, half-close and abort semantics. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import net from 'node:net'
import { describe, it } from 'node:test'
import type { StopStreamParams } from '../../protocol/messages.ts'
import { splice } from '../../protocol/splice.ts'
import {
  MAX_DATA_CHUNK_BYTES,
  StreamAbortedError,
  type StreamHost,
  TunnelStream,
} from '../../protocol/tunnel-stream.ts'

class RecordingHost implements StreamHost {
  readonly data: Buffer[] = []
  readonly credits: number[] = []
  readonly stops: StopStreamParams[] = []
  readonly closed: number[] = []
  readonly waiters: Array<() => void> = []
  canWrite = true
  maxFrame = 1024 * 1024

  maxDataBytes(): number {
    return this.maxFrame - 16
  }

  sendData(_id: number, data: Uint8Array): void {
    this.data.push(Buffer.from(data))
  }
  sendCredit(_id: number, bytes: number): void {
    this.credits.push(bytes)
  }
  sendStop(_id: number, params: StopStreamParams): void {
    this.stops.push(params)
  }
  writable(): boolean {
    return this.canWrite
  }
  whenWritable(cb: () => void): void {
    this.waiters.push(cb)
  }
  streamClosed(id: number): void {
    this.closed.push(id)
  }
  drain(): void {
    this.canWrite = true
    for (const cb of this.waiters.splice(0)) cb()
  }
  get sentBytes(): number {
    return this.data.reduce((n, b) => n + b.length, 0)
  }
  get granted(): number {
    return this.credits.reduce((n, b) => n + b, 0)
  }
}

const settle = async (rounds = 5) => {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve))
}

function streamWith(sendWindow: number, recvWindow = 1024) {
  const host = new RecordingHost()
  const stream = new TunnelStream(7, host, sendWindow, recvWindow, '$proxy/test')
  return { host, stream }
}

/** Writes `data` and reports whether its callback ran (and with which error). */
function trackedWrite(stream: TunnelStream, data: Buffer) {
  const state: { done: boolean; err?: Error | null } = { done: false }
  stream.write(data, (err) => {
    state.done = true
    state.err = err
  })
  return state
}

describe('TunnelStream: sending', () => {
  it('sends a write that fits the credit at once and calls back', async () => {
    const { host, stream } = streamWith(1024)
    const w = trackedWrite(stream, Buffer.alloc(1000, 1))
    await settle()
    assert.equal(host.sentBytes, 1000)
    assert.equal(w.done, true)
    assert.equal(w.err ?? null, null)
  })

  it('sends exactly the credit, then waits for STREAM_CREDIT to send the rest', async () => {
    const { host, stream } = streamWith(1024)
    const w = trackedWrite(stream, Buffer.alloc(3000, 2))
    await settle()
    assert.equal(host.sentBytes, 1024)
    assert.equal(w.done, false)
    stream.receiveCredit(1000)
    assert.equal(host.sentBytes, 2024)
    assert.equal(w.done, false)
    stream.receiveCredit(5000)
    assert.equal(host.sentBytes, 3000)
    await settle()
    assert.equal(w.done, true)
    assert.ok(Buffer.concat(host.data).equals(Buffer.alloc(3000, 2)))
  })

  it('splits large writes into STREAM_DATA chunks of at most MAX_DATA_CHUNK_BYTES', async () => {
    const { host, stream } = streamWith(1024 * 1024)
    const size = 2 * MAX_DATA_CHUNK_BYTES + 5
    trackedWrite(stream, Buffer.alloc(size, 3))
    await settle()
    assert.deepEqual(
      host.data.map((b) => b.length),
      [MAX_DATA_CHUNK_BYTES, MAX_DATA_CHUNK_BYTES, 5],
    )
  })

  it('waits for the channel to drain while it is congested, registering one waiter', async () => {
    const { host, stream } = streamWith(1024)
    host.canWrite = false
    const w = trackedWrite(stream, Buffer.alloc(100))
    await settle()
    assert.equal(host.sentBytes, 0)
    assert.equal(host.waiters.length, 1)
    stream.receiveCredit(1024) // credit alone must not bypass the congestion check
    assert.equal(host.sentBytes, 0)
    assert.equal(host.waiters.length, 1)
    host.drain()
    assert.equal(host.sentBytes, 100)
    await settle()
    assert.equal(w.done, true)
  })

  it('end() sends STOP_STREAM {half: true} after the pending data', async () => {
    const { host, stream } = streamWith(10)
    stream.end(Buffer.alloc(20))
    await settle()
    assert.deepEqual(host.stops, [])
    stream.receiveCredit(10)
    await settle()
    assert.equal(host.sentBytes, 20)
    assert.deepEqual(host.stops, [{ half: true }])
  })
})

describe('TunnelStream: receiving', () => {
  it('pushes received bytes to the reader', async () => {
    const { stream } = streamWith(1024)
    stream.receiveData(Buffer.from('hello'))
    const [chunk] = await once(stream, 'data')
    assert.equal(chunk.toString(), 'hello')
  })

  it('grants credit back as a flowing consumer takes the bytes', async () => {
    const { host, stream } = streamWith(1024, 1024)
    let got = 0
    stream.on('data', (d: Buffer) => {
      got += d.length
    })
    await settle()
    for (let i = 0; i < 8; i++) {
      stream.receiveData(Buffer.alloc(128))
      await settle()
    }
    assert.equal(got, 1024)
    assert.equal(host.granted, 1024)
  })

  it('grants credit back when a paused consumer later reads what was buffered', async () => {
    const { host, stream } = streamWith(1024, 1024)
    stream.receiveData(Buffer.alloc(1024))
    await settle()
    assert.equal(host.granted, 0, 'nothing consumed yet')
    let got = 0
    stream.on('data', (d: Buffer) => {
      got += d.length
    })
    await settle()
    assert.equal(got, 1024)
    assert.equal(host.granted, 1024, 'every consumed byte is granted back')
  })

  it('destroys the stream when the peer sends more than its credit', async () => {
    const { host, stream } = streamWith(1024, 1024)
    stream.receiveData(Buffer.alloc(1024))
    stream.receiveData(Buffer.alloc(1))
    const [err] = await once(stream, 'error')
    assert.ok(err instanceof StreamAbortedError)
    assert.equal(err.code, 'TETHER_ERR_STREAM_ABORTED')
    assert.match(err.message, /more than its credit/)
    assert.deepEqual(host.stops, [{ error: 'peer sent more than its credit' }])
    assert.deepEqual(host.closed, [7])
  })

  it('STOP_STREAM {half} ends the readable side but keeps the writable side open', async () => {
    const { host, stream } = streamWith(1024)
    stream.receiveData(Buffer.from('last'))
    stream.receiveStop({ half: true })
    stream.receiveStop({ half: true }) // a duplicate half-close is harmless
    const chunks: string[] = []
    stream.on('data', (d: Buffer) => chunks.push(d.toString()))
    await once(stream, 'end')
    assert.deepEqual(chunks, ['last'])
    const w = trackedWrite(stream, Buffer.from('reply'))
    await settle()
    assert.equal(w.done, true)
    assert.equal(Buffer.concat(host.data).toString(), 'reply')
    assert.equal(stream.destroyed, false)
  })

  it('STOP_STREAM {error} aborts with StreamAbortedError carrying the message, without echoing STOP', async () => {
    const { host, stream } = streamWith(1024)
    stream.receiveStop({ error: 'ECONNRESET by target' })
    const [err] = await once(stream, 'error')
    assert.ok(err instanceof StreamAbortedError)
    assert.equal(err.message, 'ECONNRESET by target')
    assert.deepEqual(host.stops, [])
    assert.deepEqual(host.closed, [7])
  })

  it('plain STOP_STREAM closes without an error', async () => {
    const { host, stream } = streamWith(1024)
    let errored = false
    stream.on('error', () => {
      errored = true
    })
    stream.receiveStop({})
    await once(stream, 'close')
    assert.equal(errored, false)
    assert.deepEqual(host.stops, [])
  })

  it('linkLost aborts with the reason and sends nothing', async () => {
    const { host, stream } = streamWith(1024)
    stream.linkLost('keep-alive timeout')
    const [err] = await once(stream, 'error')
    assert.ok(err instanceof StreamAbortedError)
    assert.equal(err.message, 'link lost: keep-alive timeout')
    assert.deepEqual(host.stops, [])
  })
})

describe('TunnelStream: window auto-tuning', () => {
  it('grants extra credit at once when the peer used all of it and the reader keeps up', async () => {
    const host = new RecordingHost()
    const stream = new TunnelStream(9, host, 1024, 1024, '$proxy/test', false, 4096)
    stream.on('data', () => {}) // flowing, as a pipe is: data goes to the reader as it arrives
    await settle()
    stream.receiveData(Buffer.alloc(1024))
    await settle()
    assert.equal(stream.receiveWindowBytes, 2048)
    assert.equal(host.granted, 1024 + 1024, 'the consumed bytes back, plus the growth')
  })

  it('keeps the window for a reader that is not reading', async () => {
    const host = new RecordingHost()
    const stream = new TunnelStream(9, host, 1024, 1024, '$proxy/test', false, 4096)
    stream.pause()
    stream.receiveData(Buffer.alloc(1024))
    await settle()
    assert.equal(stream.receiveWindowBytes, 1024)
    assert.equal(host.granted, 0)
  })
})

describe('TunnelStream: closing', () => {
  it('destroy(err) sends STOP_STREAM {error} and fails the pending write', async () => {
    const { host, stream } = streamWith(10)
    stream.on('error', () => {})
    const w = trackedWrite(stream, Buffer.alloc(100))
    await settle()
    stream.destroy(new Error('target reset'))
    await settle()
    assert.deepEqual(host.stops, [{ error: 'target reset' }])
    assert.deepEqual(host.closed, [7])
    assert.equal(w.done, true)
    assert.equal(w.err?.message, 'target reset')
  })

  it('destroy() without an error sends a plain STOP_STREAM', async () => {
    const { host, stream } = streamWith(10)
    stream.destroy()
    await once(stream, 'close')
    assert.deepEqual(host.stops, [{}])
  })

  it('both directions ended gracefully: only the half STOP is sent and the stream closes', async () => {
    const { host, stream } = streamWith(1024)
    stream.resume()
    stream.receiveStop({ half: true })
    stream.end()
    await once(stream, 'close')
    assert.deepEqual(host.stops, [{ half: true }])
    assert.deepEqual(host.closed, [7])
  })
})

/** A connected loopback socket pair, both allowing half-open like the dialer and the listeners. */
async function socketPair(): Promise<{ near: net.Socket; far: net.Socket; close: () => void }> {
  const server = net.createServer({ allowHalfOpen: true })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const accepted = once(server, 'connection') as Promise<[net.Socket]>
  const near = net.connect({
    port: (server.address() as net.AddressInfo).port,
    host: '127.0.0.1',
    allowHalfOpen: true,
  })
  const [far] = await accepted
  await once(near, 'connect')
  return { near, far, close: () => server.close() }
}

describe('splice with a tunnel stream', () => {
  it('a socket that closes cleanly leaves the stream to flush its unsent tail, then both close', async (t) => {
    const { near, far, close } = await socketPair()
    t.after(close)
    const { host, stream } = streamWith(1000) // far less credit than the target will send
    const done = new Promise<Error | undefined>((resolve) => splice(near, stream, resolve))
    // The target sends 10 kB and ends; the remote side had already ended (the client half-closed first).
    stream.receiveStop({ half: true })
    far.end(Buffer.alloc(10_000, 7))
    far.resume()
    await once(near, 'close') // both of the socket's directions are done: it closes with data still queued
    assert.ok(host.sentBytes < 10_000, 'the stream still holds unsent data when the socket closes')
    for (let round = 0; round < 20 && host.sentBytes < 10_000; round++) {
      stream.receiveCredit(1000)
      await settle()
    }
    assert.equal(await done, undefined)
    assert.equal(host.sentBytes, 10_000)
    assert.deepEqual(host.stops, [{ half: true }], 'the stream ends with a FIN, not an abort')
  })

  it('a socket destroyed before both directions finished closes the stream at once', async (t) => {
    const { near, far, close } = await socketPair()
    t.after(close)
    far.on('error', () => {})
    const { host, stream } = streamWith(1000)
    const done = new Promise<Error | undefined>((resolve) => splice(near, stream, resolve))
    near.destroy() // as an idle timeout or a listener shutting down would
    assert.equal(await done, undefined)
    assert.ok(stream.destroyed)
    assert.deepEqual(host.stops, [{}], 'the peer is told the stream is closed, without a FIN')
  })
})
