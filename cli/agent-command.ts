/** `tether agent`: runs the gateway agent from a config file, flags and environment (flags win). */
import { readFileSync } from 'node:fs'
import { Command, Option } from 'commander'
import { startAgent } from '../agent/agent.ts'
import { stopOnSignals } from './signals.ts'
import { collectList, maxWindowOption, targetCaOption, windowConfig, windowOption } from './stream-options.ts'

/** Builds the agent config object: file, then env, then flags. */
export function agentConfigFrom(o: Record<string, unknown>): Record<string, unknown> {
  const file = o.config ? JSON.parse(readFileSync(o.config as string, 'utf8')) : {}
  const fromFlags: Record<string, unknown> = {
    relay: o.relay,
    user: o.user,
    device: o.device,
    credential: o.credential,
    keepAliveSec: o.keepalive === undefined ? undefined : Number(o.keepalive),
    allow: o.allow,
    ca: o.ca,
    targetCa: o.targetCa,
    insecure: o.insecure,
    stateDir: o.stateDir,
    logLevel: o.logLevel,
    ...windowConfig(o),
  }
  const merged = { ...file }
  for (const [key, value] of Object.entries(fromFlags)) if (value !== undefined) merged[key] = value
  // A port flag turns the service on (with the file's other settings for it, if any).
  const ports: Array<[string, unknown]> = [
    ['httpIngest', o.httpIngestPort],
    ['metrics', o.metricsPort],
  ]
  for (const [key, port] of ports) {
    if (port !== undefined) merged[key] = { ...(file[key] ?? {}), port: Number(port) }
  }
  return merged
}

export function agentCommand(): Command {
  return new Command('agent')
    .description('run the gateway agent: dial out to the relay and open allowed local targets on request')
    .addOption(new Option('-c, --config <file>', 'JSON config file').env('TETHER_AGENT_CONFIG'))
    .addOption(new Option('--relay <url>', 'relay URL, ws:// or wss://').env('TETHER_RELAY'))
    .addOption(new Option('--user <user>', 'device owner on the relay').env('TETHER_USER'))
    .addOption(new Option('--device <id>', 'device id').env('TETHER_DEVICE'))
    .addOption(new Option('--credential <secret>', 'device credential').env('TETHER_CREDENTIAL'))
    .addOption(
      new Option('--keepalive <sec>', 'keep-alive period, 1..1800 s (default 60)').env('TETHER_KEEPALIVE'),
    )
    .addOption(
      new Option('--allow <rules>', 'allowed targets, repeatable or comma-separated: host:port, CIDR:ports')
        .env('TETHER_ALLOW')
        .argParser(collectList),
    )
    .addOption(new Option('--ca <file>', 'PEM CA for the relay certificate').env('TETHER_CA'))
    .addOption(targetCaOption('local targets'))
    .addOption(new Option('--insecure', 'do not verify the relay certificate').env('TETHER_INSECURE'))
    .addOption(
      new Option('--state-dir <dir>', 'state directory (default ./agent-state)').env('TETHER_STATE_DIR'),
    )
    .addOption(new Option('--log-level <level>', 'pino level (default info)').env('TETHER_LOG_LEVEL'))
    .addOption(windowOption())
    .addOption(maxWindowOption())
    .addOption(
      new Option('--http-ingest-port <port>', 'serve POST /data/{device} on this port (default off)').env(
        'TETHER_HTTP_INGEST_PORT',
      ),
    )
    .addOption(
      new Option('--metrics-port <port>', 'serve Prometheus /metrics on this port (default off)').env(
        'TETHER_METRICS_PORT',
      ),
    )
    .action(async (o) => {
      const agent = await startAgent(agentConfigFrom(o))
      stopOnSignals(() => agent.stop())
    })
}
