/** `tether proxy add|list|rm`: manage proxy profiles (admin). */
import { Command } from 'commander'
import { api, printTable, withAdminOptions } from './admin-client.ts'

/** Splits `host:port` (IPv6 in brackets). */
function hostPort(value: string): { address: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(value)
  if (!m) throw new Error(`expected host:port, got ${value}`)
  return { address: (m[1] ?? m[2])!, port: Number(m[3]) }
}

/** Splits `user/device`. */
function ownerDevice(value: string): { user: string; device: string } {
  const [user, device] = value.split('/')
  if (!user || !device) throw new Error(`expected user/device, got ${value}`)
  return { user, device }
}

export function proxyCommand(): Command {
  const cmd = new Command('proxy').description('manage proxy profiles (admin role)')
  cmd.addCommand(
    withAdminOptions(
      new Command('add')
        .description('expose a LAN target of an agent on a relay port (TCP over IoTMP)')
        .argument('<id>', 'profile id: letters, digits, _ and -')
        .requiredOption('--device <user/device>', 'agent device that dials the target')
        .requiredOption('--target <host:port>', 'target on the agent LAN')
        .requiredOption('--port <port>', 'relay source port')
        .option('--bind <address>', 'relay bind address', '0.0.0.0')
        .option('--tls', 'agent connects to the target with TLS (SNI from the target host)')
        .option('--no-verify', 'with --tls: accept a self-signed target certificate')
        .option('--name <name>', 'display name')
        .option('--disabled', 'create disabled'),
    ).action(async (id: string, o) => {
      const profile = {
        id,
        ...(o.name ? { name: o.name } : {}),
        protocol: 'tcp-iotmp',
        enabled: !o.disabled,
        source: { port: Number(o.port), address: o.bind },
        target: {
          type: 'device',
          ...ownerDevice(o.device),
          ...hostPort(o.target),
          tls: Boolean(o.tls),
          ...(o.tls ? { verify: o.verify !== false } : {}),
        },
      }
      const created = await api<{ status: { port?: number } }>(o, 'POST', '/v1/server/proxies', profile)
      process.stdout.write(`proxy ${id} listening on port ${created.status.port} → ${o.device} ${o.target}\n`)
    }),
  )
  cmd.addCommand(
    withAdminOptions(new Command('list').description('list proxy profiles with live status')).action(
      async (o) => {
        type Row = Record<string, unknown> & {
          source: { port: number }
          target: { user: string; device: string; address: string; port: number }
          status: { listening: boolean; active_connections: number; error?: string }
        }
        const rows = await api<Row[]>(o, 'GET', '/v1/server/proxies')
        printTable(
          rows.map((p) => ({
            ...p,
            port: p.source.port,
            target: `${p.target.user}/${p.target.device} ${p.target.address}:${p.target.port}`,
            state: p.status.error ?? (p.status.listening ? 'listening' : 'stopped'),
            active: p.status.active_connections,
          })),
          ['id', 'protocol', 'port', 'target', 'enabled', 'state', 'active'],
        )
      },
    ),
  )
  cmd.addCommand(
    withAdminOptions(
      new Command('rm').description('delete a proxy profile').argument('<id>', 'profile id'),
    ).action(async (id: string, o) => {
      await api(o, 'DELETE', `/v1/server/proxies/${id}`)
      process.stdout.write(`proxy ${id} deleted\n`)
    }),
  )
  return cmd
}
