/** Relay configuration of HTTP portals (http-iotmp profiles), merged into the relay's config schema. */
import { Type } from 'typebox'

export const portalConfigFields = {
  portalDomain: Type.String({
    default: 'portal.localhost',
    pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$',
    description:
      'portals are served at https://<label>.<portalDomain> (needs wildcard DNS; *.localhost resolves to loopback)',
  }),
  portalMode: Type.Union([Type.Literal('subdomain'), Type.Literal('path')], {
    default: 'subdomain',
    description:
      'subdomain: one origin per portal (recommended); path: /portal/<label>/ on the relay origin, where device pages share the console origin (trusted devices only)',
  }),
  portalSessionTtlSec: Type.Integer({
    minimum: 60,
    maximum: 30 * 24 * 3600,
    default: 3600,
    description: 'lifetime of a portal session (the cookie a signed URL sets)',
  }),
  portalLinkTtlSec: Type.Integer({
    minimum: 5,
    maximum: 3600,
    default: 60,
    description: 'lifetime of the one-time signed URL that opens a portal session',
  }),
  portalResponseTimeoutSec: Type.Integer({
    minimum: 1,
    maximum: 3600,
    default: 60,
    description: 'a device that sends no response headers within this time gets a 504 page',
  }),
}
