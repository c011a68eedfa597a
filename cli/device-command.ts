/** `tether device add|list|rm`: manage a user's devices through the relay API. */
import { Command, Option } from 'commander'
import { api, printTable, withAdminOptions } from './admin-client.ts'

const ownerOption = () => new Option('--user <user>', 'device owner').env('TETHER_USER').default('admin')

export function deviceCommand(): Command {
  const cmd = new Command('device').description('manage devices (agents)')
  cmd.addCommand(
    withAdminOptions(
      new Command('add')
        .description('create an agent device; prints its credential (shown only once)')
        .argument('<id>', 'device id: letters, digits, _ and -')
        .addOption(ownerOption())
        .option('--name <name>', 'display name')
        .option('--description <text>', 'description')
        .option('--credential <secret>', 'set the credential instead of generating one'),
    ).action(async (id: string, o) => {
      const created = await api<{ credential: string }>(o, 'POST', `/v1/users/${o.user}/devices`, {
        device: id,
        type: 'agent',
        ...(o.name ? { name: o.name } : {}),
        ...(o.description ? { description: o.description } : {}),
        ...(o.credential ? { credential: o.credential } : {}),
      })
      process.stdout.write(`device ${o.user}/${id} created\ncredential: ${created.credential}\n`)
    }),
  )
  cmd.addCommand(
    withAdminOptions(
      new Command('list').description("list a user's devices").addOption(ownerOption()),
    ).action(async (o) => {
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
    ).action(async (id: string, o) => {
      await api(o, 'DELETE', `/v1/users/${o.user}/devices/${id}`)
      process.stdout.write(`device ${o.user}/${id} deleted\n`)
    }),
  )
  return cmd
}
