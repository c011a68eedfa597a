/// <reference lib="dom" />
/**
 * A device's web UI in the console's iframe, in real chromium: assets, login with a cookie and a redirect,
 * a page that forbids framing, WebSocket, server-sent events, a 50 MiB download and an upload, and portal
 * origins that cannot read each other's cookies.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { ADMIN_PASSWORD } from '../harness.ts'
import { consolePage, launchBrowser, portalFrame, screenshot } from './browser.ts'
import { DOWNLOAD_SHA256, startDeviceApp } from './device-app.ts'
import { startPortal } from './portal-harness.ts'

const TIMEOUT = { timeout: 90_000 }

test('the device web app works inside the console iframe', TIMEOUT, async (t) => {
  const browser = await launchBrowser(t)
  if (!browser) return
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port })
  const origin = `http://${p.host}`
  const page = await consolePage(browser, p.relay.token)
  await page.goto(`${p.relay.relay.url}/console/devices/gw/portal/web`)
  let frame = await portalFrame(page, origin)
  assert.equal(new URL(frame.url()).pathname, '/', 'the signed link redirects to the portal root')
  await page.waitForSelector('#status[data-state="online"]')
  assert.match((await page.textContent('#title')) ?? '', /gw · web/)

  // Root-relative assets load from the portal origin.
  await frame.waitForSelector('#logo')
  await frame.waitForFunction(() => document.documentElement.dataset.appJs === 'loaded')
  assert.equal(
    await frame.evaluate(() => getComputedStyle(document.body).backgroundColor),
    'rgb(250, 240, 200)',
  )
  assert.equal(
    await frame.evaluate(() => (document.getElementById('logo') as HTMLImageElement).naturalWidth),
    40,
  )

  // Login form → device cookie → absolute redirect on the device's address, which lands inside the portal.
  await frame.click('#to-login')
  await frame.waitForSelector('#password')
  await frame.fill('#password', 'secret')
  await frame.click('#submit')
  await frame.waitForSelector('#who')
  assert.equal(frame.url(), `${origin}/dashboard`)
  await frame.goto(`${origin}/dashboard`)
  assert.equal(await frame.textContent('#who'), 'signed in as admin', 'the device cookie sticks')
  await screenshot(page, 'portal-dashboard')

  // A page sending X-Frame-Options: DENY still displays in the console's frame.
  await frame.goto(`${origin}/framed`)
  assert.equal(await frame.textContent('#framed'), 'this page sends X-Frame-Options: DENY')

  // WebSocket echo and server-sent events from inside the frame.
  frame = page.frames().find((f) => f.url().startsWith(origin)) ?? frame
  const echo = await frame.evaluate(
    () =>
      new Promise<string>((resolve, reject) => {
        const ws = new WebSocket(`ws://${location.host}/ws`)
        ws.onopen = () => ws.send('ping over the portal')
        ws.onmessage = (event) => resolve(String(event.data))
        ws.onerror = () => reject(new Error('websocket failed'))
      }),
  )
  assert.equal(echo, 'ping over the portal')
  const events = await frame.evaluate(
    () =>
      new Promise<string[]>((resolve, reject) => {
        const got: string[] = []
        const source = new EventSource('/events')
        source.onmessage = (event) => {
          got.push(event.data)
          if (got.length === 3) {
            source.close()
            resolve(got)
          }
        }
        source.onerror = () => reject(new Error('event stream failed'))
      }),
  )
  assert.deepEqual(events, ['tick 1', 'tick 2', 'tick 3'])

  // 50 MiB download, hashed in the page.
  const downloaded = await frame.evaluate(async () => {
    const buf = await (await fetch('/download')).arrayBuffer()
    const digest = await crypto.subtle.digest('SHA-256', buf)
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('')
  })
  assert.equal(downloaded, DOWNLOAD_SHA256)

  // Upload a file chosen in a file input.
  const file = randomBytes(8 * 1024 * 1024)
  await frame.goto(`${origin}/tools`)
  await frame.setInputFiles('#file', {
    name: 'firmware.bin',
    mimeType: 'application/octet-stream',
    buffer: file,
  })
  const uploaded = await frame.evaluate(async () => {
    const input = document.getElementById('file') as HTMLInputElement
    const res = await fetch('/upload', { method: 'POST', body: input.files?.[0] })
    return (await res.json()) as { bytes: number; sha256: string }
  })
  assert.deepEqual(uploaded, { bytes: file.length, sha256: createHash('sha256').update(file).digest('hex') })
  await screenshot(page, 'portal-tools')
})

test('portal origins are isolated and a portal without a session answers 401', TIMEOUT, async (t) => {
  const browser = await launchBrowser(t)
  if (!browser) return
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port })
  const second = await p.relay.api<{ status: { portal: { label: string } } }>('POST', '/v1/server/proxies', {
    id: 'web2',
    protocol: 'http-iotmp',
    source: { port: 0 },
    target: { type: 'device', user: 'admin', device: 'gw', address: '127.0.0.1', port: app.port },
  })
  const otherOrigin = `http://${second.body.status.portal.label}.portal.localhost:${p.relay.relay.port}`
  const page = await consolePage(browser, p.relay.token)

  await page.goto(`${p.relay.relay.url}/console/devices/gw/portal/web`)
  const a = await portalFrame(page, `http://${p.host}`)
  await a.goto(`http://${p.host}/set-shared-cookie?who=a`)
  assert.match(await a.evaluate(() => document.cookie), /shared=from-a/)

  await page.goto(`${p.relay.relay.url}/console/devices/gw/portal/web2`)
  const b = await portalFrame(page, otherOrigin)
  assert.doesNotMatch(await b.evaluate(() => document.cookie), /shared/)
  const seen = await b.evaluate(
    async () => (await (await fetch('/echo-headers')).json()) as Record<string, string>,
  )
  assert.doesNotMatch(seen.cookie ?? '', /shared|tether_portal/)

  const direct = await browser.newPage()
  const res = await direct.goto(`http://${p.host}/`)
  assert.equal(res?.status(), 401)
  assert.match((await direct.textContent('h1')) ?? '', /Portal session required/)
})

test('the portal page asks for a sign-in when it has no token, then shows the portal', TIMEOUT, async (t) => {
  const browser = await launchBrowser(t)
  if (!browser) return
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port })
  const page = await browser.newPage({ viewport: { width: 390, height: 800 } })
  await page.goto(`${p.relay.relay.url}/console/devices/gw/portal/web`)
  await page.fill('input[name="username"]', 'admin')
  await page.fill('input[name="password"]', 'wrong-password')
  await page.click('#login button[type="submit"]')
  assert.match(
    (await page.waitForSelector('#login-error:not(:empty)').then((e) => e.textContent())) ?? '',
    /invalid/,
  )
  await page.fill('input[name="password"]', ADMIN_PASSWORD)
  await page.click('#login button[type="submit"]')
  const frame = await portalFrame(page, `http://${p.host}`)
  await frame.waitForSelector('#logo')
  assert.equal(await page.isHidden('#login'), true)
  await screenshot(page, 'portal-narrow-after-sign-in')
})
