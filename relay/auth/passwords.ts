/** Password and credential hashing with scrypt (node:crypto); constant-time comparison. */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'

const scryptAsync = promisify(scrypt) as (
  pw: string,
  salt: Buffer,
  len: number,
  opts: object,
) => Promise<Buffer>
const N = 16384
const R = 8
const P = 1
const KEY_BYTES = 32

/** Hashes a secret as `scrypt$N$r$p$salt$hash` (base64url parts). */
export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16)
  const key = await scryptAsync(secret, salt, KEY_BYTES, { N, r: R, p: P })
  return ['scrypt', N, R, P, salt.toString('base64url'), key.toString('base64url')].join('$')
}

/** True when `secret` matches a hash made by hashSecret. */
export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$')
  if (scheme !== 'scrypt' || !salt || !hash) return false
  const expected = Buffer.from(hash, 'base64url')
  const key = await scryptAsync(secret, Buffer.from(salt, 'base64url'), expected.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
  })
  return timingSafeEqual(key, expected)
}

/** A hash no secret matches, made once: checking against it costs what checking a real hash costs. */
const unmatchable = hashSecret(randomBytes(32).toString('base64url'))

/**
 * Verifies `secret` against `stored`, or, when there is no stored hash (unknown user or device), spends the
 * same scrypt time and answers false, so response times do not reveal which names exist.
 */
export async function verifySecretOrDummy(secret: string, stored: string | undefined): Promise<boolean> {
  if (stored === undefined) {
    await verifySecret(secret, await unmatchable)
    return false
  }
  return verifySecret(secret, stored)
}

/** A fresh random secret (device credentials, one-time passwords). */
export function randomSecret(bytes = 18): string {
  return randomBytes(bytes).toString('base64url')
}
