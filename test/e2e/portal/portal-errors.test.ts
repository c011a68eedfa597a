/** When the portal cannot show the device it says why, at once: offline, refused, not allowed, silent, bad TLS. */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { test } from 'node:test'
import { freePort, tcpServer } from '../harness.ts'
import { startDeviceApp } from './device-app.ts'
import { portalRequest, startPortal, type TestPortal } from './portal-harness.ts'

const TLS = join(import.meta.dirname, '..', '..', 'fixtures', 'tls')

async function get(p: TestPortal, path = '/') {
  const cookie = await p.session()
  return portalRequest(p.relay.relay.port, p.host, path, { headers: { cookie } })
}

test('device offline: 502 page naming the device', async (t) => {
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port })
  const cookie = await p.session()
  await p.agent.agent.stop()
  const res = await portalRequest(p.relay.relay.port, p.host, '/', { headers: { cookie } })
  assert.equal(res.status, 502)
  assert.match(res.body.toString(), /Device offline/)
  assert.match(res.body.toString(), /admin\/gw is offline/)
})

test('target refusing connections: 502 page saying so', async (t) => {
  const port = await freePort()
  const p = await startPortal(t, { devicePort: port })
  const res = await get(p)
  assert.equal(res.status, 502)
  assert.match(res.body.toString(), /connection refused/)
})

test("target outside the agent's allowlist: 502 page naming the allowlist", async (t) => {
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port, allow: ['127.0.0.1:1-1000'] })
  const res = await get(p)
  assert.equal(res.status, 502)
  assert.match(res.body.toString(), /allowlist/)
})

test('a device that never answers: 504 after the response timeout', async (t) => {
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port, relayConfig: { portalResponseTimeoutSec: 1 } })
  const res = await get(p, '/no-answer')
  assert.equal(res.status, 504)
  assert.match(res.body.toString(), /no response from 127\.0\.0\.1:\d+ within 1 s/)
})

test('TLS to a self-signed device UI: refused with verify, served with verify: false', async (t) => {
  const server = https.createServer(
    { cert: readFileSync(join(TLS, 'localhost.crt')), key: readFileSync(join(TLS, 'localhost.key')) },
    (req, res) => res.end(`secure ${req.headers.host}`),
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    server.closeAllConnections()
    server.close()
  })
  const { port } = server.address() as AddressInfo
  const strict = await startPortal(t, { devicePort: port, tls: true })
  const refused = await get(strict)
  assert.equal(refused.status, 502)
  assert.match(refused.body.toString(), /not trusted/)

  const lax = await startPortal(t, { devicePort: port, tls: true, verify: false })
  const ok = await get(lax)
  assert.equal(ok.status, 200)
  assert.equal(ok.body.toString(), `secure 127.0.0.1:${port}`)
})

test('path mode: prefix stripped, X-Forwarded-Prefix sent, Location and cookie paths under the prefix', async (t) => {
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port, relayConfig: { portalMode: 'path' } })
  const port = p.relay.relay.port
  const { body: link } = await p.link()
  const prefix = `/portal/${p.label}`
  assert.equal(link.origin, `${p.relay.relay.url}${prefix}`)
  const url = new URL(link.url)
  assert.equal(url.host, `127.0.0.1:${port}`)
  const opened = await portalRequest(port, url.host, url.pathname + url.search)
  assert.equal(opened.headers.location, `${prefix}/`)
  const sessionCookie = opened.headers['set-cookie']?.[0] ?? ''
  assert.match(sessionCookie, new RegExp(`Path=${prefix};`))
  const cookie = sessionCookie.split(';')[0] as string

  const echo = await portalRequest(port, url.host, `${prefix}/echo-headers`, { headers: { cookie } })
  const seen = JSON.parse(echo.body.toString())
  assert.equal(seen['x-forwarded-prefix'], prefix)
  assert.equal(app.requests.at(-1)?.url, '/echo-headers')

  const dash = await portalRequest(port, url.host, `${prefix}/dashboard`, { headers: { cookie } })
  assert.equal(dash.headers.location, `${prefix}/login`, 'root-relative Location gets the prefix')
  const login = await portalRequest(port, url.host, `${prefix}/login`, {
    method: 'POST',
    headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'password=secret',
  })
  assert.equal(login.headers.location, `${p.relay.relay.url}${prefix}/dashboard`)
  assert.match(login.headers['set-cookie']?.[0] ?? '', new RegExp(`Path=${prefix}/;`))
  assert.equal(
    (await portalRequest(port, url.host, prefix, { headers: { cookie } })).headers.location,
    `${prefix}/`,
  )
})

test('a device answering garbage gets a 502 page, and the relay stays up', async (t) => {
  const answers = ['HTTP/1.1 000 OK', 'HTTP/1.1 099 Odd', 'HTTP/1.1 200 O\x01K']
  let next = 0
  const port = await tcpServer(t, (socket) => {
    socket.once('data', () => socket.end(`${answers[next++]}\r\ncontent-length: 2\r\n\r\nhi`))
  })
  const p = await startPortal(t, { devicePort: port })
  const cookie = await p.session()
  for (const answer of answers) {
    const res = await portalRequest(p.relay.relay.port, p.host, '/', { headers: { cookie } })
    assert.ok([200, 502].includes(res.status), `${JSON.stringify(answer)} → ${res.status}`)
    if (res.status === 502)
      assert.match(res.body.toString(), /Invalid answer from the device|closed the connection/)
  }
  assert.equal((await fetch(`${p.relay.relay.url}/healthz`)).status, 200)
})
