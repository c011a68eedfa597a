import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Allowlist, AllowlistError, type AllowRule, parseAllowRule } from '../../../agent/dialer/allowlist.ts'

type Target = { name?: string; ip: string; port: number }

const decisions: Array<{ rules: string[]; target: Target; expected: boolean }> = [
  // empty list denies all
  { rules: [], target: { ip: '127.0.0.1', port: 22 }, expected: false },
  { rules: [], target: { name: 'localhost', ip: '127.0.0.1', port: 80 }, expected: false },
  // any host, any port
  { rules: ['*:*'], target: { ip: '10.1.2.3', port: 1 }, expected: true },
  { rules: ['*:*'], target: { ip: '::1', port: 65535 }, expected: true },
  { rules: ['*:*'], target: { name: 'plc.lan', ip: '192.168.1.5', port: 502 }, expected: true },
  { rules: ['*:502'], target: { ip: '10.0.0.1', port: 503 }, expected: false },
  // single IPv4 address is /32
  { rules: ['192.168.1.10:502'], target: { ip: '192.168.1.10', port: 502 }, expected: true },
  { rules: ['192.168.1.10:502'], target: { ip: '192.168.1.11', port: 502 }, expected: false },
  { rules: ['192.168.1.10:502'], target: { ip: '192.168.1.10', port: 80 }, expected: false },
  { rules: ['192.168.1.10:502'], target: { name: 'plc.lan', ip: '192.168.1.10', port: 502 }, expected: true },
  // IPv4 CIDR
  { rules: ['192.168.1.0/24:*'], target: { ip: '192.168.1.254', port: 8080 }, expected: true },
  { rules: ['192.168.1.0/24:*'], target: { ip: '192.168.2.1', port: 8080 }, expected: false },
  { rules: ['10.0.0.0/8:22'], target: { ip: '10.255.255.255', port: 22 }, expected: true },
  { rules: ['0.0.0.0/0:22'], target: { ip: '8.8.8.8', port: 22 }, expected: true },
  { rules: ['10.0.0.0/32:22'], target: { ip: '10.0.0.1', port: 22 }, expected: false },
  // IPv4-mapped IPv6 targets match IPv4 rules
  { rules: ['10.0.0.0/8:*'], target: { ip: '::ffff:10.0.0.1', port: 80 }, expected: true },
  { rules: ['10.0.0.1:80'], target: { ip: '::ffff:10.0.0.1', port: 80 }, expected: true },
  { rules: ['10.0.0.1:80'], target: { ip: '::ffff:a00:1', port: 80 }, expected: true },
  { rules: ['10.0.0.1:80'], target: { ip: '0:0:0:0:0:FFFF:10.0.0.1', port: 80 }, expected: true },
  { rules: ['10.0.0.1:80'], target: { ip: '::ffff:10.0.0.2', port: 80 }, expected: false },
  { rules: ['10.0.0.1:80'], target: { ip: '::10.0.0.1', port: 80 }, expected: false }, // IPv4-compatible, not mapped
  // IPv6 addresses and CIDRs in brackets
  { rules: ['[::1]:22'], target: { ip: '::1', port: 22 }, expected: true },
  { rules: ['[::1]:22'], target: { ip: '0:0:0:0:0:0:0:1', port: 22 }, expected: true },
  { rules: ['[::1]:22'], target: { ip: '::2', port: 22 }, expected: false },
  { rules: ['[::1]:22'], target: { ip: '127.0.0.1', port: 22 }, expected: false },
  { rules: ['[fd00::/8]:80'], target: { ip: 'fd12:3456::1', port: 80 }, expected: true },
  { rules: ['[fd00::/8]:80'], target: { ip: 'FD00::ABCD', port: 80 }, expected: true },
  { rules: ['[fd00::/8]:80'], target: { ip: 'fe80::1', port: 80 }, expected: false },
  { rules: ['[fd00::/8]:80'], target: { ip: 'fd00::1', port: 81 }, expected: false },
  { rules: ['[FE80::/10]:*'], target: { ip: 'fe80::1%eth0', port: 22 }, expected: true },
  { rules: ['[2001:db8::/32]:443'], target: { ip: '10.0.0.1', port: 443 }, expected: false },
  // hostnames: exact, case-insensitive, name only (never the ip)
  { rules: ['plc.lan:502'], target: { name: 'plc.lan', ip: '192.168.1.5', port: 502 }, expected: true },
  { rules: ['plc.lan:502'], target: { name: 'PLC.LAN', ip: '192.168.1.5', port: 502 }, expected: true },
  { rules: ['PLC.Lan:502'], target: { name: 'plc.lan', ip: '192.168.1.5', port: 502 }, expected: true },
  { rules: ['plc.lan:502'], target: { name: 'plc.lan.', ip: '192.168.1.5', port: 502 }, expected: true },
  { rules: ['plc.lan:502'], target: { name: 'plc.lan', ip: '192.168.1.5', port: 503 }, expected: false },
  { rules: ['plc.lan:502'], target: { name: 'plc2.lan', ip: '192.168.1.5', port: 502 }, expected: false },
  { rules: ['plc.lan:502'], target: { name: 'x.plc.lan', ip: '192.168.1.5', port: 502 }, expected: false },
  { rules: ['plc.lan:502'], target: { ip: '192.168.1.5', port: 502 }, expected: false },
  { rules: ['localhost:22'], target: { ip: '127.0.0.1', port: 22 }, expected: false },
  { rules: ['localhost:22'], target: { name: 'localhost', ip: '::1', port: 22 }, expected: true },
  // wildcard names match subdomains at any depth, not the bare domain
  { rules: ['*.lan:80'], target: { name: 'plc.lan', ip: '10.0.0.1', port: 80 }, expected: true },
  { rules: ['*.lan:80'], target: { name: 'a.b.LAN', ip: '10.0.0.1', port: 80 }, expected: true },
  { rules: ['*.lan:80'], target: { name: 'lan', ip: '10.0.0.1', port: 80 }, expected: false },
  { rules: ['*.lan:80'], target: { name: 'plclan', ip: '10.0.0.1', port: 80 }, expected: false },
  { rules: ['*.lan:80'], target: { name: 'plc.lan.evil.com', ip: '10.0.0.1', port: 80 }, expected: false },
  { rules: ['*.lan:80'], target: { ip: '10.0.0.1', port: 80 }, expected: false },
  // port ranges and lists
  { rules: ['10.0.0.1:8000-8100'], target: { ip: '10.0.0.1', port: 8000 }, expected: true },
  { rules: ['10.0.0.1:8000-8100'], target: { ip: '10.0.0.1', port: 8100 }, expected: true },
  { rules: ['10.0.0.1:8000-8100'], target: { ip: '10.0.0.1', port: 7999 }, expected: false },
  { rules: ['10.0.0.1:8000-8100'], target: { ip: '10.0.0.1', port: 8101 }, expected: false },
  { rules: ['10.0.0.1:80,443,8000-8100'], target: { ip: '10.0.0.1', port: 443 }, expected: true },
  { rules: ['10.0.0.1:80,443,8000-8100'], target: { ip: '10.0.0.1', port: 8050 }, expected: true },
  { rules: ['10.0.0.1:80,443,8000-8100'], target: { ip: '10.0.0.1', port: 444 }, expected: false },
  { rules: ['10.0.0.1:80, 443'], target: { ip: '10.0.0.1', port: 443 }, expected: true },
  { rules: ['10.0.0.1:1-65535'], target: { ip: '10.0.0.1', port: 65535 }, expected: true },
  { rules: ['10.0.0.1:502-502'], target: { ip: '10.0.0.1', port: 502 }, expected: true },
  // several rules: any one permitting is enough, each with its own ports
  { rules: ['plc.lan:502', '10.0.0.0/8:22'], target: { ip: '10.9.9.9', port: 22 }, expected: true },
  { rules: ['plc.lan:502', '10.0.0.0/8:22'], target: { ip: '10.9.9.9', port: 502 }, expected: false },
  {
    rules: ['plc.lan:502', '10.0.0.0/8:22'],
    target: { name: 'plc.lan', ip: '10.9.9.9', port: 502 },
    expected: true,
  },
  // malformed targets are denied, never thrown on
  { rules: ['*:*'], target: { ip: '10.0.0.1', port: 0 }, expected: false },
  { rules: ['*:*'], target: { ip: '10.0.0.1', port: 65536 }, expected: false },
  { rules: ['*:*'], target: { ip: '10.0.0.1', port: 22.5 }, expected: false },
  { rules: ['10.0.0.0/8:*'], target: { ip: 'not-an-ip', port: 22 }, expected: false },
  { rules: ['[::/0]:*'], target: { ip: '', port: 22 }, expected: false },
]

