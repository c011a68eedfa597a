/**
 * What the portal changes in headers on the way to the device and back (RFC 9110 hop-by-hop rules, Host and
 * Origin rewriting, Location and Set-Cookie mapping, framing policy). Pure functions over raw header lists.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'

/** Name of the relay's portal session cookie; never forwarded to the device. */
export const PORTAL_COOKIE = 'tether_portal'

/** Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy ones proxies still meet). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

/** Where the device is and how the browser sees the portal. */
export interface PortalView {
  /** Browser-facing origin, e.g. `https://router-gw1-1a2b3c4d.portal.example.com` or the relay's origin. */
  portalOrigin: string
  /** Path prefix in path mode (`/portal/<label>`), empty in subdomain mode. */
  prefix: string
  /** The Host the device expects (`192.168.1.1` or `192.168.1.1:8080`). */
  deviceHost: string
  /** `http://192.168.1.1` or `https://…`: the device's own origin. */
  deviceOrigin: string
  /** Send Host, Origin and Referer unchanged. */
  preserveHost: boolean
  /** Origin allowed to frame the portal (CSP frame-ancestors). */
  frameAncestor: string
  /** Cookies may carry `SameSite=None; Secure; Partitioned` (https, or a loopback name browsers trust). */
  secureContext: boolean
}

/** Names listed in `Connection` are hop-by-hop too. */
function connectionTokens(value: string | string[] | undefined): Set<string> {
  const list = Array.isArray(value) ? value.join(',') : (value ?? '')
  return new Set(
    list
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter(Boolean),
  )
}

/** The Cookie header without the portal's own session cookie (undefined when nothing is left). */
export function stripPortalCookie(cookie: string | undefined): string | undefined {
  if (!cookie) return undefined
  const kept = cookie
    .split(';')
    .map((c) => c.trim())
    .filter((c) => c && !c.startsWith(`${PORTAL_COOKIE}=`))
  return kept.length ? kept.join('; ') : undefined
}

/** Maps a URL on the portal origin to the same URL on the device (for Origin and Referer). */
function toDevice(value: string, view: PortalView): string {
  const base = view.portalOrigin + view.prefix
  if (value === view.portalOrigin || value === base) return view.deviceOrigin
  if (value.startsWith(`${base}/`)) return view.deviceOrigin + value.slice(base.length)
  return value
}

/** Request headers for the device: hop-by-hop removed, Host/Origin/Referer rewritten, X-Forwarded-* set. */
export function requestHeaders(
  headers: IncomingHttpHeaders,
  view: PortalView,
  client: { ip: string | undefined; proto: string; upgrade?: boolean; trustForwarded?: boolean },
): OutgoingHttpHeaders {
  const drop = connectionTokens(headers.connection)
  const out: OutgoingHttpHeaders = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || drop.has(name)) continue
    if (name.startsWith('x-forwarded-') || name === 'forwarded') continue
    // The relay's own server already answered 100 Continue; the device's would be a second one.
    if (name === 'expect') continue
    out[name] = value
  }
  const cookie = stripPortalCookie(headers.cookie)
  if (cookie) out.cookie = cookie
  else delete out.cookie
  if (!view.preserveHost) {
    out.host = view.deviceHost
    if (typeof headers.origin === 'string') out.origin = toDevice(headers.origin, view)
    if (typeof headers.referer === 'string') out.referer = toDevice(headers.referer, view)
  }
  if (client.upgrade) {
    out.connection = 'Upgrade'
    out.upgrade = headers.upgrade
  }
  // A client's own X-Forwarded-For is only extended when the relay sits behind a proxy it trusts.
  const forwardedFor = client.trustForwarded ? headers['x-forwarded-for'] : undefined
  out['x-forwarded-for'] = forwardedFor && client.ip ? `${forwardedFor}, ${client.ip}` : client.ip
  out['x-forwarded-host'] = new URL(view.portalOrigin).host
  out['x-forwarded-proto'] = client.proto
  if (view.prefix) out['x-forwarded-prefix'] = view.prefix
  return out
}

