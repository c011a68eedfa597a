/** `tether demo`: relay + agent + a sample LAN web server on loopback, wired by a proxy; prints the URLs. */
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Command } from 'commander'
import { agentLogger, startAgent } from '../agent/agent.ts'
import { relayLogger, startRelay } from '../relay/app.ts'
import { randomSecret } from '../relay/auth/passwords.ts'
import { api } from './admin-client.ts'
import { stopOnSignals } from './signals.ts'

/** The sample "router web UI" on the simulated LAN. */
function sampleLanServer() {
  return createServer((req, res) => {
    res.setHeader('content-type', 'text/html; charset=utf-8')
    res.end(
      `<!doctype html><title>LAN device</title><h1>Hello from the LAN</h1><p>You asked for ${req.url} at ${new Date().toISOString()}, through Tether.</p><p><a href="/status">/status</a> · <a href="/">home</a></p>`,
    )
  })
}

export function demoCommand(): Command {
  return new Command('demo')
    .description('start relay, agent and a sample LAN web server on loopback, and print the URLs')
    .option('--port <port>', 'relay port', '0')
    .option('--log-level <level>', 'log level of relay and agent', 'warn')
    .action(async (o) => {
      const dataDir = await mkdtemp(join(tmpdir(), 'tether-demo-'))
      const password = randomSecret(9)
      const lan = sampleLanServer()
      await new Promise<void>((resolve) => lan.listen(0, '127.0.0.1', resolve))
      const lanPort = (lan.address() as AddressInfo).port
      const relay = await startRelay(
        { host: '127.0.0.1', port: Number(o.port), dataDir, adminPassword: password, logLevel: o.logLevel },
        { logger: relayLogger(o.logLevel) },
      )
      const admin = { relay: relay.url, token: '' }
      admin.token = (
        await api<{ access_token: string }>(admin, 'POST', '/oauth/token', {
          grant_type: 'password',
          username: 'admin',
          password,
        })
      ).access_token
      const { credential } = await api<{ credential: string }>(admin, 'POST', '/v1/users/admin/devices', {
        device: 'demo-gateway',
        type: 'agent',
        name: 'Demo gateway',
      })
      const agent = await startAgent(
        {
          relay: relay.iotmpUrl,
          user: 'admin',
          device: 'demo-gateway',
          credential,
          allow: [`127.0.0.1:${lanPort}`],
          stateDir: join(dataDir, 'agent'),
          logLevel: o.logLevel,
        },
        agentLogger(o.logLevel),
      )
      await agent.connected()
      // The same LAN web server, both as raw TCP on a relay port and as a browser portal.
      const lanTarget = {
        type: 'device',
        user: 'admin',
        device: 'demo-gateway',
        address: '127.0.0.1',
        port: lanPort,
      }
      const proxy = await api<{ status: { port: number } }>(admin, 'POST', '/v1/server/proxies', {
        id: 'demo-web',
        protocol: 'tcp-iotmp',
        enabled: true,
        source: { port: 0, address: '127.0.0.1' },
        target: lanTarget,
      })
      await api(admin, 'POST', '/v1/server/proxies', {
        id: 'demo-portal',
        protocol: 'http-iotmp',
        enabled: true,
        source: { port: 0 },
        target: lanTarget,
      })
      process.stdout.write(
        [
          '',
          'Tether demo is running (Ctrl-C to stop):',
          `  relay API        ${relay.url}   (user admin, password ${password})`,
          `  agent link       ${relay.iotmpUrl}   device admin/demo-gateway, connected`,
          `  LAN web server   http://127.0.0.1:${lanPort}   (stands in for a device on the gateway's LAN)`,
          `  through Tether   http://127.0.0.1:${proxy.status.port}/   ← TCP over IoTMP via the agent`,
          `  device portal    ${relay.url}/console/devices/demo-gateway/portal/demo-portal   ← open this in a browser`,
          '                   (HTTP over IoTMP in an iframe; sign in as admin)',
          '',
          `  try: curl http://127.0.0.1:${proxy.status.port}/hello`,
          `       export TETHER_RELAY_URL=${relay.url}`,
          `       export TETHER_TOKEN=$(npx tether login -p ${password})`,
          '       npx tether proxy list && npx tether device list',
          '       npx tether proxy portal demo-portal   # a one-time link to the portal',
          '',
        ].join('\n'),
      )
      stopOnSignals(async () => {
        await agent.stop()
        await relay.close()
        lan.close()
        await rm(dataDir, { recursive: true, force: true })
      })
    })
}
