/**
 * The message channel a Session runs over: one binary frame per message. A WebSocket is the production
 * channel (ws-channel.ts); tests use the in-memory pair below, so the session is tested without a port.
 */
import { EventEmitter } from 'node:events'

/** Events: `frame` (Buffer), `drain`, `close` (code, reason). */
export interface MessageChannel extends EventEmitter {
  /** Queues one frame. */
  send(frame: Buffer): void
  /**
   * Queues one frame made of `head` then `body` without joining them (no copy of the body, which stays
   * referenced until written). Optional: without it the session joins the parts and calls `send`.
   */
  sendParts?(head: Buffer, body: Uint8Array): void
  /** Bytes queued but not yet handed to the kernel. */
  readonly bufferedAmount: number
  /** Closes the channel; `close` is emitted once. */
  close(code?: number, reason?: string): void
}

/** An in-memory connected pair of channels, delivering frames asynchronously and in order. */
export function channelPair(): [MessageChannel, MessageChannel] {
  const a = new MemoryChannel()
  const b = new MemoryChannel()
  a.peer = b
  b.peer = a
  return [a, b]
}

class MemoryChannel extends EventEmitter implements MessageChannel {
  peer?: MemoryChannel
  closed = false
  bufferedAmount = 0

  send(frame: Buffer): void {
    if (this.closed) return
    const peer = this.peer!
    setImmediate(() => {
      if (!peer.closed) peer.emit('frame', frame)
    })
  }

  close(code = 1000, reason = ''): void {
    if (this.closed) return
    this.closed = true
    // Like a WebSocket, frames already sent reach the peer before it sees the close.
    setImmediate(() => {
      this.emit('close', code, reason)
      this.peer?.close(code, reason)
    })
  }
}
