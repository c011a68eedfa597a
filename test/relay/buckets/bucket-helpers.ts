/** Shared helpers of the bucket tests: users with their own tokens, bulk writes, error assertions. */
import assert from 'node:assert/strict'
import { createUserWithToken, type TestRelay } from '../../e2e/harness.ts'

export interface BucketView {
  bucket: string
  name: string
  description: string
  enabled: boolean
  config: { source: string; device?: string }
  retention_days?: number
  created_ts: number
}

export interface Point {
  ts: number
  val: Record<string, unknown>
}

interface ErrorBody {
  error: { code: string; message: string }
}

export type Api = <T = unknown>(
  method: string,
  path: string,
  body?: unknown,
) => Promise<{ status: number; body: T }>

/** A user of the relay with its own token; `base` is `/v1/users/<name>/buckets`. */
export interface TestUser {
  name: string
  token: string
  base: string
  api: Api
}

/** Asserts an error answer: status, `{error: {code, message}}`, and that the message matches. */
export function assertError(res: { status: number; body: unknown }, status: number, message?: RegExp): void {
  assert.equal(res.status, status, JSON.stringify(res.body))
  const { error } = res.body as ErrorBody
  assert.equal(typeof error?.code, 'string', JSON.stringify(res.body))
  assert.equal(typeof error?.message, 'string')
  if (message) assert.match(error.message, message)
}

/** Creates a `user`-role account (as admin) and logs it in. */
export async function createUser(relay: TestRelay, name: string): Promise<TestUser> {
  return { ...(await createUserWithToken(relay, name)), base: `/v1/users/${name}/buckets` }
}

/** Creates a bucket and asserts the 201. */
export async function createBucket(u: TestUser, body: Record<string, unknown>): Promise<BucketView> {
  const res = await u.api<BucketView>('POST', u.base, body)
  assert.equal(res.status, 201, JSON.stringify(res.body))
  return res.body
}

/** Writes points through the API in arrays of `chunk`, a few requests at a time. */
export async function writePoints(
  u: TestUser,
  bucket: string,
  points: unknown[],
  chunk = 1000,
): Promise<void> {
  const path = `${u.base}/${bucket}/data`
  const bodies: unknown[][] = []
  for (let i = 0; i < points.length; i += chunk) bodies.push(points.slice(i, i + chunk))
  for (let i = 0; i < bodies.length; i += 4) {
    const results = await Promise.all(
      bodies.slice(i, i + 4).map((b) => u.api<{ written: number }>('POST', path, b)),
    )
    for (const [j, res] of results.entries()) {
      assert.equal(res.status, 200, JSON.stringify(res.body))
      assert.equal(res.body.written, (bodies[i + j] as unknown[]).length)
    }
  }
}

/** GET with the user's token, answering the raw response (exports). */
export function fetchAs(relay: TestRelay, u: TestUser, path: string): Promise<Response> {
  return fetch(`${relay.relay.url}${path}`, { headers: { authorization: `Bearer ${u.token}` } })
}

/** Parses RFC 4180 CSV (quoted fields, doubled quotes, CRLF) into rows of fields. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = []
  let row: string[] = []
  let field = ''
  let i = 0
  while (i < text.length) {
    const c = text[i] as string
    if (c === '"' && field === '') {
      // A quoted field: up to the lone closing quote.
      i++
      for (;;) {
        const q = text.indexOf('"', i)
        if (q < 0) throw new Error('unterminated quoted field')
        field += text.slice(i, q)
        if (text[q + 1] === '"') {
          field += '"'
          i = q + 2
        } else {
          i = q + 1
          break
        }
      }
    } else if (c === ',') {
      row.push(field)
      field = ''
      i++
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field)
      rows.push(row)
      row = []
      field = ''
      i += 2
    } else {
      field += c
      i++
    }
  }
  if (field !== '' || row.length > 0) {
    row.push(field)
    rows.push(row)
  }
  return rows
}
