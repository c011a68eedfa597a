/**
 * Serves portals on the relay's HTTP server, ahead of fastify: finds the portal a request is for (by Host in
 * subdomain mode, by `/portal/<label>/` in path mode), checks the session cookie, then proxies the request, or
 * passes a WebSocket upgrade through as a raw stream, to the device over a tunnel stream.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { splice } from '../../protocol/splice.ts'
import { PORTAL_COOKIE, type PortalView, requestHeaders, responseHeaders } from './header-policy.ts'
import { sendPortalPage, upstreamFailure } from './portal-pages.ts'
import type { Portal, PortalRegistry } from './portal-registry.ts'
import type { PortalSessions } from './portal-sessions.ts'
import type { PortalSession } from './schemas.ts'

/** Path on every portal origin that spends a signed link's ticket. */
export const OPEN_PATH = '/.tether-portal/open'

/** Prefix of portals in path mode. */
export const PATH_MODE_PREFIX = '/portal/'

export interface PortalServerOptions {
  registry: PortalRegistry
  sessions: PortalSessions
  portalDomain: string
  mode: 'subdomain' | 'path'
  responseTimeoutMs: number
  /** The relay terminates TLS itself. */
  https: boolean
  trustProxy: boolean
  log: Logger
}

/** A request addressed to a portal. */
export interface PortalMatch {
  label: string
  /** `/portal/<label>` in path mode, else empty. */
  prefix: string
  /** Path and query for the device. */
  path: string
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS'])

/** Host names browsers treat as secure over plain http (Secure and SameSite=None cookies work there). */
function isLoopbackName(hostname: string): boolean {
  return (
    hostname === 'localhost' ||
    hostname.endsWith('.localhost') ||
    hostname === '127.0.0.1' ||
    hostname === '[::1]'
  )
}

/** The value of cookie `name` in a Cookie header. */
function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of header?.split(';') ?? []) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

class PortalTimeoutError extends Error {
  readonly code = 'TETHER_ERR_PORTAL_TIMEOUT'
}

export class PortalServer {
  readonly #o: PortalServerOptions
  readonly #suffix: string

  constructor(opts: PortalServerOptions) {
    this.#o = opts
    this.#suffix = `.${opts.portalDomain}`
  }

