/** The `tether` command: relay, agent, demo and the admin subcommands. */
import { Command } from 'commander'
import { agentCommand } from './agent-command.ts'
import { converterCommand } from './converter-command.ts'
import { demoCommand } from './demo-command.ts'
import { deviceCommand } from './device-command.ts'
import { loginCommand } from './login-command.ts'
import { proxyCommand } from './proxy-command.ts'
import { relayCommand } from './relay-command.ts'
import { userCommand } from './user-command.ts'

const program = new Command('tether')
  .description('Reach devices on LANs without public IPs: edge agent and cloud relay over IoTMP')
  .showHelpAfterError()
program.addCommand(relayCommand())
program.addCommand(agentCommand())
program.addCommand(loginCommand())
program.addCommand(deviceCommand())
program.addCommand(proxyCommand())
program.addCommand(userCommand())
program.addCommand(demoCommand())
program.addCommand(converterCommand())

await program.parseAsync(process.argv).catch((err: Error) => {
  process.stderr.write(`tether: ${err.message}\n`)
  process.exit(1)
})
