/** What proxy listeners need from the relay, passed in explicitly. */
import type { Logger } from 'pino'
import type { AgentHub } from '../hub/agent-hub.ts'
import type { ProxyTarget } from './schemas.ts'

export interface PluginConfig {
  address: string
}

export interface ProxyContext {
  hub: AgentHub
  /** Named services on the relay host (relay configuration `plugins`). */
  plugins: Readonly<Record<string, PluginConfig>>
  log: Logger
  /** Relay-side dial timeout for host and plugin targets. */
  dialTimeoutMs: number
  /** Extra CA certificates (PEM) trusted for TLS to host and plugin targets. */
  targetCa: readonly string[]
}

/** The address a relay-side target resolves to (host address or the plugin's configured address). */
export function relayTargetAddress(target: ProxyTarget, ctx: ProxyContext): string {
  if (target.type === 'plugin') {
    const plugin = ctx.plugins[target.plugin]
    if (!plugin) throw new Error(`plugin ${target.plugin} is not configured on this relay`)
    return plugin.address
  }
  if (target.type === 'host') return target.address
  throw new Error('device targets are dialed by the agent')
}

/** Human name of a target, for logs and errors. */
export function describeTarget(target: ProxyTarget): string {
  if (target.type === 'device') return `${target.user}/${target.device} ${target.address}:${target.port}`
  if (target.type === 'plugin') return `plugin ${target.plugin}:${target.port}`
  return `${target.address}:${target.port}`
}
