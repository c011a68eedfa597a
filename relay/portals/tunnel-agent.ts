/**
 * An http.Agent whose connections are tunnel streams to a device's LAN web server: Node's HTTP client then
 * does the parsing, keep-alive pooling and body streaming, and the agent only supplies the sockets.
 */
import http from 'node:http'
import type { Duplex } from 'node:stream'
import type { TunnelStream } from '../../protocol/tunnel-stream.ts'

/** Opens one tunnel stream to the portal's target (rejects with a message naming the cause). */
export type OpenStream = () => Promise<Duplex>

/** The socket methods Node's HTTP client and Agent call beyond Duplex; tunnel streams have no TCP knobs. */
function asSocket(stream: Duplex): Duplex {
  const s = stream as Duplex & Record<string, unknown>
  let timeoutMs = 0
  let timer: NodeJS.Timeout | undefined
  const lastActivity = () => (stream as Partial<TunnelStream>).lastActivity ?? performance.now()
  const check = () => {
    const idle = performance.now() - lastActivity()
    if (idle >= timeoutMs) s.emit('timeout')
    else arm(timeoutMs - idle)
  }
  const arm = (ms: number) => {
    clearTimeout(timer)
    timer = timeoutMs > 0 && !stream.destroyed ? setTimeout(check, ms) : undefined
    timer?.unref()
  }
  s.setTimeout = (ms: number, cb?: () => void) => {
    timeoutMs = ms
    s.timeout = ms
    if (cb) s.once('timeout', cb)
    arm(ms)
    return s
  }
  s.timeout = 0
  for (const name of ['setNoDelay', 'setKeepAlive', 'ref', 'unref']) s[name] = () => s
  s.remoteAddress = undefined
  stream.once('close', () => clearTimeout(timer))
  return stream
}

/** Keep-alive pool of tunnel streams for one portal. */
export class TunnelAgent extends http.Agent {
  readonly #open: OpenStream

  constructor(open: OpenStream) {
    // Free streams live until the device closes them or 30 s of idleness; a browser opens at most 6 per origin.
    super({ keepAlive: true, maxSockets: 256, maxFreeSockets: 32, timeout: 30_000 })
    this.#open = open
  }

  /** Opening a stream is asynchronous, so the socket arrives through Node's callback form. */
  override createConnection(
    _options: http.ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): undefined {
    this.#open().then(
      (stream) => callback?.(null, asSocket(stream)),
      (err: Error) => callback?.(err, undefined as never),
    )
    return undefined
  }
}
