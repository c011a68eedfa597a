/** Device callback tokens: Thinger's `{jti: "DeviceCallback_<device>", usr}` JWT, plus a token id for rotation. */
import type { FastifyInstance } from 'fastify'
import type { DeviceRecord } from '../devices/schemas.ts'

interface CallbackClaims {
  jti: string
  usr: string
  /** The device's current token id; regenerating the token changes it, which revokes older tokens. */
  tid: string
}

/** Verified tokens kept at most (then the cache starts over). */
const VERIFIED_MAX = 10_000

/** Signs and checks callback tokens with the relay's JWT secret. */
export class CallbackTokens {
  /**
   * Tokens whose signature checked out, with their claims: a device sends the same token on every callback, and
   * a valid signature stays valid (revocation is the token id, compared on every call).
   */
  readonly #verified = new Map<string, Partial<CallbackClaims>>()

  constructor(readonly app: FastifyInstance) {}

  /** The callback token of an HTTP device (no expiry: it lives until regenerated). */
  sign(record: DeviceRecord): string {
    const claims: CallbackClaims = {
      jti: `DeviceCallback_${record.device}`,
      usr: record.user,
      tid: record.callback?.token_id ?? '',
    }
    return this.app.jwt.sign(claims)
  }

  /** True when `token` is the current callback token of `record` (another device's or a revoked one is not). */
  matches(token: string | undefined, record: DeviceRecord): boolean {
    if (!token || record.type !== 'http' || !record.callback) return false
    let claims = this.#verified.get(token)
    if (!claims) {
      try {
        claims = this.app.jwt.verify<Partial<CallbackClaims>>(token)
      } catch {
        return false
      }
      if (this.#verified.size >= VERIFIED_MAX) this.#verified.clear()
      this.#verified.set(token, claims)
    }
    return (
      claims.jti === `DeviceCallback_${record.device}` &&
      claims.usr === record.user &&
      claims.tid === record.callback.token_id
    )
  }
}
