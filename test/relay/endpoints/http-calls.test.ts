/**
 * Calls of `http` endpoints on a real relay against a local HTTP target: request shape and templates, retries,
 * timeouts, background calls that never delay their caller, and the call log.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import { test } from 'node:test'
import { httpRequest } from '../../../relay/endpoints/http-target.ts'
import { freePort, startTestRelay } from '../../e2e/harness.ts'
import {
  assertError,
  type CallResult,
  createUser,
  httpEndpoint,
  httpTarget,
  type LogEntry,
  nextResult,
} from './helpers.ts'

test('http endpoints on one relay', async (t) => {
  const relay = await startTestRelay(t)
  const service = relay.relay.endpoints
  // Short backoff so failing calls finish fast; the attempts stay the default 3.
  service.retry = { attempts: 3, baseDelayMs: 20 }

  await t.test('method, headers and the rendered body template', async (t) => {
    const u = await createUser(relay, 'shape')
    const target = await httpTarget(t)
    const created = await u.api(
      'POST',
      u.path,
      httpEndpoint('templated', `${target.url}/in?src=tether`, {
        method: 'PUT',
        headers: { 'x-api-key': 'k-123', 'content-type': 'text/plain' },
        body: 'device={{device}};data={{ payload }}',
      }),
    )
    assert.equal(created.status, 201, JSON.stringify(created.body))

    // From the API: no device.
    const payload = { t: 21.5, note: '{{device}} stays as sent' }
    const res = await u.api<CallResult>('POST', `${u.path}/templated/call`, payload)
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.equal(res.body.ok, true, JSON.stringify(res.body))
    assert.equal(res.body.status, 200)
    assert.equal(res.body.attempts, 1)
    assert.equal(typeof res.body.duration_ms, 'number')
    const first = target.received[0]
    assert.ok(first)
    assert.equal(first.method, 'PUT')
    assert.equal(first.url, '/in?src=tether')
    assert.equal(first.headers['x-api-key'], 'k-123')
    assert.equal(first.headers['content-type'], 'text/plain')
    assert.equal(first.body, `device=;data=${JSON.stringify(payload)}`)

    // On behalf of a device, in the background.
    const arrived = target.next()
    const done = nextResult(relay, 'templated')
    service.enqueue('shape', 'templated', [1, 2], { device: 'sensor-1' })
    assert.equal((await arrived).body, 'device=sensor-1;data=[1,2]')
    const result = await done
    assert.equal(result.ok, true)
    assert.equal(result.device, 'sensor-1')

    // No template: the payload as JSON.
    await u.api('POST', u.path, httpEndpoint('plain', `${target.url}/json`))
    const plain = target.next()
    assert.equal((await u.api<CallResult>('POST', `${u.path}/plain/call`, 'just text')).body.ok, true)
    const got = await plain
    assert.equal(got.method, 'POST')
    assert.equal(got.headers['content-type'], 'application/json')
    assert.equal(got.body, '"just text"')

    // GET sends no body.
    await u.api('POST', u.path, httpEndpoint('getter', `${target.url}/poll`, { method: 'GET' }))
    const get = target.next()
    assert.equal((await u.api<CallResult>('POST', `${u.path}/getter/call`, { a: 1 })).body.ok, true)
    assert.deepEqual([(await get).method, (await get).body], ['GET', ''])
  })

  await t.test('a failing target is retried as configured and the failure logged', async (t) => {
    const u = await createUser(relay, 'failing')
    const target = await httpTarget(t, (_, res) => {
      res.statusCode = 500
      res.end('broken')
    })
    await u.api('POST', u.path, httpEndpoint('down', target.url))
    const res = await u.api<CallResult>('POST', `${u.path}/down/call`, { n: 1 })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.equal(res.body.ok, false)
    assert.equal(res.body.status, 500)
    assert.match(res.body.error ?? '', /HTTP 500/)
    assert.equal(res.body.attempts, 3)
    assert.equal(target.received.length, 3)
    assert.ok(res.body.duration_ms >= 20 + 40, `backoff 20 + 40 ms, took ${res.body.duration_ms}`)
    const logs = await u.api<LogEntry[]>('GET', `${u.path}/down/logs`)
    assert.equal(logs.body.length, 1)
    assert.deepEqual({ ...logs.body[0], ts: 0, duration_ms: 0 }, { ...res.body, ts: 0, duration_ms: 0 })

    // The configured number: a policy of 5 makes 5 attempts.
    service.retry = { attempts: 5, baseDelayMs: 1 }
    t.after(() => {
      service.retry = { attempts: 3, baseDelayMs: 20 }
    })
    const five = await u.api<CallResult>('POST', `${u.path}/down/call`, {})
    assert.equal(five.body.attempts, 5)
    assert.equal(target.received.length, 8)

    // A 4xx is the caller's mistake: trying again would not help.
    target.respond = (_, res) => {
      res.statusCode = 404
      res.end()
    }
    const notFound = await u.api<CallResult>('POST', `${u.path}/down/call`, {})
    assert.deepEqual([notFound.body.ok, notFound.body.status, notFound.body.attempts], [false, 404, 1])

    // A target that recovers: the second attempt succeeds.
    let answered = 0
    target.respond = (_, res) => {
      res.statusCode = answered++ === 0 ? 503 : 204
      res.end()
    }
    const recovered = await u.api<CallResult>('POST', `${u.path}/down/call`, {})
    assert.deepEqual([recovered.body.ok, recovered.body.status, recovered.body.attempts], [true, 204, 2])

    // A target nobody listens on.
    await u.api('POST', u.path, httpEndpoint('refused', `http://127.0.0.1:${await freePort()}/`))
    const refused = await u.api<CallResult>('POST', `${u.path}/refused/call`, {})
    assert.equal(refused.body.ok, false)
    assert.match(refused.body.error ?? '', /ECONNREFUSED/)
    assert.equal(refused.body.status, undefined)
  })

  await t.test('a slow target times out, and the timeout is logged', async (t) => {
    const u = await createUser(relay, 'slow')
    const target = await httpTarget(t, () => {}) // never answers
    await u.api('POST', u.path, httpEndpoint('sluggish', target.url, { timeout_ms: 150 }))
    service.retry = { attempts: 2, baseDelayMs: 1 }
    t.after(() => {
      service.retry = { attempts: 3, baseDelayMs: 20 }
    })
    const res = await u.api<CallResult>('POST', `${u.path}/sluggish/call`, {})
    assert.equal(res.body.ok, false)
    assert.equal(res.body.error, 'timeout after 150 ms')
    assert.equal(res.body.attempts, 2)
    assert.equal(target.received.length, 2)
    assert.ok(res.body.duration_ms >= 300, `two attempts of 150 ms, took ${res.body.duration_ms}`)
    const [logged] = (await u.api<LogEntry[]>('GET', `${u.path}/sluggish/logs`)).body
    assert.equal(logged?.error, 'timeout after 150 ms')
  })

  await t.test('enqueue never waits: not for the target, nor for another slow endpoint', async (t) => {
    const u = await createUser(relay, 'background')
    const held: ServerResponse[] = []
    const slow = await httpTarget(t, (_, res) => held.push(res)) // answered only when the test says
    const fast = await httpTarget(t)
    await u.api('POST', u.path, httpEndpoint('slow', slow.url))
    await u.api('POST', u.path, httpEndpoint('fast', fast.url))

    let received = false
    slow.events.once('received', () => {
      received = true
    })
    const arrived = once(slow.events, 'received')
    const slowResult = nextResult(relay, 'slow')
    service.enqueue('background', 'slow', { n: 1 }, { device: 'd1' })
    // enqueue has returned, and the target has not even seen the request yet.
    assert.equal(received, false)
    await arrived

    // While the slow target holds its request, another endpoint's call goes through and is logged.
    const fastResult = nextResult(relay, 'fast')
    service.enqueue('background', 'fast', { n: 2 }, { device: 'd2' })
    const fastDone = await fastResult
    assert.deepEqual([fastDone.ok, fastDone.device, fastDone.attempts], [true, 'd2', 1])
    assert.deepEqual((await u.api<LogEntry[]>('GET', `${u.path}/slow/logs`)).body, [], 'still running')

    // Answered at last, the slow call completes and is logged with its device.
    held[0]?.end('late')
    const slowDone = await slowResult
    assert.deepEqual([slowDone.ok, slowDone.status, slowDone.device], [true, 200, 'd1'])
    const [logged] = (await u.api<LogEntry[]>('GET', `${u.path}/slow/logs`)).body
    assert.deepEqual(logged, {
      ts: slowDone.ts,
      ok: true,
      status: 200,
      duration_ms: slowDone.duration_ms,
      attempts: 1,
      device: 'd1',
    })
  })

  await t.test('a disabled endpoint refuses calls: 409 from the API, logged for callbacks', async (t) => {
    const u = await createUser(relay, 'disabled')
    const target = await httpTarget(t)
    await u.api('POST', u.path, { ...httpEndpoint('off', target.url), enabled: false })
    assertError(await u.api('POST', `${u.path}/off/call`, {}), 409, /endpoint off is disabled/)
    const result = nextResult(relay, 'off')
    service.enqueue('disabled', 'off', {}, { device: 'd' })
    const done = await result
    assert.deepEqual([done.ok, done.error, done.attempts], [false, 'endpoint off is disabled', 0])
    assert.equal(target.received.length, 0)
  })

  await t.test('the log keeps the last 100 results, newest first', async (t) => {
    const u = await createUser(relay, 'logs')
    // The target answers with the status the payload asks for, so each entry shows which call it was.
    const target = await httpTarget(t, (received, res) => {
      res.statusCode = (JSON.parse(received.body) as { status: number }).status
      res.end()
    })
    await u.api('POST', u.path, httpEndpoint('counted', target.url))
    service.retry = { attempts: 1, baseDelayMs: 1 }
    t.after(() => {
      service.retry = { attempts: 3, baseDelayMs: 20 }
    })
    const statusOf = (i: number) => (i < 5 ? 500 : 200 + (i % 2))
    for (let i = 0; i < 105; i++) {
      const res = await u.api<CallResult>('POST', `${u.path}/counted/call`, { status: statusOf(i) })
      assert.equal(res.body.status, statusOf(i))
    }
    const logs = (await u.api<LogEntry[]>('GET', `${u.path}/counted/logs`)).body
    assert.equal(logs.length, 100)
    assert.deepEqual(
      logs.map((e) => e.status),
      Array.from({ length: 100 }, (_, k) => statusOf(104 - k)),
      'newest first; the five oldest (the 500s) are gone',
    )
    for (let k = 1; k < logs.length; k++) assert.ok((logs[k - 1]?.ts ?? 0) >= (logs[k]?.ts ?? 0))
  })
})

test('closing the relay ends running and waiting background calls at once', async (t) => {
  const relay = await startTestRelay(t)
  const u = await createUser(relay, 'closing')
  const target = await httpTarget(t, () => {}) // never answers
  await u.api('POST', u.path, httpEndpoint('stuck', target.url))
  const results: string[] = []
  relay.relay.endpoints.on('result', (e) => results.push(e.error ?? 'ok'))
  const running = new Promise<void>((resolve) => {
    target.events.on('received', () => target.received.length === 8 && resolve())
  })
  for (let i = 0; i < 20; i++) relay.relay.endpoints.enqueue('closing', 'stuck', { i })
  await running
  const closing = performance.now()
  await relay.relay.close()
  // Well under the calls' 10 s timeout: close aborted them instead of waiting.
  assert.ok(performance.now() - closing < 5000, `close took ${performance.now() - closing} ms`)
  // The running calls (8 per endpoint) were aborted and logged as such; the waiting ones were dropped.
  assert.deepEqual(results, Array(8).fill('relay closing'))
  assert.equal(target.received.length, 8)
  relay.relay.endpoints.enqueue('closing', 'stuck', {})
  assert.equal(results.length, 8, 'nothing runs after close')
})

test('a body template that renders JSON goes out as application/json unless a header says otherwise', () => {
  const vars = { payload: '{"t":21}', device: 'd1' }
  const json = httpRequest(
    { method: 'POST', url: 'http://x', body: '{"device":"{{device}}","data":{{payload}}}' },
    vars,
  )
  assert.equal(json.headers.get('content-type'), 'application/json')
  assert.equal(json.body, '{"device":"d1","data":{"t":21}}')
  const text = httpRequest({ method: 'POST', url: 'http://x', body: 'device {{device}}' }, vars)
  assert.equal(text.headers.get('content-type'), null, 'not JSON: left to fetch (text/plain)')
})
