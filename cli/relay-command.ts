/** `tether relay`: runs the cloud relay. */
import { readFileSync } from 'node:fs'
import { Command, Option } from 'commander'
import { startRelay } from '../relay/app.ts'
import type { RelayConfig } from '../relay/config.ts'
import { stopOnSignals } from './signals.ts'
import { maxWindowOption, targetCaOption, windowConfig, windowOption } from './stream-options.ts'

/** Prints the first-start admin password where the operator will see it. */
export function printAdminBanner(username: string, password: string, generated: boolean): void {
  const how = generated ? 'one-time password (shown only now)' : 'password from TETHER_ADMIN_PASSWORD'
  process.stderr.write(
    `\n  First start: created user "${username}" with role admin.\n  ${how}: ${generated ? password : '(hidden)'}\n\n`,
  )
}

/** Builds the relay config: file, then environment and flags on top. */
export function relayConfigFrom(o: Record<string, unknown>): Partial<RelayConfig> {
  const file = o.config ? JSON.parse(readFileSync(o.config as string, 'utf8')) : {}
  const fromFlags: Record<string, unknown> = {
    host: o.host,
    port: o.port === undefined ? undefined : Number(o.port),
    dataDir: o.dataDir,
    logLevel: o.logLevel,
    tlsCert: o.tlsCert,
    tlsKey: o.tlsKey,
    trustProxy: o.trustProxy ? true : undefined,
    ...windowConfig(o),
    targetCa: o.targetCa,
    publicUrl: o.publicUrl,
    portalDomain: o.portalDomain,
    portalMode: o.portalMode,
    adminPassword: process.env.TETHER_ADMIN_PASSWORD || undefined,
  }
  const merged = { ...file }
  for (const [key, value] of Object.entries(fromFlags)) if (value !== undefined) merged[key] = value
  return merged
}

export function relayCommand(): Command {
  return (
    new Command('relay')
      .description('run the cloud relay (HTTP API, /iotmp for agents, proxy listeners)')
      // No commander defaults: they would override the config file. The schema fills what neither sets.
      .addOption(
        new Option('-c, --config <file>', 'JSON config file (every key, plugins included)').env(
          'TETHER_RELAY_CONFIG',
        ),
      )
      .addOption(new Option('--host <address>', 'bind address (default 0.0.0.0)').env('TETHER_HOST'))
      .addOption(
        new Option('--port <port>', 'HTTP/WebSocket port, 0 = any (default 8080)').env('TETHER_PORT'),
      )
      .addOption(
        new Option('--data-dir <dir>', 'LevelDB and secrets (default ./data)').env('TETHER_DATA_DIR'),
      )
      .addOption(new Option('--log-level <level>', 'pino level (default info)').env('TETHER_LOG_LEVEL'))
      .addOption(new Option('--tls-cert <file>', 'PEM certificate: serve https/wss').env('TETHER_TLS_CERT'))
      .addOption(new Option('--tls-key <file>', 'PEM private key').env('TETHER_TLS_KEY'))
      .addOption(targetCaOption('host and plugin targets'))
      .addOption(new Option('--trust-proxy', 'client address from X-Forwarded-For').env('TETHER_TRUST_PROXY'))
      .addOption(windowOption())
      .addOption(maxWindowOption())
      .addOption(
        new Option('--public-url <origin>', 'origin browsers use, e.g. https://tether.example.com').env(
          'TETHER_PUBLIC_URL',
        ),
      )
      .addOption(
        new Option(
          '--portal-domain <domain>',
          'HTTP portals at <label>.<domain>, needs wildcard DNS (default portal.localhost)',
        ).env('TETHER_PORTAL_DOMAIN'),
      )
      .addOption(
        new Option('--portal-mode <mode>', 'subdomain (default) or path (/portal/<label>/, best effort)')
          .choices(['subdomain', 'path'])
          .env('TETHER_PORTAL_MODE'),
      )
      .addHelpText('after', '\nFirst start creates user "admin"; TETHER_ADMIN_PASSWORD sets its password.')
      .action(async (o) => {
        const relay = await startRelay(relayConfigFrom(o), { onAdminCreated: printAdminBanner })
        relay.app.log.info(`relay ready: API ${relay.url}, agents connect to ${relay.iotmpUrl}`)
        stopOnSignals(() => relay.close())
      })
  )
}
