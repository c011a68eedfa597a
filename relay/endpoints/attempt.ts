/** What one attempt of a call reports, shared by the HTTP and MQTT targets. */

export interface Attempt {
  ok: boolean
  /** http: the answer's status. */
  status?: number
  error?: string
  /** Worth trying again (timeouts, network errors, 5xx, 408, 429); a 4xx or a closing relay is not. */
  retryable: boolean
}

/** Template variables of a call. */
export interface CallVars {
  /** The payload as JSON text. */
  payload: string
  /** The device the call is made for, else empty. */
  device: string
}

/** Substitutes `{{payload}}` and `{{device}}` in one pass, so text inside the payload is never expanded. */
export function renderTemplate(template: string, vars: CallVars): string {
  return template.replace(/\{\{\s*(payload|device)\s*\}\}/g, (_, name: 'payload' | 'device') => vars[name])
}

/** An abort signal for one attempt: the relay closing or the attempt's own timeout. */
export function attemptSignal(closing: AbortSignal, timeoutMs: number): AbortSignal {
  return AbortSignal.any([closing, AbortSignal.timeout(timeoutMs)])
}

/** Names why an attempt was aborted: the relay closing wins over the timeout. */
export function abortReason(closing: AbortSignal, timeoutMs: number): Attempt {
  if (closing.aborted) return { ok: false, error: 'relay closing', retryable: false }
  return { ok: false, error: `timeout after ${timeoutMs} ms`, retryable: true }
}

/** Settles with `promise`, or rejects as soon as `signal` aborts (the promise's own outcome is then ignored). */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    if (signal.aborted) {
      promise.catch(() => {})
      return onAbort()
    }
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}
