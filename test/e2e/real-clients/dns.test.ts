/**
 * dig through udp and udp-iotmp to a throw-away dnsmasq.
 * A missing tool skips the test locally and fails it in CI (CI=true), naming the Debian package.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { eventually, startTunnel } from '../harness.ts'
import {
  createProxy,
  freeUdpPort,
  ok,
  proxyStatus,
  ready,
  requireTools,
  run,
  sandbox,
  TIMEOUT,
} from './tools.ts'

test('UDP: dig through udp and udp-iotmp reaches dnsmasq; idle mappings expire', TIMEOUT, async (t) => {
  const tools = requireTools(t, { dnsmasq: 'dnsmasq', dig: 'dnsutils' })
  if (!tools) return
  const box = await sandbox(t, 'dns')
  const dnsPort = await freeUdpPort()
  const server = box.spawn(tools.dnsmasq!, [
    '--no-daemon',
    `--port=${dnsPort}`,
    '--listen-address=127.0.0.1',
    '--bind-interfaces',
    '--no-resolv',
    '--no-hosts',
    '--address=/tether.test/10.1.2.3',
    '--conf-file=/dev/null',
    `--pid-file=${join(box.dir, 'dnsmasq.pid')}`,
  ])
  const dig = async (port: number) =>
    ok(
      await run(tools.dig!, [
        '@127.0.0.1',
        '-p',
        String(port),
        'tether.test',
        '+short',
        '+tries=1',
        '+time=3',
      ]),
      'dig',
    ).trim()
  await ready(server, 'dnsmasq', async () => (await dig(dnsPort)) === '10.1.2.3')

  const { relay } = await startTunnel(t, [`127.0.0.1:${dnsPort}`])

  // udp: the relay itself sends the datagrams to the host target; default idle timeout (60 s).
  const udpPort = await createProxy(relay, {
    id: 'dns-udp',
    protocol: 'udp',
    target: { type: 'host', address: '127.0.0.1', port: dnsPort },
  })
  assert.equal(await dig(udpPort), '10.1.2.3')
  const udpStatus = await proxyStatus(relay, 'dns-udp')
  assert.equal(udpStatus.active_connections, 1, 'one client mapping (dig from one source port)')
  assert.equal(udpStatus.total_connections, 1)
  assert.ok(udpStatus.rx_bytes > 0 && udpStatus.tx_bytes > 0, JSON.stringify(udpStatus))

  // udp-iotmp: one stream per client address, the agent holds the UDP socket; mappings idle 1 s.
  const iotmpPort = await createProxy(relay, {
    id: 'dns-iotmp',
    protocol: 'udp-iotmp',
    source: { port: 0, address: '127.0.0.1', idleTimeoutSec: 1 },
    target: { type: 'device', user: 'admin', device: 'gw', address: '127.0.0.1', port: dnsPort },
  })
  assert.equal(await dig(iotmpPort), '10.1.2.3')
  const iotmpStatus = await proxyStatus(relay, 'dns-iotmp')
  assert.equal(iotmpStatus.total_connections, 1)
  assert.ok(iotmpStatus.rx_bytes > 0 && iotmpStatus.tx_bytes > 0, JSON.stringify(iotmpStatus))
  await eventually(
    async () => (await proxyStatus(relay, 'dns-iotmp')).active_connections === 0,
    5000,
    'the idle udp-iotmp mapping to expire',
  )
  // A new query after the expiry opens a new mapping and still works.
  assert.equal(await dig(iotmpPort), '10.1.2.3')
  assert.equal((await proxyStatus(relay, 'dns-iotmp')).total_connections, 2)
  // The udp mapping (60 s) is still there.
  assert.equal((await proxyStatus(relay, 'dns-udp')).active_connections, 1)
})
