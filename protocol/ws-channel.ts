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

/**
 * How this side may write a two-part frame straight to the socket, as one RFC 6455 binary frame whose payload
 * is not copied: `server` frames are unmasked; `client-zero-mask` frames carry the all-zero masking key the agent
 * uses on loopback and under TLS, so the payload is sent as is. Anything else goes through ws, which copies.
 */
export type RawFrames = 'server' | 'client-zero-mask' | 'none'

/** The RFC 6455 header of one final binary frame of `length` payload bytes. */
export function binaryFrameHeader(length: number, zeroMask: boolean): Buffer {
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8
  const header = Buffer.alloc(2 + lengthBytes + (zeroMask ? 4 : 0)) // zero-filled: the mask key stays 0
  header[0] = 0x82 // FIN, opcode 2 (binary)
  const maskBit = zeroMask ? 0x80 : 0
  if (lengthBytes === 0) header[1] = maskBit | length
  else if (lengthBytes === 2) {
    header[1] = maskBit | 126
    header.writeUInt16BE(length, 2)
  } else {
    header[1] = maskBit | 127
    header.writeUIntBE(length, 4, 6) // the high 16 bits stay 0: frames are capped far below 2^48
  }
  return header
}

/** Wraps an open WebSocket; frames are binary, one message each. */
export class WsChannel extends EventEmitter implements MessageChannel {
  readonly #ws: WebSocket
  readonly #socket?: Socket
  readonly #raw: RawFrames
  #corked = false

  /** `raw`: whether STREAM_DATA may bypass ws's copy (only without permessage-deflate; see RawFrames). */
  constructor(ws: WebSocket, raw: RawFrames = 'none') {
    super()
    this.#ws = ws
    this.#raw = raw
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

  /** One frame from two parts; straight to the socket when allowed, so the (large) body is never copied. */
  sendParts(head: Buffer, body: Uint8Array): void {
    const socket = this.#socket
    if (this.#raw === 'none' || !socket) return this.send(Buffer.concat([head, body]))
    if (this.#ws.readyState !== WebSocket.OPEN) return
    if (!this.#corked) {
      this.#corked = true
      socket.cork()
      process.nextTick(this.#uncork)
    }
    // ws writes synchronously (no deflate, no Blob data), so frames it sends and these keep their order.
    socket.write(Buffer.concat([binaryFrameHeader(head.length + body.length, this.#raw !== 'server'), head]))
    socket.write(body)
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
