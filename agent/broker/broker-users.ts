/**
 * Username/password check of the broker's CONNECT (config `broker.users`). Passwords are compared as SHA-256
 * digests with timingSafeEqual, so neither a password's length nor its first wrong byte shows in the timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto'

const digest = (value: string | Uint8Array) => createHash('sha256').update(value).digest()

/** Whether a CONNECT's credentials are one of `users`; anyone may connect when `users` is undefined. */
export type CredentialCheck = (username: string | undefined, password: Uint8Array | undefined) => boolean

export function credentialCheck(
  users?: ReadonlyArray<{ username: string; password: string }>,
): CredentialCheck {
  if (users === undefined) return () => true
  const byName = new Map(users.map((u) => [u.username, digest(u.password)]))
  // Compared even for an unknown user, so the answer takes as long as for a known one.
  const nobody = digest('\u0000no such user')
  return (username, password) => {
    if (username === undefined || password === undefined) return false
    const expected = byName.get(username)
    const same = timingSafeEqual(expected ?? nobody, digest(password))
    return expected !== undefined && same
  }
}
