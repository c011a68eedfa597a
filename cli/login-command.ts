/** `tether login`: exchanges user and password for an access token, printed for TETHER_TOKEN. */
import { Command, Option } from 'commander'
import { api, withAdminOptions } from './admin-client.ts'

export function loginCommand(): Command {
  return withAdminOptions(
    new Command('login')
      .description('get an access token; use as: export TETHER_TOKEN=$(tether login -u admin -p …)')
      .addOption(new Option('-u, --username <name>', 'user name').env('TETHER_USERNAME').default('admin'))
      .addOption(
        new Option('-p, --password <password>', 'password').env('TETHER_PASSWORD').makeOptionMandatory(),
      ),
  ).action(async (o) => {
    const res = await api<{ access_token: string }>(o, 'POST', '/oauth/token', {
      grant_type: 'password',
      username: o.username,
      password: o.password,
    })
    process.stdout.write(`${res.access_token}\n`)
  })
}
