/**
 * Local HTTP ingest (issue 7) for LAN devices that only speak HTTP: `POST /data/{device}` appends the body to the
 * store-and-forward buffer (`source: 'http'`) and answers 200 `{seq}` only once the record is durable.
 *
 * - Auth: with `token` configured, `Authorization: Bearer <token>` is required (401 otherwise).
 * - Body: at most `maxBodyBytes` (413). `application/json` (or `…+json`) is stored as the JSON value (400 when it
 *   does not parse); any other content type is stored as bytes (the relay stores bytes holding JSON as JSON).
 * - `?ts=<ms>` sets the record's time (default: now).
 * - Buffer full under `reject-new`: 507, so the device keeps its data and retries later.
 * - `{device}` is a relay device id (`^[A-Za-z0-9_-]{1,64}$`, 400 otherwise): what is posted is filed under
 *   exactly that id, never a sanitised one.
 * - `GET /healthz`: 200 `{status: 'ok'}`.
 *
 * node:http and no framework: the agent stays light, and two routes need none.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { BufferError } from '../buffer/buffer-errors.ts'
import type { DataBuffer } from '../buffer/data-buffer.ts'
import type { RecordPayload } from '../buffer/records.ts'
import type { HttpIngestConfig } from '../data-config.ts'
import { type IngestError, ingestError } from './ingest-errors.ts'

/** The relay's device id pattern (relay/devices/schemas.ts DeviceId). */
export const DEVICE_ID = /^[A-Za-z0-9_-]{1,64}$/
/** A request must arrive whole within this (slow or stalled senders are cut). */
const REQUEST_TIMEOUT_MS = 30_000

export interface HttpIngestOptions {
  config: HttpIngestConfig
  buffer: DataBuffer
  log: Logger
}

/** Ingest figures, for /metrics. */
export interface IngestStats {
  /** Requests answered, by HTTP status. */
  responses: Record<string, number>
  /** Records appended. */
  accepted: number
}

export class HttpIngest {
  readonly #server: http.Server
  readonly #buffer: DataBuffer
  readonly #log: Logger
  readonly #maxBodyBytes: number
  readonly #tokenDigest?: Buffer
  readonly #responses = new Map<number, number>()
  #accepted = 0

