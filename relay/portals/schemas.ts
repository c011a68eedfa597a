/** Portal API schemas; TypeScript types derive from them. */
import { type Static, Type } from 'typebox'

export const PortalSession = Type.Object({
  id: Type.String({ description: 'session id, for revocation' }),
  user: Type.String({ description: 'owner of the device' }),
  device: Type.String(),
  proxy: Type.String({ description: 'http-iotmp profile id' }),
  label: Type.String({ description: 'DNS label of the portal origin' }),
  opened_by: Type.String({ description: 'user who asked for the link' }),
  frame_ancestor: Type.String({ description: 'origin allowed to frame the portal' }),
  created_ts: Type.Integer(),
  expires_ts: Type.Integer(),
})
export type PortalSession = Static<typeof PortalSession>

export const PortalParams = Type.Object({
  user: Type.String(),
  device: Type.String(),
  proxy: Type.String(),
})
export type PortalParams = Static<typeof PortalParams>

export const PortalLinkRequest = Type.Object(
  {
    ttl_sec: Type.Optional(
      Type.Integer({ minimum: 1, description: "session lifetime; at most the relay's portalSessionTtlSec" }),
    ),
  },
  { additionalProperties: false },
)
export type PortalLinkRequest = Static<typeof PortalLinkRequest>

export const PortalLink = Type.Object({
  url: Type.String({ description: 'one-time signed URL: opens the session and redirects to the portal' }),
  url_expires_ts: Type.Integer(),
  origin: Type.String({ description: 'the portal origin (path mode: relay origin + /portal/<label>)' }),
  session: PortalSession,
})

export const SessionParams = Type.Object({
  user: Type.String(),
  device: Type.String(),
  proxy: Type.String(),
  session: Type.String(),
})
