/** RFC 9112 §3.2: a request with more than one Host is answered 400, so nothing routes on an ambiguous Host. */
import type { IncomingMessage } from 'node:http'

/** True when `req` carries at most one Host header (Node keeps only the first in `req.headers`). */
export function hasSingleHost(req: IncomingMessage): boolean {
  let n = 0
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.length === 4 && raw[i]?.toLowerCase() === 'host') n++
  return n <= 1
}

/** The 400 answer to a request with several Host headers. */
export const DUPLICATE_HOST_RESPONSE =
  'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 25\r\nConnection: close\r\n\r\nduplicate Host headers.\r\n'
