/** Portal bodies stream both ways in constant memory; event streams flush at once; WebSockets pass through. */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import http from 'node:http'
import { Readable } from 'node:stream'
import { test } from 'node:test'
import WebSocket from 'ws'
import { downloadBytes, startDeviceApp } from './device-app.ts'
import { portalRequest, startPortal } from './portal-harness.ts'

const GIB = 1024 * 1024 * 1024

/** Samples this process's RSS until stopped; returns the peak growth over the starting value, in MiB. */
function rssWatch(): () => number {
  const start = process.memoryUsage().rss
  let peak = start
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss)
  }, 20)
  return () => {
    clearInterval(timer)
    return (peak - start) / (1024 * 1024)
  }
}

/** `n` bytes of the device app's pattern, produced lazily. */
function patternStream(n: number): Readable {
  const chunk = downloadBytes(256 * 1024)
  let left = n
  return new Readable({
    read() {
      if (left <= 0) return void this.push(null)
      const piece = left >= chunk.length ? chunk : chunk.subarray(0, left)
      left -= piece.length
      this.push(piece)
    },
  })
}

function patternHash(n: number): string {
  const hash = createHash('sha256')
  const chunk = downloadBytes(256 * 1024)
  for (let left = n; left > 0; left -= chunk.length)
    hash.update(left >= chunk.length ? chunk : chunk.subarray(0, left))
  return hash.digest('hex')
}

test('1 GiB download and 1 GiB upload stream through the portal in constant memory', {
  timeout: 90_000,
}, async (t) => {
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port })
  const cookie = await p.session()
  const expected = patternHash(GIB)

  const watchDown = rssWatch()
  const down = await new Promise<{ hash: string; bytes: number }>((resolve, reject) => {
    http
      .get(
        {
          host: '127.0.0.1',
          port: p.relay.relay.port,
          path: `/bytes?n=${GIB}`,
          headers: { host: p.host, cookie },
        },
        (res) => {
          const hash = createHash('sha256')
          let bytes = 0
          res.on('data', (c: Buffer) => {
            bytes += c.length
            hash.update(c)
          })
          res.on('end', () => resolve({ hash: hash.digest('hex'), bytes }))
          res.on('error', reject)
        },
      )
      .on('error', reject)
  })
  const downGrowth = watchDown()
  assert.equal(down.bytes, GIB)
  assert.equal(down.hash, expected)

  const watchUp = rssWatch()
  const up = await new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: p.relay.relay.port,
        path: '/upload',
        method: 'POST',
        headers: { host: p.host, cookie, 'content-type': 'application/octet-stream' },
      },
      (res) => {
        let text = ''
        res.on('data', (c) => {
          text += c
        })
        res.on('end', () => resolve(JSON.parse(text)))
      },
    )
    req.on('error', reject)
    patternStream(GIB).pipe(req)
  })
  const upGrowth = watchUp()
  assert.equal(up.bytes, GIB)
  assert.equal(up.sha256, expected)
  // Relay, agent, device and client share this process: buffering a body anywhere would add ~1024 MiB.
  assert.ok(downGrowth < 160, `download grew RSS by ${downGrowth.toFixed(0)} MiB`)
  assert.ok(upGrowth < 160, `upload grew RSS by ${upGrowth.toFixed(0)} MiB`)
})

test('server-sent events reach the browser as they are sent, not when the stream ends', async (t) => {
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port })
  const cookie = await p.session()
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http
      .get(
        {
          host: '127.0.0.1',
          port: p.relay.relay.port,
          path: '/events-held',
          headers: { host: p.host, cookie },
        },
        resolve,
      )
      .on('error', reject)
  })
  assert.equal(res.headers['content-type'], 'text/event-stream')
  let text = ''
  const next = (pattern: RegExp) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (pattern.test(text)) {
          res.off('data', onData)
          resolve()
        }
      }
      const onData = (c: Buffer) => {
        text += c
        check()
      }
      res.on('data', onData)
      check()
    })
  // The device holds the stream open after each event: these resolve only if every event is flushed at once.
  await next(/data: first/)
  app.releaseEvent()
  await next(/data: next 1/)
  app.releaseEvent()
  await next(/data: next 2/)
  res.destroy()
})

test('WebSocket upgrades pass through to the device, and need a session', async (t) => {
  const app = await startDeviceApp(t)
  const p = await startPortal(t, { devicePort: app.port })
  const cookie = await p.session()
  const url = `ws://127.0.0.1:${p.relay.relay.port}/ws`
  const ws = new WebSocket(url, { headers: { host: p.host, cookie, origin: `http://${p.host}` } })
  await new Promise((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
  })
  const echoes: string[] = []
  for (const text of ['hello', 'x'.repeat(200_000)]) {
    ws.send(text)
    echoes.push(await new Promise<string>((resolve) => ws.once('message', (d) => resolve(d.toString()))))
  }
  assert.deepEqual(echoes, ['hello', 'x'.repeat(200_000)])
  const upgrade = app.requests.find((r) => r.url === '/ws')
  assert.equal(upgrade?.headers.host, `127.0.0.1:${app.port}`)
  assert.equal(upgrade?.headers.origin, `http://127.0.0.1:${app.port}`)
  assert.equal(upgrade?.headers.cookie, undefined)
  ws.close()

  const anonymous = new WebSocket(url, { headers: { host: p.host } })
  const status = await new Promise<number>((resolve) =>
    anonymous.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)),
  )
  assert.equal(status, 401)
  assert.equal((await portalRequest(p.relay.relay.port, p.host, '/', { headers: { cookie } })).status, 200)
})
