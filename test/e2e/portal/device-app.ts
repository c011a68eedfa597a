/**
 * A device web UI written for the portal tests, with what real router and camera UIs do that breaks naive
 * proxies: root-relative links and assets, a login form that sets a cookie and redirects to an absolute URL
 * on the device's own address, a page with X-Frame-Options: DENY, a WebSocket echo, server-sent events, a large
 * download and a file upload, plus a Domain cookie that must not leak to other portals.
 */
import { createHash } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'
import { WebSocketServer } from 'ws'

/** Deterministic download content: byte i is (i * 31 + 7) & 0xff. */
export function downloadBytes(size: number): Buffer {
  const buf = Buffer.allocUnsafe(size)
  for (let i = 0; i < size; i++) buf[i] = (i * 31 + 7) & 0xff
  return buf
}

export const DOWNLOAD_BYTES = 50 * 1024 * 1024
const download = downloadBytes(DOWNLOAD_BYTES)
export const DOWNLOAD_SHA256 = createHash('sha256').update(download).digest('hex')

const page = (title: string, body: string) => `<!doctype html>
<html><head><meta charset="utf-8"><title>${title}</title><link rel="stylesheet" href="/static/app.css">
<script src="/static/app.js" defer></script></head><body><h1>${title}</h1>${body}</body></html>`

/** What the device saw, for assertions on the proxy's header policy. */
export interface DeviceRequestLog {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
}

export interface DeviceApp {
  port: number
  requests: DeviceRequestLog[]
  /** Sends the next event of `/events-held`, which otherwise holds its stream open after the first. */
  releaseEvent(): void
}

/** Starts the device app on 127.0.0.1:0; closed after the test. */
export async function startDeviceApp(t: TestContext): Promise<DeviceApp> {
  const requests: DeviceRequestLog[] = []
  const sessions = new Set<string>()
  const held: http.ServerResponse[] = []
  let released = 0
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    const url = new URL(req.url ?? '/', 'http://device')
    const cookies = Object.fromEntries(
      (req.headers.cookie ?? '').split(';').map((c) => c.trim().split('=') as [string, string]),
    )
    const html = (status: number, body: string, headers: http.OutgoingHttpHeaders = {}) =>
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers }).end(body)
    switch (url.pathname) {
      case '/':
        return html(
          200,
          page(
            'Device home',
            `<img id="logo" src="/static/logo.svg" alt="logo">
<p><a id="to-login" href="/login">Log in</a> · <a href="/framed">Framed page</a> · <a href="/tools">Tools</a></p>`,
          ),
        )
      case '/static/app.css':
        return res
          .writeHead(200, { 'content-type': 'text/css' })
          .end('body { background: rgb(250, 240, 200); }')
      case '/static/app.js':
        return res
          .writeHead(200, { 'content-type': 'text/javascript' })
          .end('document.documentElement.dataset.appJs = "loaded"')
      case '/static/logo.svg':
        return res
          .writeHead(200, { 'content-type': 'image/svg+xml' })
          .end(
            '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20"/></svg>',
          )
      case '/login':
        if (req.method === 'POST') {
          let body = ''
          req.on('data', (c) => {
            body += c
          })
          req.on('end', () => {
            const form = new URLSearchParams(body)
            if (form.get('password') !== 'secret') return html(403, page('Login failed', ''))
            const sid = `s${sessions.size + 1}x${Date.now()}`
            sessions.add(sid)
            // Absolute, on the device's own address, as many embedded servers answer.
            res.writeHead(302, {
              location: `http://${req.headers.host}/dashboard`,
              'set-cookie': `devsid=${sid}; Path=/; HttpOnly; SameSite=Strict`,
            })
            res.end()
          })
          return
        }
        return html(
          200,
          page(
            'Login',
            `<form method="post" action="/login"><input name="user" value="admin">
<input id="password" name="password" type="password"><button id="submit" type="submit">Log in</button></form>`,
          ),
        )
      case '/dashboard':
        if (!sessions.has(cookies.devsid ?? '')) {
          return res.writeHead(302, { location: '/login' }).end()
        }
        return html(200, page('Dashboard', `<p id="who">signed in as admin</p>`))
      case '/framed':
        return html(200, page('Framed', '<p id="framed">this page sends X-Frame-Options: DENY</p>'), {
          'x-frame-options': 'DENY',
          'content-security-policy': "frame-ancestors 'none'; img-src 'self'",
        })
      case '/tools':
        return html(
          200,
          page('Tools', '<input id="file" type="file"><p id="upload-result"></p><p id="ws-result"></p>'),
        )
      case '/events':
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
        for (let i = 1; i <= 3; i++) setTimeout(() => res.write(`data: tick ${i}\n\n`), i * 20)
        setTimeout(() => res.end(), 100)
        return
      case '/events-held':
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
        res.write('data: first\n\n')
        held.push(res)
        return
      case '/no-answer':
        return // never answers: the portal's response timeout must
      case '/bytes': {
        // Generated on the fly, respecting backpressure: the device itself never holds the whole body.
        let left = Number(url.searchParams.get('n'))
        const chunk = downloadBytes(256 * 1024)
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': left })
        const pump = () => {
          while (left > 0) {
            const piece = left >= chunk.length ? chunk : chunk.subarray(0, left)
            left -= piece.length
            if (!res.write(piece)) return void res.once('drain', pump)
          }
          res.end()
        }
        return pump()
      }
      case '/download':
        return res
          .writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': download.length })
          .end(download)
      case '/upload': {
        const hash = createHash('sha256')
        let bytes = 0
        req.on('data', (c: Buffer) => {
          bytes += c.length
          hash.update(c)
        })
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json' })
          res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') }))
        })
        return
      }
      case '/set-shared-cookie':
        return html(200, page('Shared', ''), {
          'set-cookie': `shared=from-${url.searchParams.get('who')}; Domain=portal.localhost; Path=/`,
        })
      case '/echo-headers':
        res.writeHead(200, { 'content-type': 'application/json' })
        return res.end(JSON.stringify(req.headers))
      default:
        return html(404, page('Not found', ''))
    }
  })
  const wss = new WebSocketServer({ server, path: '/ws' })
  wss.on('connection', (ws, req) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    ws.on('message', (data, binary) => ws.send(data, { binary }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(async () => {
    for (const client of wss.clients) client.terminate()
    for (const res of held) res.destroy()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  const releaseEvent = () => {
    released++
    for (const res of held) res.write(`data: next ${released}\n\n`)
  }
  return { port: (server.address() as AddressInfo).port, requests, releaseEvent }
}
