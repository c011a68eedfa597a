/** HTTP client side of bench/bucket-read.ts: keep-alive JSON requests and a streamed download that counts lines. */
import http from 'node:http'

/** One keep-alive connection pool per bench run. */
export const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })

/** Sends a request and answers status and body text; rejects on network errors. */
export function request(
  url: string,
  method: string,
  token: string,
  body?: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = {}
    if (token) headers.authorization = `Bearer ${token}`
    if (body !== undefined) {
      headers['content-type'] = 'application/json'
      headers['content-length'] = Buffer.byteLength(body)
    }
    const req = http.request(url, { method, agent, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
      )
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** JSON request that must answer `expect`; parses the answer. */
export async function json<T>(
  url: string,
  method: string,
  token: string,
  body?: unknown,
  expect = 200,
): Promise<T> {
  const res = await request(url, method, token, body === undefined ? undefined : JSON.stringify(body))
  if (res.status !== expect) throw new Error(`${method} ${url}: ${res.status} ${res.text.slice(0, 300)}`)
  return (res.text ? JSON.parse(res.text) : undefined) as T
}

/** Downloads a streamed export, counting newline bytes as they arrive (no buffering); answers lines and bytes. */
export function countLines(url: string, token: string): Promise<{ lines: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume()
        return reject(new Error(`GET ${url}: ${res.statusCode}`))
      }
      let lines = 0
      let bytes = 0
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length
        for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++
      })
      res.on('end', () => resolve({ lines, bytes }))
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}
