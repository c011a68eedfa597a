/**
 * Which local targets the relay may make this agent dial. Entries are `<host>:<ports>`; an empty list denies
 * everything, so a fresh agent exposes nothing until its owner says otherwise.
 */
import net from 'node:net'

/** Host part of a rule: any host, a hostname (optionally `*.` for subdomains) or an IP network. */
export type AllowHost =
  | { kind: 'any' }
  | { kind: 'name'; name: string; wildcard: boolean }
  | { kind: 'net'; family: 'ipv4' | 'ipv6'; address: string; prefix: number }

/** One parsed allowlist entry; `ports` holds inclusive `[from, to]` ranges. */
export interface AllowRule {
  raw: string
  host: AllowHost
  ports: Array<[number, number]> | 'any'
}

/** A malformed allowlist entry; the message names the entry and what is wrong with it. */
export class AllowlistError extends Error {
  readonly code = 'TETHER_ERR_BAD_ALLOW_RULE'
  constructor(
    readonly entry: string,
    why: string,
  ) {
    super(`bad allow rule ${JSON.stringify(entry)}: ${why}`)
    this.name = 'AllowlistError'
  }
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/
const SYNTAX_HINT = 'expected <host>:<ports>, e.g. 192.168.1.10:502, [::1]:22, plc.lan:80,443 or *:*'

/** Parses one `<host>:<ports>` entry; throws AllowlistError on bad syntax. */
export function parseAllowRule(raw: string): AllowRule {
  if (typeof raw !== 'string') throw new AllowlistError(String(raw), 'entry is not a string')
  const entry = raw.trim()
  const fail = (why: string): never => {
    throw new AllowlistError(raw, why)
  }
  if (entry === '') fail('empty entry')

  let hostText: string
  let portText: string
  let bracketed = false
  if (entry.startsWith('[')) {
    const close = entry.indexOf(']')
    if (close < 0) fail('missing "]" after the IPv6 address')
    hostText = entry.slice(1, close)
    const rest = entry.slice(close + 1)
    if (rest === '' || rest === ':') fail(`missing port; ${SYNTAX_HINT}`)
    if (!rest.startsWith(':')) fail(`expected ":" after "]"; ${SYNTAX_HINT}`)
    portText = rest.slice(1)
    bracketed = true
  } else {
    const colon = entry.indexOf(':')
    if (colon < 0) fail(`missing port; ${SYNTAX_HINT}`)
    // An unbracketed IPv6 address cannot be told apart from its port, so insist on brackets.
    if (entry.indexOf(':', colon + 1) >= 0) fail('IPv6 addresses must be in brackets, e.g. [fd00::1]:22')
    hostText = entry.slice(0, colon)
    portText = entry.slice(colon + 1)
    if (portText === '') fail(`missing port; ${SYNTAX_HINT}`)
  }

  return { raw, host: parseHost(hostText, bracketed, fail), ports: parsePorts(portText, fail) }
}

function parseHost(text: string, bracketed: boolean, fail: (why: string) => never): AllowHost {
  if (text === '') return fail('missing host')
  if (bracketed) {
    const [address, prefix] = splitPrefix(text, fail)
    if (!net.isIPv6(address)) fail(`"${address}" is not an IPv6 address (brackets are only for IPv6)`)
    if (address.includes('%')) fail('zone indexes (%...) are not supported in rules')
    return {
      kind: 'net',
      family: 'ipv6',
      address: address.toLowerCase(),
      prefix: checkPrefix(prefix, 128, fail),
    }
  }
  if (text === '*') return { kind: 'any' }
  if (text.includes('/')) {
    const [address, prefix] = splitPrefix(text, fail)
    if (!net.isIPv4(address)) fail(`"${address}" is not an IPv4 address`)
    return { kind: 'net', family: 'ipv4', address, prefix: checkPrefix(prefix, 32, fail) }
  }
  if (net.isIPv4(text)) return { kind: 'net', family: 'ipv4', address: text, prefix: 32 }
  // Without this, a typo such as 192.168.1.300 would silently become a hostname that never matches.
  if (/^[\d.]+$/.test(text)) fail(`"${text}" is not a valid IPv4 address`)

  const wildcard = text.startsWith('*.')
  const name = normalizeName(wildcard ? text.slice(2) : text)
  const labels = name.split('.')
  if (name.length > 253 || !labels.every((l) => LABEL.test(l))) fail(`"${text}" is not a valid hostname`)
  if (/^\d+$/.test(labels[labels.length - 1])) fail(`"${text}" is not a valid hostname (numeric last label)`)
  return { kind: 'name', name, wildcard }
}

function splitPrefix(text: string, fail: (why: string) => never): [string, string | undefined] {
  const slash = text.indexOf('/')
  if (slash < 0) return [text, undefined]
  if (text.indexOf('/', slash + 1) >= 0) fail(`"${text}" has more than one "/"`)
  return [text.slice(0, slash), text.slice(slash + 1)]
}

function checkPrefix(text: string | undefined, max: number, fail: (why: string) => never): number {
  if (text === undefined) return max
  const prefix = /^\d{1,3}$/.test(text) ? Number(text) : Number.NaN
  if (!(prefix <= max)) fail(`CIDR prefix "/${text}" must be a number from 0 to ${max}`)
  return prefix
}

function parsePorts(text: string, fail: (why: string) => never): Array<[number, number]> | 'any' {
  if (text.trim() === '*') return 'any'
  return text.split(',').map((item): [number, number] => {
    const part = item.trim()
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part)
    if (!m) return fail(`bad port "${part}": expected *, a port (502), a range (8000-8100) or a comma list`)
    const from = checkPort(m[1], fail)
    const to = m[2] === undefined ? from : checkPort(m[2], fail)
    if (from > to) fail(`bad port range "${part}": ${from} is greater than ${to}`)
    return [from, to]
  })
}

