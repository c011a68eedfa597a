/** The DNS label that names a portal's origin: readable, derived from profile and device, and unique. */
import { createHash } from 'node:crypto'

/** Lower-case letters, digits and inner hyphens only, at most `max` characters. */
function slug(text: string, max: number): string {
  const s = text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .slice(0, max)
  return s.replace(/^-+|-+$/g, '') || 'x'
}

/**
 * `<profile>-<device>-<hash>`: the hash (of the exact profile id, user and device) keeps two profiles whose
 * ids differ only in case or punctuation apart, and the whole label stays within DNS's 63 characters.
 */
export function portalLabel(profileId: string, user: string, device: string): string {
  const hash = createHash('sha256').update(`${profileId}\0${user}\0${device}`).digest('hex').slice(0, 8)
  return `${slug(profileId, 24)}-${slug(device, 24)}-${hash}`
}
