/** The short HTML pages a portal answers with when it cannot show the device (never a hang, never a blank). */
import type { ServerResponse } from 'node:http'
import { WireErrorCode } from '../../protocol/messages.ts'

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

/** Answers `status` with a small self-contained page; `detail` is shown verbatim (escaped). */
export function sendPortalPage(res: ServerResponse, status: number, title: string, detail: string): void {
  const body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>${escapeHtml(title)}</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:40rem;padding:0 1rem;color:#222}
h1{font-size:1.25rem}code{background:#f3f3f3;padding:0 .25rem}p.s{color:#777;font-size:.85rem}</style></head>
<body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(detail)}</p><p class="s">Tether portal · HTTP ${status}</p></body></html>
`
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    // Error pages may be framed by anyone: they carry no device content.
    'x-tether-portal-error': String(status),
  })
  res.end(body)
}

/** A failure to reach or hear from the device, as the status and page a browser gets. */
export function upstreamFailure(err: Error): { status: number; title: string; detail: string } {
  const wire = (err.cause as { wireCode?: number } | undefined)?.wireCode
  if (/ is offline$/.test(err.message)) {
    return {
      status: 502,
      title: 'Device offline',
      detail: `${err.message}: its agent is not connected to the relay.`,
    }
  }
  if (wire === WireErrorCode.TARGET_NOT_ALLOWED) {
    return { status: 502, title: "Refused by the agent's allowlist", detail: err.message }
  }
  if (wire === WireErrorCode.DIAL_TIMEOUT || wire === WireErrorCode.REQUEST_TIMEOUT) {
    return { status: 504, title: 'The device did not answer', detail: err.message }
  }
  if ((err as NodeJS.ErrnoException).code === 'TETHER_ERR_PORTAL_TIMEOUT') {
    return { status: 504, title: 'The device did not answer', detail: err.message }
  }
  if (wire !== undefined) return { status: 502, title: 'Cannot reach the device', detail: err.message }
  return {
    status: 502,
    title: 'The device closed the connection',
    detail: `The device's web server closed the connection without a complete answer (${err.message}).`,
  }
}
