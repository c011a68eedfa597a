/** Portals through real relay and agent, spoken to with Node's HTTP client: header policy, sessions, pooling. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { connect, readAll, startTestRelay } from '../harness.ts'
import { startDeviceApp } from './device-app.ts'
import { cookieFrom, portalRequest, startPortal } from './portal-harness.ts'

test('a portal request reaches the device with Host, Origin and Referer rewritten and no portal cookie', async (t) => {
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port })
  const cookie = await p.session()
  const origin = `http://${p.host}`
  const res = await portalRequest(p.relay.relay.port, p.host, '/echo-headers?x=1', {
    headers: { cookie: `${cookie}; theme=dark`, origin, referer: `${origin}/tools?a=b` },
  })
  assert.equal(res.status, 200)
  const seen = JSON.parse(res.body.toString())
  assert.equal(seen.host, `127.0.0.1:${app.port}`)
  assert.equal(seen.origin, `http://127.0.0.1:${app.port}`)
  assert.equal(seen.referer, `http://127.0.0.1:${app.port}/tools?a=b`)
  assert.equal(seen.cookie, 'theme=dark', 'the portal session cookie never reaches the device')
  assert.equal(seen['x-forwarded-host'], p.host)
  assert.equal(seen['x-forwarded-proto'], 'http')
  assert.equal(seen['x-forwarded-for'], '127.0.0.1')
  assert.equal(app.requests.at(-1)?.url, '/echo-headers?x=1')
})

test('preserveHost sends the browser-facing Host and Origin unchanged', async (t) => {
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port, preserveHost: true })
  const cookie = await p.session()
  const res = await portalRequest(p.relay.relay.port, p.host, '/echo-headers', {
    headers: { cookie, origin: `http://${p.host}` },
  })
  const seen = JSON.parse(res.body.toString())
  assert.equal(seen.host, p.host)
  assert.equal(seen.origin, `http://${p.host}`)
})

test('responses: Location mapped to the portal, cookies host-only and partitioned, framing only by the relay', async (t) => {
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port })
  const cookie = await p.session()
  const port = p.relay.relay.port
  const login = await portalRequest(port, p.host, '/login', {
    method: 'POST',
    headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'user=admin&password=secret',
  })
  assert.equal(login.status, 302)
  assert.equal(login.headers.location, `http://${p.host}/dashboard`)
  const setCookie = login.headers['set-cookie']?.[0] ?? ''
  assert.match(setCookie, /^devsid=s1x\d+; HttpOnly; Path=\/; SameSite=None; Secure; Partitioned$/)
  assert.equal(login.headers['content-security-policy'], `frame-ancestors ${p.relay.relay.url}`)

  const dash = await portalRequest(port, p.host, '/dashboard', {
    headers: { cookie: `${cookie}; ${cookieFrom(login.headers, 'devsid')}` },
  })
  assert.equal(dash.status, 200)
  assert.match(dash.body.toString(), /signed in as admin/)

  const framed = await portalRequest(port, p.host, '/framed', { headers: { cookie } })
  assert.equal(framed.headers['x-frame-options'], undefined)
  // The device's other CSP directives stay in force; its frame-ancestors is replaced by the relay's.
  assert.deepEqual(
    framed.headers['content-security-policy'],
    `img-src 'self', frame-ancestors ${p.relay.relay.url}`,
  )

  const shared = await portalRequest(port, p.host, '/set-shared-cookie?who=a', { headers: { cookie } })
  assert.doesNotMatch(
    shared.headers['set-cookie']?.[0] ?? '',
    /domain/i,
    'a Domain cookie would reach sibling portals',
  )
})

test('without a valid session the portal answers 401 and never calls the device', async (t) => {
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port })
  const port = p.relay.relay.port
  const none = await portalRequest(port, p.host, '/')
  assert.equal(none.status, 401)
  assert.match(none.headers['content-type'] ?? '', /text\/html/)
  assert.match(none.body.toString(), /no session for this portal/)
  const forged = await portalRequest(port, p.host, '/', { headers: { cookie: 'tether_portal=forged' } })
  assert.equal(forged.status, 401)
  assert.equal(app.requests.length, 0)

  const { body: link } = await p.link()
  const url = new URL(link.url)
  const first = await portalRequest(port, url.host, url.pathname + url.search)
  assert.equal(first.status, 302)
  assert.equal(first.headers.location, '/')
  assert.match(first.headers['set-cookie']?.[0] ?? '', /HttpOnly/)
  const again = await portalRequest(port, url.host, url.pathname + url.search)
  assert.equal(again.status, 401, 'a signed link opens one session only')

  const other = await portalRequest(port, `other-gw-00000000.portal.localhost:${port}`, '/')
  assert.equal(other.status, 404)
})

test('expired and revoked sessions get 401', async (t) => {
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port })
  const port = p.relay.relay.port
  const short = await p.session({ ttl_sec: 1 })
  const { body: link } = await p.link()
  assert.ok(link.session.expires_ts - Date.now() > 3500 * 1000 - 5000, 'default lifetime is an hour')
  assert.equal((await portalRequest(port, p.host, '/', { headers: { cookie: short } })).status, 200)
  await new Promise((resolve) => setTimeout(resolve, 1100)) // the session's lifetime passing is the behaviour
  const expired = await portalRequest(port, p.host, '/', { headers: { cookie: short } })
  assert.equal(expired.status, 401)
  assert.match(expired.body.toString(), /expired/)

  const live = await p.session()
  assert.equal((await portalRequest(port, p.host, '/', { headers: { cookie: live } })).status, 200)
  const sessions = await p.relay.api<Array<{ id: string }>>(
    'GET',
    '/v1/users/admin/devices/gw/proxies/web/portal/sessions',
  )
  assert.ok(sessions.body.length >= 2)
  const revoked = await p.relay.api<{ revoked: number }>(
    'DELETE',
    '/v1/users/admin/devices/gw/proxies/web/portal/sessions',
  )
  assert.ok(revoked.body.revoked >= 2)
  assert.equal((await portalRequest(port, p.host, '/', { headers: { cookie: live } })).status, 401)
})

test('only the device owner or an admin gets a portal link; bad bodies get 400', async (t) => {
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port })
  await p.relay.api('POST', '/v1/users', { username: 'eve', password: 'eve-password-1' })
  const eve = await p.relay.api<{ access_token: string }>('POST', '/oauth/token', {
    grant_type: 'password',
    username: 'eve',
    password: 'eve-password-1',
  })
  const denied = await p.link({}, eve.body.access_token)
  assert.equal(denied.status, 404)
  const bad = await p.link({ ttl_sec: 'soon' })
  assert.equal(bad.status, 400)
  const bare = await fetch(`${p.relay.relay.url}/v1/users/admin/devices/gw/proxies/web/portal`, {
    method: 'POST',
    headers: { authorization: `Bearer ${p.relay.token}` },
  })
  assert.equal(bare.status, 201, 'the body is optional')
  const unknown = await p.relay.api('POST', '/v1/users/admin/devices/gw/proxies/nope/portal', {})
  assert.equal(unknown.status, 404)
  assert.equal((await p.relay.api('GET', '/v1/server/proxies/web')).status, 200)
})

test('requests share pooled tunnel streams (keep-alive) and statistics count them', async (t) => {
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port })
  const cookie = await p.session()
  for (let i = 0; i < 5; i++) {
    const res = await portalRequest(p.relay.relay.port, p.host, '/static/app.css', { headers: { cookie } })
    assert.equal(res.status, 200)
  }
  const view = await p.relay.api<{
    status: { total_connections: number; tx_bytes: number; listening: boolean }
  }>('GET', '/v1/server/proxies/web')
  assert.equal(view.body.status.listening, true)
  assert.equal(view.body.status.total_connections, 1, 'five requests, one tunnel stream')
  assert.ok(view.body.status.tx_bytes > 5 * 30)
})

test('sessions survive a relay restart and end when their profile is deleted', async (t) => {
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port })
  const cookie = await p.session()
  const { relay } = p.relay
  await relay.close()
  const again = await startTestRelay(t, {}, p.relay.dataDir)
  const host = `${p.label}.portal.localhost:${again.relay.port}`
  // The agent is still dialing the old port: a live session gets the offline page, not a 401.
  const offline = await portalRequest(again.relay.port, host, '/', { headers: { cookie } })
  assert.equal(offline.status, 502)
  assert.match(offline.body.toString(), /Device offline/)

  const profile = (await again.api<Record<string, unknown>>('GET', '/v1/server/proxies/web')).body
  assert.equal((await again.api('DELETE', '/v1/server/proxies/web')).status, 204)
  const { status: _, ...recreated } = profile
  assert.equal((await again.api('POST', '/v1/server/proxies', recreated)).status, 201)
  const revoked = await portalRequest(again.relay.port, host, '/', { headers: { cookie } })
  assert.equal(revoked.status, 401, 'a re-created profile does not revive old sessions')
})

test('a request with two Host headers is refused with 400, whichever comes first', async (t) => {
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port })
  const cookie = await p.session()
  const relayHost = `127.0.0.1:${p.relay.relay.port}`
  for (const [first, second] of [
    [p.host, relayHost],
    [relayHost, p.host],
  ]) {
    const socket = await connect(p.relay.relay.port)
    const reply = readAll(socket)
    socket.write(`GET / HTTP/1.1\r\nHost: ${first}\r\nHost: ${second}\r\nCookie: ${cookie}\r\n\r\n`)
    assert.match((await reply).data.toString(), /^HTTP\/1\.1 400 Bad Request/)
  }
  assert.equal(app.requests.length, 0)
})