  /** The portal `req` is for, or undefined when it belongs to the relay's own routes. */
  match(req: IncomingMessage): PortalMatch | undefined {
    const url = req.url ?? '/'
    if (this.#o.mode === 'path') {
      if (!url.startsWith(PATH_MODE_PREFIX)) return undefined
      const rest = url.slice(PATH_MODE_PREFIX.length)
      const end = rest.search(/[/?]/)
      const label = end === -1 ? rest : rest.slice(0, end)
      const path = end === -1 ? '' : rest.slice(end)
      return { label, prefix: `${PATH_MODE_PREFIX}${label}`, path }
    }
    const host = (req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '')
    if (!host.endsWith(this.#suffix)) return undefined
    return { label: host.slice(0, -this.#suffix.length), prefix: '', path: url }
  }

  /** Handles a plain HTTP request addressed to a portal. */
  handleRequest(req: IncomingMessage, res: ServerResponse, match: PortalMatch): void {
    const portal = this.#admit(req, res, match)
    if (!portal) return
    const { view, entry } = portal
    this.#forward(req, res, entry, view, match.path, false)
  }

  /** Handles an Upgrade (WebSocket) addressed to a portal: the device's answer passes through untouched. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, match: PortalMatch): void {
    const res = new http.ServerResponse(req)
    res.assignSocket(socket as never)
    res.on('finish', () => socket.end())
    const admitted = this.#admit(req, res, match)
    if (!admitted) return
    res.detachSocket(socket as never)
    const { entry, view } = admitted
    socket.on('error', () => {})
    entry.open().then(
      (stream) => {
        if (socket.destroyed) return void stream.destroy()
        const headers = requestHeaders(req.headers, view, {
          ip: req.socket.remoteAddress,
          proto: this.#proto(req),
          upgrade: true,
          trustForwarded: this.#o.trustProxy,
        })
        let headText = `${req.method} ${match.path || '/'} HTTP/1.1\r\n`
        for (const [name, value] of Object.entries(headers)) {
          for (const v of Array.isArray(value) ? value : [value])
            if (v !== undefined) headText += `${name}: ${v}\r\n`
        }
        stream.write(`${headText}\r\n`)
        if (head.length) stream.write(head)
        splice(socket, stream)
      },
      (err: Error) => {
        const failure = upstreamFailure(err)
        entry.stats.reject(err.message)
        socket.end(
          `HTTP/1.1 ${failure.status} ${http.STATUS_CODES[failure.status]}\r\nContent-Type: text/plain\r\n` +
            `Connection: close\r\n\r\n${failure.title}: ${failure.detail}\n`,
        )
      },
    )
  }

  /** Session and source checks; answers the refusal itself and returns undefined when refused. */
  #admit(
    req: IncomingMessage,
    res: ServerResponse,
    match: PortalMatch,
  ): { entry: Portal; view: PortalView; session: PortalSession } | undefined {
    const entry = this.#o.registry.byLabel(match.label)
    if (!entry) {
      sendPortalPage(
        res,
        404,
        'No such portal',
        'No enabled HTTP portal has this address. Open it again from the console.',
      )
      return undefined
    }
    const refusal = entry.guard.refusal(req.socket.remoteAddress, 0)
    if (refusal) {
      entry.stats.reject(refusal)
      sendPortalPage(res, 403, 'Not allowed from your address', `Portal ${entry.profile.id}: ${refusal}.`)
      return undefined
    }
    if (match.prefix && match.path === '') {
      res.writeHead(301, { location: `${match.prefix}/` }).end()
      return undefined
    }
    const pathname = match.path.split('?')[0]
    if (pathname === OPEN_PATH) {
      this.#openSession(req, res, match)
      return undefined
    }
    const session = this.#o.sessions.verify(cookieValue(req.headers.cookie, PORTAL_COOKIE), match.label)
    if ('error' in session) {
      sendPortalPage(
        res,
        401,
        'Portal session required',
        `${session.error} Open it again from its Tether page (/console/devices/${entry.profile.target.device}/portal/${entry.profile.id}) or get a fresh link with: tether proxy portal ${entry.profile.id}`,
      )
      return undefined
    }
    return { entry, session, view: this.#view(req, entry, match, session) }
  }

  /** Spends the ticket of a signed link: sets the session cookie and redirects to the portal's root. */
  #openSession(req: IncomingMessage, res: ServerResponse, match: PortalMatch): void {
    const ticket = new URL(match.path, 'http://x').searchParams.get('ticket') ?? ''
    const result = this.#o.sessions.redeem(ticket, match.label)
    if ('error' in result) {
      sendPortalPage(res, 401, 'Portal link not valid', `${result.error} Ask the console for a new one.`)
      return
    }
    const { token, session } = result
    const host = (req.headers.host ?? '').replace(/:\d+$/, '')
    const secure = this.#proto(req) === 'https' || isLoopbackName(host)
    const maxAge = Math.max(1, Math.floor((session.expires_ts - Date.now()) / 1000))
    // Partitioned: the cookie is only sent under the top-level site that opened it (the console), which also
    // keeps other sites from riding it (CSRF); SameSite=None lets the console's iframe carry it at all.
    const attrs = secure ? 'SameSite=None; Secure; Partitioned' : 'SameSite=Lax'
    res.writeHead(302, {
      location: `${match.prefix}/`,
      'set-cookie': `${PORTAL_COOKIE}=${token}; Path=${match.prefix || '/'}; Max-Age=${maxAge}; HttpOnly; ${attrs}`,
      'cache-control': 'no-store',
      'referrer-policy': 'no-referrer',
    })
    res.end()
  }

  #proto(req: IncomingMessage): string {
    if (this.#o.https) return 'https'
    const forwarded = this.#o.trustProxy ? req.headers['x-forwarded-proto'] : undefined
    return typeof forwarded === 'string' ? (forwarded.split(',')[0]?.trim() ?? 'http') : 'http'
  }

  #view(req: IncomingMessage, entry: Portal, match: PortalMatch, session: PortalSession): PortalView {
    const proto = this.#proto(req)
    const host = req.headers.host ?? 'localhost'
    const { address, port, tls } = entry.profile.target
    const bracketed = address.includes(':') ? `[${address}]` : address
    const deviceHost = port === (tls ? 443 : 80) ? bracketed : `${bracketed}:${port}`
    return {
      portalOrigin: `${proto}://${host}`,
      prefix: match.prefix,
      deviceHost,
      deviceOrigin: `${tls ? 'https' : 'http'}://${deviceHost}`,
      preserveHost: entry.profile.portal?.preserveHost === true,
      frameAncestor: this.#o.mode === 'path' ? "'self'" : session.frame_ancestor,
      secureContext: proto === 'https' || isLoopbackName(host.replace(/:\d+$/, '')),
    }
  }

  #forward(
    req: IncomingMessage,
    res: ServerResponse,
    entry: Portal,
    view: PortalView,
    path: string,
    retry: boolean,
  ): void {
    const length = req.headers['content-length']
    const body = length !== undefined ? length !== '0' : req.headers['transfer-encoding'] !== undefined
    const headers = requestHeaders(req.headers, view, {
      ip: req.socket.remoteAddress,
      proto: this.#proto(req),
      trustForwarded: this.#o.trustProxy,
    })
    const upstream = http.request({
      agent: entry.agent,
      host: entry.label,
      method: req.method,
      path: path || '/',
      headers,
      setHost: false,
    })
    upstream.setTimeout(this.#o.responseTimeoutMs, () => {
      upstream.destroy(
        new PortalTimeoutError(
          `no response from ${view.deviceHost} within ${this.#o.responseTimeoutMs / 1000} s`,
        ),
      )
    })
    upstream.once('response', (answer) => {
      upstream.setTimeout(0) // streams (SSE, long downloads) may stay quiet for long
      const status = answer.statusCode ?? 0
      // Drops the device's connection; its late errors must not touch the page answered instead.
      const drop = () => {
        upstream.removeAllListeners('error')
        upstream.on('error', () => {})
        answer.destroy()
        upstream.destroy()
      }
      // A device may send anything: a status Node cannot write (000, 099) or a header or reason phrase with
      // control characters would throw in writeHead and take the relay down. Node's own reason phrase is used.
      if (status < 100 || status > 599) {
        drop()
        entry.stats.error(`device answered an invalid status ${status}`)
        sendPortalPage(
          res,
          502,
          'Invalid answer from the device',
          `The device answered with HTTP status ${status}.`,
        )
        return
      }
      try {
        res.writeHead(status, responseHeaders(answer.rawHeaders, view).flat())
      } catch (err) {
        drop()
        entry.stats.error(`device answer not forwardable: ${(err as Error).message}`)
        if (!res.headersSent)
          sendPortalPage(res, 502, 'Invalid answer from the device', (err as Error).message)
        else res.destroy()
        return
      }
      // A response of unknown length (event streams, chunked pages): headers now, not with the first chunk.
      if (answer.headers['content-length'] === undefined) res.flushHeaders()
      // pipe, not pipeline: pipeline's AbortController costs ~20 % of the relay's CPU per small request.
      answer.once('error', (err) => res.destroy(err))
      answer.pipe(res)
    })
    upstream.once('error', (err: Error) => {
      // A pooled stream the device closed while idle: replay an idempotent request once on a fresh one.
      if (!retry && upstream.reusedSocket && IDEMPOTENT.has(req.method ?? '') && !body && !res.headersSent) {
        this.#forward(req, res, entry, view, path, true)
        return
      }
      if (res.headersSent) {
        res.destroy(err)
        return
      }
      const failure = upstreamFailure(err)
      entry.stats.error(err.message)
      this.#o.log.warn({ proxy: entry.profile.id }, `portal ${entry.profile.id}: ${err.message}`)
      sendPortalPage(res, failure.status, failure.title, failure.detail)
    })
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy()
    })
    if (!body || req.readableEnded) upstream.end()
    else {
      req.once('error', (err) => upstream.destroy(err))
      req.pipe(upstream)
    }
  }
}