describe('Allowlist.allows', () => {
  for (const { rules, target, expected } of decisions) {
    it(`${JSON.stringify(rules)} ${expected ? 'allows' : 'denies'} ${JSON.stringify(target)}`, () => {
      assert.equal(new Allowlist(rules).allows(target), expected)
    })
  }
})

const parsed: Array<{ raw: string; rule: Omit<AllowRule, 'raw'> }> = [
  { raw: '*:*', rule: { host: { kind: 'any' }, ports: 'any' } },
  { raw: '*:502', rule: { host: { kind: 'any' }, ports: [[502, 502]] } },
  {
    raw: '192.168.1.10:502',
    rule: { host: { kind: 'net', family: 'ipv4', address: '192.168.1.10', prefix: 32 }, ports: [[502, 502]] },
  },
  {
    raw: '192.168.1.0/24:80,443,8000-8100',
    rule: {
      host: { kind: 'net', family: 'ipv4', address: '192.168.1.0', prefix: 24 },
      ports: [
        [80, 80],
        [443, 443],
        [8000, 8100],
      ],
    },
  },
  {
    raw: '[::1]:22',
    rule: { host: { kind: 'net', family: 'ipv6', address: '::1', prefix: 128 }, ports: [[22, 22]] },
  },
  {
    raw: '[FD00::/8]:80',
    rule: { host: { kind: 'net', family: 'ipv6', address: 'fd00::', prefix: 8 }, ports: [[80, 80]] },
  },
  { raw: 'PLC.lan:*', rule: { host: { kind: 'name', name: 'plc.lan', wildcard: false }, ports: 'any' } },
  { raw: '*.lan:1-1024', rule: { host: { kind: 'name', name: 'lan', wildcard: true }, ports: [[1, 1024]] } },
  {
    raw: 'localhost:22',
    rule: { host: { kind: 'name', name: 'localhost', wildcard: false }, ports: [[22, 22]] },
  },
  {
    raw: ' plc.lan:502 ',
    rule: { host: { kind: 'name', name: 'plc.lan', wildcard: false }, ports: [[502, 502]] },
  },
]

