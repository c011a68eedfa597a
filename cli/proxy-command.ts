/** `tether proxy add|list|show|enable|disable|rm`: manage proxy profiles (admin). */
import { Command, Option } from 'commander'
import { api, printTable, withAdminOptions } from './admin-client.ts'
import { collectList } from './stream-options.ts'

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

type Profile = Record<string, unknown> & {
  id: string
  protocol: string
  enabled: boolean
  source: { port: number }
  target: { type: string; user?: string; device?: string; address?: string; plugin?: string; port: number }
  status: {
    listening: boolean
    port?: number
    active_connections: number
    total_connections: number
    error?: string
    last_error?: { message: string; ts: number }
    portal?: { label: string }
  }
}

/** The listen error, else the last connection error with its local time, for the list's last column. */
function lastError(status: Profile['status']): string {
  if (status.error) return status.error
  if (!status.last_error) return ''
  const at = new Date(status.last_error.ts).toLocaleTimeString()
  return `${at} ${status.last_error.message}`
}

/** Builds the target from `--device`, `--host` or `--plugin`. */
function targetFrom(o: Record<string, string | boolean | undefined>) {
  const tls = o.tls
    ? {
        tls: true,
        verify: o.verify !== false,
        ...(o.servername ? { servername: o.servername as string } : {}),
      }
    : { tls: false }
  const chosen = ['device', 'host', 'plugin'].filter((k) => o[k])
  if (chosen.length !== 1) throw new Error('give exactly one of --device, --host or --plugin')
  if (o.device) {
    if (!o.target) throw new Error('--device needs --target host:port on the agent LAN')
    return { type: 'device', ...ownerDevice(o.device as string), ...hostPort(o.target as string), ...tls }
  }
  if (o.host) return { type: 'host', ...hostPort(o.host as string), ...tls }
  const [plugin, port] = (o.plugin as string).split(':')
  if (!plugin || !port) throw new Error('--plugin expects name:port')
  return { type: 'plugin', plugin, port: Number(port), ...tls }
}

