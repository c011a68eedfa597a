/**
 * systemd/: the unit files pass `systemd-analyze verify` with every hardening directive intact, carry the
 * directives the deployment relies on, and the installer script and example config are usable.
 *
 * `systemd-analyze verify` works without systemd as PID 1 (containers, CI). It does not resolve User=, so the
 * missing `tether` user is fine, but it fails when ExecStart's binary does not exist; the copies verified here
 * only swap /usr/bin/node and /opt/tether/cli/tether.mjs for this machine's paths when those are missing.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, type TestContext, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { loadAgentConfig } from '../../agent/config.ts'
import { Allowlist } from '../../agent/dialer/allowlist.ts'

const repo = fileURLToPath(new URL('../../', import.meta.url))
const dir = join(repo, 'systemd')
const UNITS = ['tether-agent.service', 'tether-relay.service'] as const
const INSTALLER = join(dir, 'install-gateway.sh')

/** Paths the units name, and what stands in for them on a machine without an installed Tether. */
const STAND_INS: Record<string, string> = {
  '/usr/bin/node': process.execPath,
  '/opt/tether/cli/tether.mjs': join(repo, 'cli', 'tether.mjs'),
}

const run = (cmd: string, args: string[], cwd = repo) =>
  spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C', SYSTEMD_PAGER: 'cat' } })

/** `systemd-analyze` major version, or undefined when it is not installed. */
function analyzeVersion(): number | undefined {
  const r = run('systemd-analyze', ['--version'])
  if (r.error) return undefined
  return Number(/systemd (\d+)/.exec(r.stdout)?.[1] ?? 0)
}

/** Version if systemd-analyze can be used; fails under CI=true when it is missing, skips otherwise. */
function requireAnalyze(t: TestContext): number | undefined {
  const version = analyzeVersion()
  if (version !== undefined) return version
  if (process.env.CI === 'true') {
    assert.fail('systemd-analyze is not installed but CI=true: install the apt package "systemd" in CI')
  }
  t.skip('systemd-analyze not installed; apt-get install systemd')
  return undefined
}

/** [section, key, value] for every assignment in a unit file, comments and blank lines dropped. */
function parseUnit(text: string): Array<[string, string, string]> {
  const out: Array<[string, string, string]> = []
  let section = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    const header = /^\[(.+)\]$/.exec(line)
    if (header) {
      section = header[1]
      continue
    }
    const eq = line.indexOf('=')
    assert.ok(eq > 0, `not a key=value line: ${line}`)
    out.push([section, line.slice(0, eq).trim(), line.slice(eq + 1).trim()])
  }
  return out
}

/** All values of `key` in `section`, in file order. */
const values = (text: string, section: string, key: string) =>
  parseUnit(text)
    .filter(([s, k]) => s === section && k === key)
    .map(([, , v]) => v)

const quote = (path: string) => (/\s/.test(path) ? `"${path}"` : path)

/** The unit with missing ExecStart paths swapped for this machine's; every other line is kept verbatim. */
function forThisMachine(text: string): string {
  return text
    .split('\n')
    .map((line) => {
      if (!line.startsWith('ExecStart=')) return line
      const words = line.slice('ExecStart='.length).split(' ')
      const mapped = words.map((w) => (w in STAND_INS && !existsSync(w) ? quote(STAND_INS[w]) : w))
      return `ExecStart=${mapped.join(' ')}`
    })
    .join('\n')
}

const original = (unit: string) => readFileSync(join(dir, unit), 'utf8')

/** Writes the machine-adjusted copy of `unit` into a fresh temp dir; removed after the test. */
function copyForThisMachine(t: TestContext, unit: string): string {
  const tmp = mkdtempSync(join(tmpdir(), 'tether-units-'))
  t.after(() => rmSync(tmp, { recursive: true, force: true }))
  const file = join(tmp, unit)
  writeFileSync(file, forThisMachine(original(unit)))
  return file
}

