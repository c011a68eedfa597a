/** Rules across profile fields that a JSON schema cannot express; each message names the field. */
import net from 'node:net'
import type { ProxyProfile } from './schemas.ts'
import { addCidr } from './source-guard.ts'

const TLS_PROTOCOLS = new Set(['tcp', 'tcp-iotmp', 'http-iotmp'])

/** Returns what is wrong with `profile`, or undefined when it is consistent. */
export function checkProfile(profile: ProxyProfile, plugins: readonly string[]): string | undefined {
  const { protocol, target, source } = profile
  const overTunnel = protocol.endsWith('-iotmp')
  if (overTunnel && target.type !== 'device') {
    return `body/target/type must be "device" for protocol ${protocol} (the agent dials the target)`
  }
  if (!overTunnel && target.type === 'device') {
    return `body/target/type must be "host" or "plugin" for protocol ${protocol}; use ${protocol}-iotmp for a device`
  }
  if (target.tls && !TLS_PROTOCOLS.has(protocol))
    return `body/target/tls is only available with TCP protocols`
  if (target.type === 'plugin' && !plugins.includes(target.plugin)) {
    const known = plugins.length ? plugins.join(', ') : 'none'
    return `body/target/plugin ${target.plugin} is not configured on this relay (configured: ${known})`
  }
  for (const [i, cidr] of (source.allow ?? []).entries()) {
    try {
      addCidr(new net.BlockList(), cidr)
    } catch (err) {
      return `body/source/allow/${i} ${(err as Error).message}`
    }
  }
  if (profile.portal && protocol !== 'http-iotmp') return 'body/portal is only available with http-iotmp'
  if (source.address && net.isIP(source.address) === 0) return 'body/source/address must be an IP address'
  return undefined
}