describe('parseAllowRule', () => {
  for (const { raw, rule } of parsed) {
    it(`parses ${JSON.stringify(raw)}`, () => {
      assert.deepEqual(parseAllowRule(raw), { raw, ...rule })
    })
  }
})

const invalid: Array<{ raw: string; why: RegExp }> = [
  { raw: '', why: /empty/ },
  { raw: '   ', why: /empty/ },
  { raw: '10.0.0.1', why: /missing port/ },
  { raw: '10.0.0.1:', why: /missing port/ },
  { raw: 'plc.lan', why: /missing port/ },
  { raw: '[::1]', why: /missing port/ },
  { raw: '[::1]:', why: /missing port/ },
  { raw: ':80', why: /missing host/ },
  { raw: '[]:80', why: /missing host/ },
  { raw: '10.0.0.1:0', why: /bad port 0/ },
  { raw: '10.0.0.1:65536', why: /bad port 65536/ },
  { raw: '10.0.0.1:123456', why: /bad port "123456"/ },
  { raw: '10.0.0.1:-1', why: /bad port "-1"/ },
  { raw: '10.0.0.1:http', why: /bad port "http"/ },
  { raw: '10.0.0.1:8100-8000', why: /range "8100-8000"/ },
  { raw: '10.0.0.1:0-10', why: /bad port 0/ },
  { raw: '10.0.0.1:80,,443', why: /bad port ""/ },
  { raw: '10.0.0.1:80,*', why: /bad port "\*"/ },
  { raw: '10.0.0.1:80-', why: /bad port "80-"/ },
  { raw: '10.0.0.0/33:80', why: /prefix "\/33"/ },
  { raw: '10.0.0.0/:80', why: /prefix "\/"/ },
  { raw: '10.0.0.0/8/8:80', why: /more than one/ },
  { raw: '10.0.0.0/x:80', why: /prefix "\/x"/ },
  { raw: '[fd00::/129]:80', why: /prefix "\/129"/ },
  { raw: '[fd00::/-1]:80', why: /prefix "\/-1"/ },
  { raw: 'plc.lan/24:80', why: /not an IPv4 address/ },
  { raw: '256.0.0.1:80', why: /not a valid IPv4 address/ },
  { raw: '10.0.0:80', why: /not a valid IPv4 address/ },
  { raw: '::1:22', why: /brackets/ },
  { raw: 'fd00::1:22', why: /brackets/ },
  { raw: '[10.0.0.1]:22', why: /not an IPv6 address/ },
  { raw: '[plc.lan]:22', why: /not an IPv6 address/ },
  { raw: '[::1:22', why: /missing "\]"/ },
  { raw: '[::1]22', why: /expected ":" after "\]"/ },
  { raw: '[fe80::1%eth0]:22', why: /zone/ },
  { raw: 'plc_lan!:80', why: /not a valid hostname/ },
  { raw: 'plc..lan:80', why: /not a valid hostname/ },
  { raw: '-plc.lan:80', why: /not a valid hostname/ },
  { raw: 'plc*.lan:80', why: /not a valid hostname/ },
  { raw: '*.*.lan:80', why: /not a valid hostname/ },
  { raw: '*.:80', why: /not a valid hostname/ },
  { raw: 'a.1:80', why: /numeric last label/ },
  { raw: `${'a'.repeat(64)}.lan:80`, why: /not a valid hostname/ },
]