function checkPort(text: string, fail: (why: string) => never): number {
  const port = Number(text)
  if (port < 1 || port > 65535) fail(`bad port ${text}: must be from 1 to 65535`)
  return port
}

/** DNS names are case-insensitive and `plc.lan.` is the same host as `plc.lan`. */
function normalizeName(name: string): string {
  const lower = name.toLowerCase()
  return lower.endsWith('.') ? lower.slice(0, -1) : lower
}

/** A parsed allowlist; `allows` decides each dial. */
export class Allowlist {
  readonly #rules: readonly AllowRule[]
  /** One BlockList per net rule, because each rule carries its own ports. */
  readonly #nets: ReadonlyMap<AllowRule, net.BlockList>

  /** Parses every entry; throws AllowlistError on the first bad one. */
  constructor(entries: readonly string[]) {
    // Frozen so a caller holding `rules` cannot drift them away from the BlockLists built below.
    const rules = entries.map((entry) => {
      const rule = parseAllowRule(entry)
      Object.freeze(rule.host)
      if (rule.ports !== 'any') for (const range of Object.freeze(rule.ports)) Object.freeze(range)
      return Object.freeze(rule)
    })
    const nets = new Map<AllowRule, net.BlockList>()
    for (const rule of rules) {
      if (rule.host.kind !== 'net') continue
      const list = new net.BlockList()
      list.addSubnet(rule.host.address, rule.host.prefix, rule.host.family)
      nets.set(rule, list)
    }
    this.#rules = Object.freeze(rules)
    this.#nets = nets
  }

  /** The parsed rules, in entry order. */
  get rules(): readonly AllowRule[] {
    return this.#rules
  }

  /**
   * Decision for a dial: `name` is the hostname as requested (undefined when the target was given as an IP),
   * `ip` the resolved address (IPv4 or IPv6 string), port the target port.
   */
  allows(target: { name?: string; ip: string; port: number }): boolean {
    const { port } = target
    if (!Number.isInteger(port) || port < 1 || port > 65535) return false
    const name =
      typeof target.name === 'string' && target.name !== '' ? normalizeName(target.name) : undefined
    const ipFamily = net.isIP(target.ip)
    return this.#rules.some(
      (rule) => portMatches(rule.ports, port) && this.#hostMatches(rule, name, ipFamily, target.ip),
    )
  }

  /** The entries as configured, for DESCRIBE and logs. */
  toJSON(): string[] {
    return this.#rules.map((r) => r.raw)
  }

  #hostMatches(rule: AllowRule, name: string | undefined, ipFamily: number, ip: string): boolean {
    const { host } = rule
    switch (host.kind) {
      case 'any':
        return true
      case 'name':
        // Names match only the requested name: a rule for plc.lan must not open whatever that name resolves to
        // when the target was asked for by IP.
        if (name === undefined) return false
        return host.wildcard ? name.endsWith(`.${host.name}`) : name === host.name
      case 'net':
        if (ipFamily === 0) return false
        // BlockList treats IPv4 and IPv4-mapped IPv6 (::ffff:a.b.c.d) as the same address, which is what a
        // dual-stack resolver hands back for an IPv4 host.
        return this.#nets.get(rule)!.check(ip, ipFamily === 6 ? 'ipv6' : 'ipv4')
    }
  }
}

function portMatches(ports: AllowRule['ports'], port: number): boolean {
  return ports === 'any' || ports.some(([from, to]) => port >= from && port <= to)
}
