/** Admission of clients on a proxy's source side: `source.allow` CIDRs and `source.maxConnections`. */
import net from 'node:net'
import type { ProxySource } from './schemas.ts'

/** Parses `10.0.0.0/8`, `192.168.1.7`, `fd00::/8` or `::1` into a BlockList rule; throws on bad syntax. */
export function addCidr(list: net.BlockList, cidr: string): void {
  const [address = '', prefixText] = cidr.split('/')
  const family = net.isIP(address)
  if (family === 0) throw new Error(`${cidr} is not an IP address or CIDR`)
  const type = family === 4 ? 'ipv4' : 'ipv6'
  const max = family === 4 ? 32 : 128
  const prefix = prefixText === undefined ? max : Number(prefixText)
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max)
    throw new Error(`${cidr} has a bad prefix length`)
  list.addSubnet(address, prefix, type)
}

export class SourceGuard {
  readonly #allow?: net.BlockList
  readonly #max?: number

  constructor(source: ProxySource) {
    if (source.allow) {
      this.#allow = new net.BlockList()
      for (const cidr of source.allow) addCidr(this.#allow, cidr)
    }
    this.#max = source.maxConnections
  }

  /** Why a client must be refused, or undefined to admit it. */
  refusal(clientAddress: string | undefined, active: number): string | undefined {
    if (this.#allow) {
      const address = clientAddress ?? ''
      const family = net.isIP(address) === 6 ? 'ipv6' : 'ipv4'
      const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(address)?.[1]
      const allowed = mapped ? this.#allow.check(mapped, 'ipv4') : this.#allow.check(address, family)
      if (!allowed) return `client ${address} is not in source.allow`
    }
    if (this.#max !== undefined && active >= this.#max) return `maxConnections (${this.#max}) reached`
    return undefined
  }
}
