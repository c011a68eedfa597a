/** The `tether` CLI's portal, user and HTTP-device commands, run as a user runs them (see tether.test.ts). */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createAgentDevice, startTestAgent, startTestRelay, tcpServer } from '../e2e/harness.ts'
import { cookieFrom, portalRequest } from '../e2e/portal/portal-harness.ts'
import { tether } from './run-tether.ts'

test('proxy add --protocol http-iotmp and proxy portal: a signed link that opens the device web UI', async (t) => {
  const relay = await startTestRelay(t)
  const env = { TETHER_RELAY_URL: relay.relay.url, TETHER_TOKEN: relay.token }
  const web = await tcpServer(t, (socket) => {
    socket.once('data', () =>
      socket.end('HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nlan page'),
    )
  })
  const credential = await createAgentDevice(relay, 'gw1')
  const { agent } = await startTestAgent(t, {
    relay: relay.relay.iotmpUrl,
    device: 'gw1',
    credential,
    allow: [`127.0.0.1:${web}`],
  })
  await agent.connected()
  const add = [
    'proxy',
    'add',
    'ui',
    '--protocol',
    'http-iotmp',
    '--device',
    'admin/gw1',
    '--target',
    `127.0.0.1:${web}`,
  ]
  const added = await tether(add, env)
  assert.equal(added.code, 0, added.stderr)
  assert.match(
    added.stdout,
    new RegExp(`portal ui ready: open ${relay.relay.url}/console/devices/gw1/portal/ui`),
  )
  assert.match(
    (await tether(['proxy', 'list'], env)).stdout,
    /ui\s+http-iotmp\s+-\s+admin\/gw1 \S+\s+true\s+portal/,
  )

  const portal = await tether(['proxy', 'portal', 'ui'], env)
  assert.equal(portal.code, 0, portal.stderr)
  const url = new URL(portal.stdout.split('\n')[0] as string)
  assert.match(url.hostname, /^ui-gw1-[0-9a-f]{8}\.portal\.localhost$/)
  const opened = await portalRequest(relay.relay.port, url.host, url.pathname + url.search)
  assert.equal(opened.status, 302)
  const cookie = cookieFrom(opened.headers, 'tether_portal') as string
  const page = await portalRequest(relay.relay.port, url.host, '/', { headers: { cookie } })
  assert.equal(page.body.toString(), 'lan page')
})

test('user add and device add --type http: a new user posts to its device callback', async (t) => {
  const relay = await startTestRelay(t)
  const env = { TETHER_RELAY_URL: relay.relay.url, TETHER_TOKEN: relay.token }
  const added = await tether(['user', 'add', 'carol'], env)
  assert.equal(added.code, 0, added.stderr)
  const password = /password: (\S+)/.exec(added.stdout)?.[1] as string
  assert.match((await tether(['user', 'list'], env)).stdout, /carol\s+user\s+true/)
  const login = await tether(['login', '-u', 'carol', '-p', password], env)
  assert.equal(login.code, 0, login.stderr)
  // No --user and no TETHER_USER: the token's own user owns what it creates.
  const carol = { ...env, TETHER_TOKEN: login.stdout.trim() }
  const device = await tether(['device', 'add', 'sensor', '--type', 'http'], carol)
  assert.equal(device.code, 0, device.stderr)
  const url = /callback URL: (\S+)/.exec(device.stdout)?.[1] as string
  const token = /token: (\S+)/.exec(device.stdout)?.[1] as string
  assert.equal(url, `${relay.relay.url}/v3/users/carol/devices/sensor/callback/data`)
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
    body: '{"t":1}',
  })
  assert.equal(res.status, 200)
})
