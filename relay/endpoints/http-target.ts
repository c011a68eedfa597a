/** Calls of `http` endpoints with Node's built-in fetch (undici 8 needs Node 22, so not the package). */
import { type Attempt, abortReason, attemptSignal, type CallVars, renderTemplate } from './attempt.ts'
import { DEFAULT_TIMEOUT_MS, type HttpConfig } from './schemas.ts'

/** Answers worth retrying besides 5xx: request timeout, too early, too many requests. */
const RETRYABLE_STATUS = new Set([408, 425, 429])

function isJson(text: string): boolean {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}

/** The request an `http` endpoint makes for one payload: method, headers and rendered body. */
export function httpRequest(config: HttpConfig, vars: CallVars): { headers: Headers; body?: string } {
  const headers = new Headers(config.headers ?? {})
  // fetch refuses a body on GET; the payload then only reaches the target through its headers or not at all.
  if (config.method === 'GET') return { headers }
  if (config.body === undefined) {
    if (!headers.has('content-type')) headers.set('content-type', 'application/json')
    return { headers, body: vars.payload }
  }
  const body = renderTemplate(config.body, vars)
  // A template that renders JSON is sent as JSON unless the endpoint says otherwise (fetch would say text/plain).
  if (!headers.has('content-type') && isJson(body)) headers.set('content-type', 'application/json')
  return { headers, body }
}

/** One attempt: a 2xx answer is a success, anything else a failure with its status or error. */
export async function httpAttempt(
  config: HttpConfig,
  vars: CallVars,
  closing: AbortSignal,
): Promise<Attempt> {
  const timeoutMs = config.timeout_ms ?? DEFAULT_TIMEOUT_MS
  const signal = attemptSignal(closing, timeoutMs)
  const { headers, body } = httpRequest(config, vars)
  try {
    const res = await fetch(config.url, { method: config.method, headers, body, signal })
    // The answer's body is not used: cancel it so the connection is released (its status is all we keep).
    await res.body?.cancel().catch(() => {})
    if (res.ok) return { ok: true, status: res.status, retryable: false }
    const retryable = res.status >= 500 || RETRYABLE_STATUS.has(res.status)
    return { ok: false, status: res.status, error: `HTTP ${res.status} ${res.statusText}`.trim(), retryable }
  } catch (err) {
    if (signal.aborted) return abortReason(closing, timeoutMs)
    return { ok: false, error: fetchError(err), retryable: true }
  }
}

/** fetch says only "fetch failed": the cause (ECONNREFUSED, a TLS error…) is what helps. */
function fetchError(err: unknown): string {
  const e = err as { message?: string; cause?: { message?: string; code?: string } }
  const cause = e.cause?.message ?? e.cause?.code
  return cause ? `${e.message ?? 'request failed'}: ${cause}` : (e.message ?? String(err))
}
