/** Helpers for the endpoint tests: users with their own tokens, error assertions, a recording HTTP target. */
import assert from 'node:assert/strict'
import { EventEmitter, once } from 'node:events'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'
import type { CallEvent } from '../../../relay/endpoints/endpoint-service.ts'
import { createUserWithToken, type TestRelay } from '../../e2e/harness.ts'

export interface ErrorBody {
  error: { code: string; message: string }
}

export interface CallResult {
  ok: boolean
  status?: number
  error?: string
  duration_ms: number
  attempts: number
}

export interface LogEntry extends CallResult {
  ts: number
  device?: string
}

/** Asserts an error answer: status, `{error: {code, message}}`, and that the message matches. */
export function assertError(res: { status: number; body: unknown }, status: number, message?: RegExp): void {
  assert.equal(res.status, status, JSON.stringify(res.body))
  const { error } = res.body as ErrorBody
  assert.equal(typeof error?.code, 'string', JSON.stringify(res.body))
  assert.equal(typeof error?.message, 'string', JSON.stringify(res.body))
  if (message) assert.match(error.message, message)
}

/** A user (created by the admin) and the API bound to its own token. */
export interface TestUser {
  name: string
  token: string
  /** `/v1/users/<name>/endpoints` */
  path: string
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>
}

/** Creates a `user`-role account and logs it in. */
export async function createUser(relay: TestRelay, name: string): Promise<TestUser> {
  return { ...(await createUserWithToken(relay, name)), path: `/v1/users/${name}/endpoints` }
}

/** An http endpoint definition aimed at `url`. */
export function httpEndpoint(endpoint: string, url: string, config: Record<string, unknown> = {}) {
  return { endpoint, type: 'http', config: { method: 'POST', url, ...config } }
}

/** Resolves with the next `result` event of `endpoint` reported by the relay's endpoint service. */
export function nextResult(relay: TestRelay, endpoint: string): Promise<CallEvent> {
  return new Promise((resolve) => {
    const listener = (event: CallEvent) => {
      if (event.endpoint !== endpoint) return
      relay.relay.endpoints.off('result', listener)
      resolve(event)
    }
    relay.relay.endpoints.on('result', listener)
  })
}

/** A request the target received, body read in full. */
export interface Received {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  body: string
}

/** How the target answers a request: by default 200, or whatever `respond` does (it may never answer). */
export type Responder = (received: Received, res: ServerResponse) => void

export interface HttpTarget {
  url: string
  server: http.Server
  received: Received[]
  /** Emits `received` (a Received) once a request's body has arrived. */
  events: EventEmitter
  /** The next request, once its body has arrived. */
  next(): Promise<Received>
  respond: Responder
}

/** An HTTP server on 127.0.0.1:0 that records every request; closed (with held requests) after the test. */
export async function httpTarget(t: TestContext, respond?: Responder): Promise<HttpTarget> {
  const events = new EventEmitter()
  const target: HttpTarget = {
    url: '',
    server: http.createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const received = {
          method: req.method ?? '',
          url: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks).toString(),
        }
        target.received.push(received)
        events.emit('received', received)
        target.respond(received, res)
      })
    }),
    received: [],
    events,
    next: async () => (await once(events, 'received'))[0] as Received,
    respond: respond ?? ((_, res) => res.end('ok')),
  }
  await new Promise<void>((resolve) => target.server.listen(0, '127.0.0.1', resolve))
  target.url = `http://127.0.0.1:${(target.server.address() as AddressInfo).port}`
  t.after(async () => {
    target.server.closeAllConnections()
    await new Promise((resolve) => target.server.close(resolve))
  })
  return target
}