export function proxyCommand(): Command {
  const cmd = new Command('proxy').description('manage proxy profiles (admin role)')
  cmd.addCommand(
    withAdminOptions(
      new Command('add')
        .description('create a proxy: a relay port forwarding to a host, a plugin or a device LAN target')
        .argument('<id>', 'profile id: letters, digits, _ and -')
        .option('--port <port>', 'relay source port, 0 = any (not used by http-iotmp portals)')
        .addOption(
          new Option(
            '--protocol <protocol>',
            'tcp | udp | tcp-iotmp | udp-iotmp | http-iotmp (default: tcp-iotmp with --device, else tcp)',
          ),
        )
        .option('--device <user/device>', 'agent that dials the target (with --target)')
        .option('--target <host:port>', 'target on the agent LAN')
        .option('--host <host:port>', 'target reachable from the relay')
        .option('--plugin <name:port>', 'a plugin configured on the relay')
        .option('--bind <address>', 'relay bind address', '0.0.0.0')
        .option('--allow <cidrs>', 'client CIDRs allowed to connect (repeatable, comma lists)', collectList)
        .option('--max-connections <n>', 'concurrent connections (UDP: client mappings)')
        .option('--idle-timeout <sec>', 'UDP: idle client mappings expire after this many seconds')
        .option('--tls', 'connect to the target with TLS (SNI from the target host)')
        .option('--no-verify', 'with --tls: accept a self-signed target certificate')
        .option(
          '--servername <name>',
          'with --tls: name the certificate must match (default: the target host)',
        )
        .option('--preserve-host', 'http-iotmp: send the browser Host/Origin/Referer unchanged')
        .option('--name <name>', 'display name')
        .option('--description <text>', 'description')
        .option('--disabled', 'create disabled'),
    ).action(async (id: string, o) => {
      const protocol = o.protocol ?? (o.device ? 'tcp-iotmp' : 'tcp')
      if (o.port === undefined && protocol !== 'http-iotmp') throw new Error('--port is required')
      const profile = {
        id,
        ...(o.name ? { name: o.name } : {}),
        ...(o.description ? { description: o.description } : {}),
        protocol,
        enabled: !o.disabled,
        ...(o.preserveHost ? { portal: { preserveHost: true } } : {}),
        source: {
          port: Number(o.port ?? 0),
          address: o.bind,
          ...(o.allow ? { allow: o.allow } : {}),
          ...(o.maxConnections ? { maxConnections: Number(o.maxConnections) } : {}),
          ...(o.idleTimeout ? { idleTimeoutSec: Number(o.idleTimeout) } : {}),
        },
        target: targetFrom(o),
      }
      const created = await api<Profile>(o, 'POST', '/v1/server/proxies', profile)
      if (created.status.portal) {
        const { user, device } = created.target
        process.stdout.write(
          `portal ${id} ready: open ${o.relay}/console/devices/${device}/portal/${id}${user === 'admin' ? '' : `?user=${user}`}` +
            ` or run: tether proxy portal ${id}\n`,
        )
      } else {
        process.stdout.write(`proxy ${id} (${created.protocol}) listening on port ${created.status.port}\n`)
      }
    }),
  )
  cmd.addCommand(
    withAdminOptions(new Command('list').description('list proxy profiles with live status')).action(
      async (o) => {
        const rows = await api<Profile[]>(o, 'GET', '/v1/server/proxies')
        printTable(
          rows.map((p) => ({
            ...p,
            port: p.status.portal ? '-' : (p.status.port ?? p.source.port),
            target:
              p.target.type === 'device'
                ? `${p.target.user}/${p.target.device} ${p.target.address}:${p.target.port}`
                : p.target.type === 'plugin'
                  ? `plugin ${p.target.plugin}:${p.target.port}`
                  : `${p.target.address}:${p.target.port}`,
            state: p.status.error
              ? 'error'
              : p.status.portal
                ? 'portal'
                : p.status.listening
                  ? 'listening'
                  : 'stopped',
            active: p.status.active_connections,
            total: p.status.total_connections,
            'last error': lastError(p.status),
          })),
          ['id', 'protocol', 'port', 'target', 'enabled', 'state', 'active', 'total', 'last error'],
        )
      },
    ),
  )
  cmd.addCommand(
    withAdminOptions(
      new Command('portal')
        .description('print a one-time signed URL that opens an http-iotmp portal in a browser')
        .argument('<id>', 'profile id')
        .option('--device <user/device>', 'the device (needed by non-admin users, who cannot read profiles)')
        .option('--ttl <sec>', 'session lifetime in seconds (at most the relay portalSessionTtlSec)'),
    ).action(async (id: string, o) => {
      const { user, device } = o.device
        ? ownerDevice(o.device)
        : ((await api<Profile>(o, 'GET', `/v1/server/proxies/${id}`)).target as {
            user: string
            device: string
          })
      const link = await api<{ url: string; session: { expires_ts: number } }>(
        o,
        'POST',
        `/v1/users/${user}/devices/${device}/proxies/${id}/portal`,
        o.ttl ? { ttl_sec: Number(o.ttl) } : {},
      )
      const until = new Date(link.session.expires_ts).toLocaleString()
      process.stdout.write(`${link.url}\n(one use; the session it opens lasts until ${until})\n`)
    }),
  )
  cmd.addCommand(
    withAdminOptions(
      new Command('show')
        .description('print a profile and its status as JSON')
        .argument('<id>', 'profile id'),
    ).action(async (id: string, o) => {
      process.stdout.write(`${JSON.stringify(await api(o, 'GET', `/v1/server/proxies/${id}`), null, 2)}\n`)
    }),
  )
  for (const [name, enabled] of [
    ['enable', true],
    ['disable', false],
  ] as const) {
    cmd.addCommand(
      withAdminOptions(
        new Command(name)
          .description(
            enabled
              ? 'enable a proxy: open its listener'
              : 'disable a proxy: close its listener and live connections',
          )
          .argument('<id>', 'profile id'),
      ).action(async (id: string, o) => {
        const { status: _status, ...profile } = await api<Profile>(o, 'GET', `/v1/server/proxies/${id}`)
        await api(o, 'PUT', `/v1/server/proxies/${id}`, { ...profile, enabled })
        process.stdout.write(`proxy ${id} ${enabled ? 'enabled' : 'disabled'}\n`)
      }),
    )
  }
  cmd.addCommand(
    withAdminOptions(
      new Command('rm').description('delete proxy profiles').argument('<ids...>', 'one or more profile ids'),
    ).action(async (ids: string[], o) => {
      const res = await api<{ deleted: string[]; not_found: string[] }>(o, 'DELETE', '/v1/server/proxies', {
        ids,
      })
      for (const id of res.deleted) process.stdout.write(`proxy ${id} deleted\n`)
      if (res.not_found.length) throw new Error(res.not_found.map((id) => `proxy ${id} not found`).join('; '))
    }),
  )
  return cmd
}
