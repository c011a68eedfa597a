/** A minimal JSON HTTP(S) client for the relay's API. */
import http from 'node:http'
import https from 'node:https'

export interface HttpResponse {
  status: number
  body: unknown
  text: string
}

/** JSON request over http or https (https with a private CA); bounded by a timeout. */
export function request(
  method: string,
  url: string,
  opts: { body?: unknown; token?: string; ca?: string; timeoutMs?: number } = {},
): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body)
    const headers: Record<string, string> = { accept: 'application/json' }
    if (payload !== undefined) {
      headers['content-type'] = 'application/json'
      headers['content-length'] = String(Buffer.byteLength(payload))
    }
    if (opts.token) headers.authorization = `Bearer ${opts.token}`
    const reqOpts: https.RequestOptions = { method, headers, timeout: opts.timeoutMs ?? 10_000 }
    const onResponse = (res: http.IncomingMessage) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let body: unknown
        try {
          body = text ? JSON.parse(text) : undefined
        } catch {
          body = undefined
        }
        resolve({ status: res.statusCode ?? 0, body, text })
      })
      res.on('error', reject)
    }
    const req =
      u.protocol === 'https:'
        ? https.request(u, { ...reqOpts, ca: opts.ca }, onResponse)
        : http.request(u, reqOpts, onResponse)
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timed out`)))
    req.on('error', reject)
    if (payload !== undefined) req.write(payload)
    req.end()
  })
}
