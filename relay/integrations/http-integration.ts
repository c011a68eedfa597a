/**
 * ThingsBoard-compatible HTTP integration: `POST|PUT|GET /api/v1/integrations/http/{routingKey}[/{suffix}]`.
 * Headers reach the converter as metadata `Header:<name>`, the suffix as `suffix`. A device's pending downlink
 * is the answer; without one it is 204 (or 200 with `replaceNoContentToOk`).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { downlinkBytes } from '../../integrations/transport.ts'
import { RelayErrors } from '../errors.ts'
import { HttpBodyError, httpPayload, isJson, isText } from './http-body.ts'
import { type IntegrationManager, IntegrationUplinkError } from './integration-manager.ts'

/** Bodies beyond this are refused with 413: integration messages are device payloads, not uploads. */
const BODY_LIMIT = 1_048_576

const CONTENT_TYPE = {
  JSON: 'application/json',
  TEXT: 'text/plain; charset=utf-8',
  BINARY: 'application/octet-stream',
}

/** Registers the HTTP integration's routes; every body arrives raw and is decoded by content type here. */
export default async function httpIntegrationPlugin(
  app: FastifyInstance,
  { manager }: { manager: IntegrationManager },
) {
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: BODY_LIMIT }, (_req, body, done) =>
    done(null, body),
  )

  const handler = async (req: FastifyRequest, reply: FastifyReply) => {
    const { routingKey, '*': suffix } = req.params as { routingKey: string; '*'?: string }
    const rt = manager.byRoutingKey(routingKey)
    if (rt?.record.type !== 'http') throw new RelayErrors.TETHER_ERR_NOT_FOUND(`integration ${routingKey}`)
    if (!rt.enabled) throw new RelayErrors.TETHER_ERR_NOT_FOUND(`integration ${routingKey} (disabled)`)
    const security = rt.record.http?.security
    if (security?.enabled) {
      for (const [name, value] of Object.entries(security.headers)) {
        if (req.headers[name.toLowerCase()] !== value) {
          throw new RelayErrors.TETHER_ERR_FORBIDDEN(`header ${name} is missing or does not match`)
        }
      }
    }
    const metadata: Record<string, string> = {}
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) metadata[`Header:${name}`] = Array.isArray(value) ? value.join(', ') : value
    }
    if (suffix) metadata.suffix = suffix

    const contentType = req.headers['content-type']
    let payload: unknown
    try {
      if (req.method === 'GET') payload = { ...(req.query as Record<string, unknown>) }
      else {
        const body = (req.body as Buffer | undefined) ?? Buffer.alloc(0)
        payload = await httpPayload(contentType, body)
        // Thinger converters take parsed JSON and text rather than bytes.
        if (payload instanceof Uint8Array && (await manager.uplinkDialect(rt)) === 'thinger') {
          if (isJson(contentType)) payload = JSON.parse(body.toString('utf8'))
          else if (isText(contentType)) payload = body.toString('utf8')
        }
      }
    } catch (err) {
      if (err instanceof HttpBodyError) throw new RelayErrors.TETHER_ERR_BAD_REQUEST(err.message)
      throw err
    }

    let devices: string[]
    try {
      devices = (await manager.uplink(rt, { payload, metadata })).devices
    } catch (err) {
      if (err instanceof IntegrationUplinkError) {
        return reply.code(422).send({ error: { code: 'TETHER_ERR_UPLINK', message: err.message } })
      }
      throw err
    }
    const downlink = await manager.httpAnswer(rt, devices)
    if (!downlink) return reply.code(rt.record.http?.replaceNoContentToOk ? 200 : 204).send()
    return reply
      .code(200)
      .header('content-type', CONTENT_TYPE[downlink.contentType])
      .send(downlinkBytes(downlink))
  }

  for (const url of ['/api/v1/integrations/http/:routingKey', '/api/v1/integrations/http/:routingKey/*']) {
    app.route({ method: ['POST', 'PUT', 'GET'], url, handler })
  }
}
