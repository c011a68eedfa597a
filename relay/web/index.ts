/**
 * The relay's web pages under `/console`. For now the device portal page: the device's web UI in an iframe,
 * with its name and connection status. Plain ES modules and CSS from this folder, no build step.
 */
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'

export interface ConsoleOptions {
  portalDomain: string
  portalMode: 'subdomain' | 'path'
}

const asset = (name: string) => readFileSync(new URL(`./assets/${name}`, import.meta.url), 'utf8')

const ASSETS: Record<string, { type: string; body: string }> = {
  'portal-page.js': { type: 'text/javascript; charset=utf-8', body: asset('portal-page.js') },
  'console.css': { type: 'text/css; charset=utf-8', body: asset('console.css') },
}

const PAGE = asset('portal-page.html')

export default async function consolePlugin(app: FastifyInstance, opts: ConsoleOptions) {
  // Only the relay's own scripts run here; the iframe may only show portal origins.
  const frameSrc =
    opts.portalMode === 'path' ? "'self'" : `http://*.${opts.portalDomain}:* https://*.${opts.portalDomain}:*`
  const csp = `default-src 'self'; frame-src ${frameSrc}; img-src 'self' data:; base-uri 'none'; form-action 'self'`

  app.get(
    '/console/devices/:device/portal/:proxy',
    { schema: { params: Type.Object({ device: Type.String(), proxy: Type.String() }) } },
    async (_req, reply) => {
      reply
        .header('content-security-policy', csp)
        .header('x-frame-options', 'DENY')
        .header('cache-control', 'no-store')
        .type('text/html; charset=utf-8')
      return PAGE
    },
  )

  app.get(
    '/console/assets/:file',
    { schema: { params: Type.Object({ file: Type.String() }) } },
    async (req, reply) => {
      const file = ASSETS[(req.params as { file: string }).file]
      if (!file)
        return reply.code(404).send({ error: { code: 'TETHER_ERR_NOT_FOUND', message: 'no such asset' } })
      reply.header('cache-control', 'no-cache').type(file.type)
      return file.body
    },
  )
}
