/** `tether device add|list|rm`: manage a user's devices through the relay API. */
import { Command, Option } from 'commander'
import { api, printTable, tokenUser, withAdminOptions } from './admin-client.ts'

const ownerOption = () =>
  new Option('--user <user>', "device owner (default: the token's user)").env('TETHER_USER')

/** Resolves `--user`: given, else the user of the token, else admin. */
function withOwner<T extends { user?: string; token?: string }>(o: T): T & { user: string } {
  return { ...o, user: o.user ?? tokenUser(o.token) ?? 'admin' }
}

export function deviceCommand(): Command {
  const cmd = new Command('device').description('manage devices (agents and HTTP devices)')
  cmd.addCommand(
    withAdminOptions(
      new Command('add')
        .description('create a device; an agent gets a credential, an HTTP device a callback URL and token')
        .argument('<id>', 'device id: letters, digits, _ and -')
        .addOption(ownerOption())
        .addOption(new Option('--type <type>', 'agent or http').choices(['agent', 'http']).default('agent'))
        .option('--name <name>', 'display name')
        .option('--description <text>', 'description')
        .option('--credential <secret>', 'set the credential instead of generating one'),
    ).action(async (id: string, opts) => {
      const o = withOwner(opts)
      const created = await api<{ credential: string }>(o, 'POST', `/v1/users/${o.user}/devices`, {
        device: id,
        type: o.type,
        ...(o.name ? { name: o.name } : {}),
        ...(o.description ? { description: o.description } : {}),
        ...(o.credential ? { credential: o.credential } : {}),
      })
      if (o.type === 'agent') {
        process.stdout.write(`device ${o.user}/${id} created\ncredential: ${created.credential}\n`)
        return
      }
      const callback = await api<{ url: string; token: string; curl: string }>(
        o,
        'GET',
        `/v3/users/${o.user}/devices/${id}/callback`,
      )
      process.stdout.write(
        `device ${o.user}/${id} created\ncallback URL: ${callback.url}\ntoken: ${callback.token}\ntry: ${callback.curl}\n`,
      )
    }),
  )
  cmd.addCommand(
    withAdminOptions(
      new Command('list').description("list a user's devices").addOption(ownerOption()),
    ).action(async (opts) => {
      const o = withOwner(opts)
      const devices = await api<Array<Record<string, unknown> & { connection: { active: boolean } }>>(
        o,
        'GET',
        `/v1/users/${o.user}/devices`,
      )
      printTable(
        devices.map((d) => ({ ...d, connected: d.connection.active ? 'yes' : 'no' })),
        ['device', 'type', 'name', 'enabled', 'connected'],
      )
    }),
  )
  cmd.addCommand(
    withAdminOptions(
      new Command('rm').description('delete a device').argument('<id>', 'device id').addOption(ownerOption()),
    ).action(async (id: string, opts) => {
      const o = withOwner(opts)
      await api(o, 'DELETE', `/v1/users/${o.user}/devices/${id}`)
      process.stdout.write(`device ${o.user}/${id} deleted\n`)
    }),
  )
  return cmd
}
