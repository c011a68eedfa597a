/** `tether user add|list` (admin): manage users through the relay API. */
import { Command, Option } from 'commander'
import { randomSecret } from '../relay/auth/passwords.ts'
import { api, printTable, withAdminOptions } from './admin-client.ts'

export function userCommand(): Command {
  const cmd = new Command('user').description('manage users (admin role)')
  cmd.addCommand(
    withAdminOptions(
      new Command('add')
        .description('create a user; prints the password when it was generated')
        .argument('<username>', 'letters, digits, _ . and -')
        .addOption(new Option('--role <role>', 'user or admin').choices(['user', 'admin']).default('user'))
        .addOption(
          new Option('--password <password>', 'at least 8 characters (default: generated)').env(
            'TETHER_NEW_PASSWORD',
          ),
        ),
    ).action(async (username: string, o) => {
      const password = o.password ?? randomSecret(12)
      await api(o, 'POST', '/v1/users', { username, password, role: o.role })
      process.stdout.write(
        `user ${username} (${o.role}) created\n${o.password ? '' : `password: ${password}\n`}`,
      )
    }),
  )
  cmd.addCommand(
    withAdminOptions(new Command('list').description('list users')).action(async (o) => {
      printTable(await api<Array<Record<string, unknown>>>(o, 'GET', '/v1/users'), [
        'username',
        'role',
        'enabled',
      ])
    }),
  )
  return cmd
}
