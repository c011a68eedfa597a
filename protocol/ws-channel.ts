/** Adapts a `ws` WebSocket to the MessageChannel a Session expects. */
import { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import WebSocket from 'ws'
import type { MessageChannel } from './channel.ts'

/** RFC 6455 caps a close reason at 123 bytes of UTF-8; cut on a character boundary. */
export function closeReason(reason: string): string {
  let out = reason
  while (Buffer.byteLength(out) > 123) out = out.slice(0, -1)
  return out
}

/** Wraps an open WebSocket; frames are binary, one message each. */
export class WsChannel extends EventEmitter implements MessageChannel {
  readonly #ws: WebSocket
  readonly #socket?: Socket
  #corked = false

  constructor(ws: WebSocket) {
    super()
    this.#ws = ws
    ws.binaryType = 'nodebuffer'
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      // IoTMP frames are binary; a text frame is garbage input and is handed on for the decoder to reject.
      this.emit('frame', isBinary ? data : Buffer.from(data))
    })
    ws.on('close', (code: number, reason: Buffer) => this.emit('close', code, reason.toString()))
    ws.on('error', () => {
      // 'close' follows every 'error'; the session logs the close reason.
    })
    const socket = (ws as unknown as { _socket?: Socket })._socket
    socket?.on('drain', () => this.emit('drain'))
    this.#socket = socket
  }

  /**
   * Sends one frame. Frames sent in the same tick leave in one writev: many small frames (a burst of new
   * streams, credits, keep-alives) otherwise cost a syscall each.
   */
  send(frame: Buffer): void {
    if (this.#ws.readyState !== WebSocket.OPEN) return
    if (!this.#corked && this.#socket) {
      this.#corked = true
      this.#socket.cork()
      process.nextTick(this.#uncork)
    }
    this.#ws.send(frame, { binary: true })
  }

  readonly #uncork = (): void => {
    this.#corked = false
    this.#socket?.uncork()
  }

  get bufferedAmount(): number {
    return this.#ws.bufferedAmount
  }

  close(code = 1000, reason = ''): void {
    if (this.#ws.readyState === WebSocket.CLOSED) return
    if (this.#ws.readyState === WebSocket.CONNECTING) {
      this.#ws.terminate()
      return
    }
    this.#ws.close(code, closeReason(reason))
    // A peer that never answers the close handshake (half-open link) must not keep the socket alive.
    setTimeout(() => this.#ws.terminate(), 2000).unref()
  }

  /** Drops the connection without the close handshake (dead links). */
  terminate(): void {
    this.#ws.terminate()
  }
}