  private constructor(opts: HttpIngestOptions) {
    this.#buffer = opts.buffer
    this.#log = opts.log
    this.#maxBodyBytes = opts.config.maxBodyBytes
    if (opts.config.token !== undefined) this.#tokenDigest = digest(opts.config.token)
    this.#server = http.createServer({ requestTimeout: REQUEST_TIMEOUT_MS }, (req, res) => {
      void this.#handle(req, res)
    })
  }

  /** Listens on `config.host:config.port`; resolves once listening. */
  static async start(opts: HttpIngestOptions): Promise<HttpIngest> {
    const ingest = new HttpIngest(opts)
    await new Promise<void>((resolve, reject) => {
      ingest.#server.once('error', reject)
      ingest.#server.listen(opts.config.port, opts.config.host, () => {
        ingest.#server.off('error', reject)
        resolve()
      })
    })
    opts.log.info({ host: opts.config.host, port: ingest.port }, 'HTTP ingest listening')
    return ingest
  }

  /** The bound port (useful with port 0). */
  get port(): number {
    return (this.#server.address() as AddressInfo).port
  }

  stats(): IngestStats {
    return { responses: Object.fromEntries(this.#responses), accepted: this.#accepted }
  }

  /** Stops listening and closes every connection; requests waiting for the buffer are cut. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()))
    this.#server.closeAllConnections()
    await closed
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://ingest')
      if (url.pathname === '/healthz') {
        if (req.method !== 'GET' && req.method !== 'HEAD')
          throw ingestError('TETHER_ERR_INGEST_METHOD', req.method ?? '', 'GET')
        return this.#send(res, 200, { status: 'ok' })
      }
      if (!url.pathname.startsWith('/data/')) throw ingestError('TETHER_ERR_INGEST_NOT_FOUND', url.pathname)
      if (req.method !== 'POST') throw ingestError('TETHER_ERR_INGEST_METHOD', req.method ?? '', 'POST')
      // Before the device and body: an unauthenticated client learns nothing else.
      this.#authorize(req)
      const device = deviceOf(url.pathname)
      const ts = tsOf(url.searchParams.get('ts'))
      const payload = parseBody(await this.#readBody(req), req.headers['content-type'])
      const { first } = await this.#buffer.append({
        source: 'http',
        device,
        topic: url.pathname,
        payload,
        ...(ts === undefined ? {} : { ts }),
      })
      this.#accepted++
      this.#send(res, 200, { seq: first })
    } catch (err) {
      this.#fail(req, res, err as Error)
    }
  }

  #authorize(req: IncomingMessage): void {
    if (!this.#tokenDigest) return
    const header = req.headers.authorization ?? ''
    const match = /^Bearer\s+(.+)$/i.exec(header)
    // Compared as digests: equal lengths for timingSafeEqual, and no timing hint about the token's length.
    if (!match || !timingSafeEqual(digest(match[1] as string), this.#tokenDigest)) {
      throw ingestError('TETHER_ERR_INGEST_UNAUTHORIZED')
    }
  }

  /** The whole body, refused with 413 as soon as it is known to exceed the cap. */
  #readBody(req: IncomingMessage): Promise<Buffer> {
    const max = this.#maxBodyBytes
    const declared = Number(req.headers['content-length'])
    if (Number.isFinite(declared) && declared > max) {
      return Promise.reject(ingestError('TETHER_ERR_INGEST_TOO_LARGE', max))
    }
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = []
      let size = 0
      const onData = (chunk: Buffer) => {
        size += chunk.length
        if (size > max) {
          req.off('data', onData)
          reject(ingestError('TETHER_ERR_INGEST_TOO_LARGE', max))
          return
        }
        chunks.push(chunk)
      }
      req.on('data', onData)
      req.once('end', () => resolve(Buffer.concat(chunks)))
      req.once('error', reject)
    })
  }

  #fail(req: IncomingMessage, res: ServerResponse, err: Error): void {
    const status = (err as IngestError | BufferError).status
    const code = (err as IngestError | BufferError).code
    if (typeof status !== 'number' || typeof code !== 'string') {
      this.#log.error({ err }, 'HTTP ingest failed')
      return this.#send(res, 500, { error: { code: 'TETHER_ERR_INTERNAL', message: 'internal error' } })
    }
    if (status >= 500) this.#log.error({ err: err.message, url: req.url }, `HTTP ingest: ${status}`)
    else this.#log.info({ err: err.message, url: req.url }, `HTTP ingest: ${status}`)
    if (status === 401) res.setHeader('www-authenticate', 'Bearer')
    // An unread body (413, or refused before reading) is not drained: the connection closes after the answer.
    if (!req.complete) res.setHeader('connection', 'close')
    this.#send(res, status, { error: { code, message: err.message } })
  }

  #send(res: ServerResponse, status: number, body: unknown): void {
    this.#responses.set(status, (this.#responses.get(status) ?? 0) + 1)
    if (res.headersSent || res.destroyed) return
    const text = JSON.stringify(body)
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
    })
    res.end(text)
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest()
}

function deviceOf(pathname: string): string {
  const raw = pathname.slice('/data/'.length)
  let device: string
  try {
    device = decodeURIComponent(raw)
  } catch {
    throw ingestError('TETHER_ERR_INGEST_BAD_DEVICE', raw)
  }
  if (!DEVICE_ID.test(device)) throw ingestError('TETHER_ERR_INGEST_BAD_DEVICE', device)
  return device
}

function tsOf(raw: string | null): number | undefined {
  if (raw === null) return undefined
  const ts = Number(raw)
  if (raw === '' || !Number.isSafeInteger(ts) || ts < 0) throw ingestError('TETHER_ERR_INGEST_BAD_TS')
  return ts
}

/** JSON content types give the JSON value; anything else the bytes. */
function parseBody(body: Buffer, contentType: string | undefined): RecordPayload {
  const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
  if (type !== 'application/json' && !type.endsWith('+json')) return body
  try {
    return JSON.parse(body.toString('utf8')) as RecordPayload
  } catch (err) {
    throw ingestError('TETHER_ERR_INGEST_BAD_JSON', (err as Error).message)
  }
}
