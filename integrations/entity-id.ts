/** Resource ids for names converters report ("Device A", "Building 7/Floor 2"). */
import { createHash } from 'node:crypto'

const ID = /^[A-Za-z0-9_-]{1,64}$/

/**
 * The id of a named entity: the name itself when it is a valid id, else a readable sanitised form with a short
 * hash of the name, so two names that sanitise alike ("Device A", "Device_A") still get different ids.
 */
export function entityId(name: string): string {
  if (ID.test(name)) return name
  const readable =
    name
      .replace(/[^A-Za-z0-9_-]+/g, '_')
      .replace(/^_+|_+$/g, '')
      .slice(0, 55) || 'entity'
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 8)
  return `${readable}-${hash}`
}