/** Maps a Location the device sent back onto the portal (absolute URLs on the device, and root paths in path mode). */
export function mapLocation(location: string, view: PortalView): string {
  let url: URL
  try {
    url = new URL(location, `${view.deviceOrigin}/`)
  } catch {
    return location
  }
  const absolute = /^[a-z][a-z0-9+.-]*:\/\//i.test(location) || location.startsWith('//')
  if (absolute) {
    const device = new URL(view.deviceOrigin)
    const samePort = (url.port || defaultPort(url.protocol)) === (device.port || defaultPort(device.protocol))
    const onDevice = url.hostname === device.hostname && samePort
    const onPortal = url.origin === view.portalOrigin
    if (!onDevice && !onPortal) return location
    const path =
      onPortal && url.pathname.startsWith(`${view.prefix}/`)
        ? url.pathname.slice(view.prefix.length)
        : url.pathname
    return `${view.portalOrigin}${view.prefix}${path}${url.search}${url.hash}`
  }
  if (view.prefix && location.startsWith('/') && !location.startsWith(`${view.prefix}/`))
    return view.prefix + location
  return location
}

function defaultPort(protocol: string): string {
  return protocol === 'https:' ? '443' : '80'
}

/**
 * A device cookie made to work on the portal: host-only (a `Domain` would reach sibling portals), path under
 * the prefix in path mode, and in a secure context `SameSite=None; Secure; Partitioned`, so that it is sent
 * inside the console's iframe and only there (partitioned by the framing top-level site).
 */
export function mapSetCookie(cookie: string, view: PortalView): string {
  const [pair, ...attrs] = cookie.split(';')
  const kept: string[] = []
  let path: string | undefined
  for (const raw of attrs) {
    const attr = raw.trim()
    const name = attr.split('=')[0]?.trim().toLowerCase()
    if (name === 'domain') continue
    if (name === 'path') {
      path = attr.slice(attr.indexOf('=') + 1).trim()
      continue
    }
    if (view.secureContext && (name === 'samesite' || name === 'secure' || name === 'partitioned')) continue
    if (attr) kept.push(attr)
  }
  const scoped = view.prefix ? `${view.prefix}${path?.startsWith('/') ? path : '/'}` : (path ?? '/')
  kept.push(`Path=${scoped}`)
  if (view.secureContext) kept.push('SameSite=None', 'Secure', 'Partitioned')
  return [pair?.trim(), ...kept].join('; ')
}

/** A device CSP without its `frame-ancestors` (the portal sends its own, as a separate policy). */
function withoutFrameAncestors(csp: string): string {
  return csp
    .split(';')
    .map((d) => d.trim())
    .filter((d) => d && !/^frame-ancestors(\s|$)/i.test(d))
    .join('; ')
}

/** Response headers for the browser as raw name/value pairs (repeated Set-Cookie kept apart). */
export function responseHeaders(rawHeaders: readonly string[], view: PortalView): [string, string][] {
  const out: [string, string][] = []
  let drop = new Set<string>()
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]?.toLowerCase() === 'connection') drop = connectionTokens(rawHeaders[i + 1])
  }
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string
    const value = rawHeaders[i + 1] as string
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || drop.has(lower)) continue
    // The device's framing and HSTS policies are replaced by the portal's own.
    if (lower === 'x-frame-options' || lower === 'strict-transport-security') continue
    if (lower === 'content-security-policy') {
      // Every CSP header is enforced on its own, so the device's other directives keep their meaning.
      const rest = withoutFrameAncestors(value)
      if (rest) out.push([name, rest])
      continue
    }
    if (lower === 'location') out.push([name, mapLocation(value, view)])
    else if (lower === 'set-cookie') out.push([name, mapSetCookie(value, view)])
    else out.push([name, value])
  }
  out.push(['Content-Security-Policy', `frame-ancestors ${view.frameAncestor}`])
  return out
}