describe('parseAllowRule rejects bad entries', () => {
  for (const { raw, why } of invalid) {
    it(`rejects ${JSON.stringify(raw)}`, () => {
      assert.throws(
        () => parseAllowRule(raw),
        (err: unknown) => {
          assert.ok(err instanceof AllowlistError)
          assert.equal(err.code, 'TETHER_ERR_BAD_ALLOW_RULE')
          assert.equal(err.entry, raw)
          assert.ok(err.message.includes(JSON.stringify(raw)), `message names the entry: ${err.message}`)
          assert.match(err.message, why)
          return true
        },
      )
    })
  }
})

describe('Allowlist', () => {
  it('throws on the first bad entry and names it', () => {
    assert.throws(() => new Allowlist(['*:22', 'plc.lan', '10.0.0.1:0']), {
      name: 'AllowlistError',
      code: 'TETHER_ERR_BAD_ALLOW_RULE',
      message: /"plc\.lan".*missing port/,
    })
  })

  it('exposes parsed rules and round-trips entries through toJSON', () => {
    const entries = ['192.168.1.0/24:502', '[::1]:22', '*.lan:80,443']
    const list = new Allowlist(entries)
    assert.deepEqual(list.toJSON(), entries)
    assert.equal(JSON.stringify(list), JSON.stringify(entries))
    assert.deepEqual(
      list.rules.map((r) => r.host.kind),
      ['net', 'net', 'name'],
    )
  })

  it('rules cannot be mutated behind the matcher', () => {
    const list = new Allowlist(['10.0.0.1:22'])
    const rule = list.rules[0]
    assert.throws(() => {
      ;(rule.ports as Array<[number, number]>).push([1, 65535])
    }, TypeError)
    assert.equal(list.allows({ ip: '10.0.0.1', port: 80 }), false)
  })

  it('does not share state with the caller-owned entries array', () => {
    const entries = ['10.0.0.1:22']
    const list = new Allowlist(entries)
    entries.push('*:*')
    assert.deepEqual(list.toJSON(), ['10.0.0.1:22'])
    assert.equal(list.allows({ ip: '10.0.0.2', port: 22 }), false)
  })
})
