/** The agent process: validated config in, relay link and target dialer wired together. */
import { mkdir } from 'node:fs/promises'
import { type Logger, pino } from 'pino'
import type { Session } from '../protocol/session.ts'
import { readCaFiles } from '../protocol/tls-target.ts'
import { type AgentConfig, loadAgentConfig } from './config.ts'
import { Allowlist } from './dialer/allowlist.ts'
import { Dialer } from './dialer/dialer.ts'
import { RelayLink } from './link/relay-link.ts'
import { AGENT_VERSION } from './version.ts'

/** A running agent. */
export interface Agent {
  config: Readonly<AgentConfig>
  link: RelayLink
  /** Resolves with the session once connected (at once if already connected). */
  connected(): Promise<Session>
  stop(): Promise<void>
}

/** Creates the agent's pino logger (readable when stdout is a terminal); the credential never reaches logs. */
export function agentLogger(level: string, pretty = process.stdout.isTTY === true): Logger {
  const transport = pretty
    ? pino.transport({ target: 'pino-pretty', options: { ignore: 'pid,hostname' } })
    : undefined
  return pino({ level, redact: { paths: ['credential', '*.credential'], censor: '[redacted]' } }, transport)
}

/** Starts an agent from configuration (validated here); it connects in the background. */
export async function startAgent(input: Record<string, unknown>, logger?: Logger): Promise<Agent> {
  const config = loadAgentConfig(input)
  const log = logger ?? agentLogger(config.logLevel)
  const allowlist = new Allowlist(config.allow)
  await mkdir(config.stateDir, { recursive: true })
  if (config.allow.length === 0) log.warn('allowlist is empty: the relay cannot open any local target')
  const dialer = new Dialer(allowlist, log.child({ component: 'dialer' }), {
    dialTimeoutMs: config.dialTimeoutMs,
    targetCa: readCaFiles(config.targetCa),
  })
  const link = new RelayLink({
    config,
    log: log.child({ component: 'link' }),
    onStartStream: dialer.handle,
    onDescribe: () => ({ version: AGENT_VERSION, allow: allowlist.toJSON(), refusals: dialer.refusals }),
  })
  link.start()
  return {
    config,
    link,
    connected: () =>
      link.session
        ? Promise.resolve(link.session)
        : new Promise((resolve) => link.once('connected', resolve)),
    stop: () => link.stop(),
  }
}
