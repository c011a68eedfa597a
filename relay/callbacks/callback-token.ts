/** Device callback tokens: Thinger's `{jti: "DeviceCallback_<device>", usr}` JWT, plus a token id for rotation. */
import type { FastifyInstance } from 'fastify'
import type { DeviceRecord } from '../devices/schemas.ts'

interface CallbackClaims {
  jti: string
  usr: string
  /** The device's current token id; regenerating the token changes it, which revokes older tokens. */
  tid: string
}

/** Signs the callback token of an HTTP device (no expiry: it lives until regenerated). */
export function signCallbackToken(app: FastifyInstance, record: DeviceRecord): string {
  const claims: CallbackClaims = {
    jti: `DeviceCallback_${record.device}`,
    usr: record.user,
    tid: record.callback?.token_id ?? '',
  }
  return app.jwt.sign(claims)
}

/** True when `token` is the current callback token of `record` (another device's or a revoked one is not). */
export function isCallbackToken(
  app: FastifyInstance,
  token: string | undefined,
  record: DeviceRecord,
): boolean {
  if (!token || record.type !== 'http' || !record.callback) return false
  try {
    const claims = app.jwt.verify<Partial<CallbackClaims>>(token)
    return (
      claims.jti === `DeviceCallback_${record.device}` &&
      claims.usr === record.user &&
      claims.tid === record.callback.token_id
    )
  } catch {
    return false
  }
}