describe('systemd units', () => {
  for (const unit of UNITS) {
    test(`${unit}: the copy for this machine changes only ExecStart paths`, () => {
      const before = original(unit).split('\n')
      const after = forThisMachine(original(unit)).split('\n')
      assert.equal(after.length, before.length)
      for (let i = 0; i < before.length; i++) {
        if (!before[i].startsWith('ExecStart=')) assert.equal(after[i], before[i])
      }
    })

    test(`${unit}: systemd-analyze verify passes without warnings`, (t) => {
      const version = requireAnalyze(t)
      if (version === undefined) return
      const file = copyForThisMachine(t, unit)
      // Since v250 dependencies are verified too and their warnings change the exit code; only ours matter.
      const args = version >= 250 ? ['verify', '--recursive-errors=no', file] : ['verify', file]
      const r = run('systemd-analyze', args)
      const ours = r.stderr.split('\n').filter((line) => line.includes(unit))
      assert.deepEqual(ours, [], `systemd-analyze verify reported:\n${r.stderr}`)
      assert.equal(r.status, 0, `systemd-analyze verify exited ${r.status}:\n${r.stderr}`)
    })

    test(`${unit}: systemd-analyze security rates the exposure at most 2.5`, (t) => {
      const version = requireAnalyze(t)
      if (version === undefined) return
      if (version < 250) return t.skip(`systemd ${version} has no 'security --offline' (needs 250+)`)
      const file = copyForThisMachine(t, unit)
      const r = run('systemd-analyze', ['security', '--offline=true', '--no-pager', file])
      const level = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(r.stdout)?.[1]
      assert.ok(level, `no exposure level in:\n${r.stdout}\n${r.stderr}`)
      assert.ok(Number(level) <= 2.5, `exposure ${level} > 2.5; was hardening removed?\n${r.stdout}`)
    })

    test(`${unit}: restart policy, user, state directory and hardening`, () => {
      const text = original(unit)
      const service = (key: string) => values(text, 'Service', key)
      const name = unit.replace('.service', '')
      assert.deepEqual(service('Restart'), ['always'])
      assert.equal(service('RestartSec').length, 1)
      assert.deepEqual(service('User'), ['tether'])
      assert.deepEqual(service('Group'), ['tether'])
      assert.deepEqual(service('StateDirectory'), [name])
      assert.deepEqual(service('ConfigurationDirectory'), ['tether'])
      assert.deepEqual(service('ProtectSystem'), ['strict'])
      assert.deepEqual(service('NoNewPrivileges'), ['yes'])
      assert.deepEqual(service('PrivateTmp'), ['yes'])
      assert.deepEqual(service('ProtectHome'), ['yes'])
      assert.deepEqual(service('LockPersonality'), ['yes'])
      assert.deepEqual(service('RestrictAddressFamilies'), ['AF_INET AF_INET6 AF_UNIX AF_NETLINK'])
      assert.ok(service('Environment').includes('NODE_ENV=production'))
      // V8's JIT needs writable+executable pages.
      assert.deepEqual(service('MemoryDenyWriteExecute'), [])
      assert.deepEqual(values(text, 'Install', 'WantedBy'), ['multi-user.target'])
      const exec = service('ExecStart')
      assert.equal(exec.length, 1)
      assert.match(exec[0], /^\/usr\/bin\/node --no-node-snapshot \/opt\/tether\/cli\/tether\.mjs /)
    })
  }

  test('tether-agent.service: config, state dir and network-online ordering', () => {
    const text = original('tether-agent.service')
    assert.deepEqual(values(text, 'Service', 'ExecStart'), [
      '/usr/bin/node --no-node-snapshot /opt/tether/cli/tether.mjs agent --config /etc/tether/agent.json --state-dir %S/tether-agent',
    ])
    assert.ok(values(text, 'Unit', 'After').join(' ').split(' ').includes('network-online.target'))
    assert.ok(values(text, 'Unit', 'Wants').join(' ').split(' ').includes('network-online.target'))
  })

  test('tether-relay.service: data dir and optional environment file', () => {
    const text = original('tether-relay.service')
    assert.deepEqual(values(text, 'Service', 'ExecStart'), [
      '/usr/bin/node --no-node-snapshot /opt/tether/cli/tether.mjs relay --data-dir %S/tether-relay',
    ])
    assert.deepEqual(values(text, 'Service', 'EnvironmentFile'), ['-/etc/tether/relay.env'])
  })
})

describe('install-gateway.sh', () => {
  test('parses (bash -n)', () => {
    const r = run('bash', ['-n', INSTALLER])
    assert.equal(r.status, 0, r.stderr)
  })

  test('--help prints usage and exits 0 without touching anything', () => {
    const r = run('bash', [INSTALLER, '--help'])
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stdout, /^Usage: /)
    assert.match(r.stdout, /--no-start/)
  })

  test('an unknown option exits 2 with usage on stderr', () => {
    const r = run('bash', [INSTALLER, '--bogus'])
    assert.equal(r.status, 2)
    assert.match(r.stderr, /unknown option: --bogus/)
    assert.equal(r.stdout, '')
  })

  test('shellcheck is clean', (t) => {
    const r = run('shellcheck', [INSTALLER])
    if (r.error && process.env.CI === 'true')
      assert.fail('shellcheck is not installed but CI=true: see .ci/run')
    if (r.error) return t.skip('shellcheck not installed; apt-get install shellcheck')
    assert.equal(r.status, 0, r.stdout)
  })
})

describe('agent.example.json', () => {
  const KEYS = [
    'relay',
    'user',
    'device',
    'credential',
    'keepAliveSec',
    'allow',
    'ca',
    'insecure',
    'stateDir',
    'logLevel',
  ]

  test('is JSON with the documented keys', () => {
    const example = JSON.parse(readFileSync(join(dir, 'agent.example.json'), 'utf8'))
    assert.deepEqual(Object.keys(example).sort(), [...KEYS].sort())
    assert.equal(example.relay, 'wss://relay.example.com')
    assert.equal(example.keepAliveSec, 60)
    assert.ok(Array.isArray(example.allow) && example.allow.length > 0)
    assert.equal(example.insecure, false)
    assert.equal(example.stateDir, '/var/lib/tether-agent')
    assert.equal(example.logLevel, 'info')
  })

  test('is accepted by the agent config schema and allowlist parser', () => {
    const example = JSON.parse(readFileSync(join(dir, 'agent.example.json'), 'utf8'))
    const config = loadAgentConfig(example)
    assert.doesNotThrow(() => new Allowlist(config.allow))
  })
})
