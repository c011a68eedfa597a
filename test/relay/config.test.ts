/** Relay configuration: defaults, validation messages and the example shipped in systemd/. */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { relayConfigFrom } from '../../cli/relay-command.ts'
import { loadRelayConfig } from '../../relay/config.ts'

test('defaults: port 8080, ./data, no plugins', () => {
  const config = loadRelayConfig({})
  assert.equal(config.port, 8080)
  assert.equal(config.dataDir, './data')
  assert.deepEqual(config.plugins, {})
  assert.ok(Object.isFrozen(config))
})

test('systemd/relay.example.json is a valid relay configuration', () => {
  const file = new URL('../../systemd/relay.example.json', import.meta.url).pathname
  const config = loadRelayConfig(relayConfigFrom({ config: file }))
  assert.equal(config.plugins.nodered?.address, '127.0.0.1')
})

test('flags win over the file', () => {
  const file = new URL('../../systemd/relay.example.json', import.meta.url).pathname
  const config = loadRelayConfig(relayConfigFrom({ config: file, port: '9090', dataDir: '/tmp/x' }))
  assert.equal(config.port, 9090)
  assert.equal(config.dataDir, '/tmp/x')
  assert.equal(config.host, JSON.parse(readFileSync(file, 'utf8')).host)
})

test('bad keys are named: unknown key, bad port, half a TLS pair', () => {
  assert.throws(() => loadRelayConfig({ prot: 1 } as never), /invalid relay configuration:[\s\S]*prot/)
  assert.throws(() => loadRelayConfig({ port: 70000 }), /\/port must be <= 65535/)
  assert.throws(() => loadRelayConfig({ tlsCert: 'a.pem' }), /tlsCert and tlsKey go together/)
})
