/** The OpenSSH path: a private sshd on a free loopback port and `ssh -N -R` forwards to the targets. */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { freePort, tryConnect } from './ports.ts'
import { isRunning, makeTempDir, run, spawnChild, stopChildren, tailOf } from './processes.ts'
import type { PathSetup, Targets } from './types.ts'
import { waitFor } from './wait.ts'

function writeSshdConfig(dir: string, sshPort: number, hostKey: string, authorizedKeys: string): string {
  const config = path.join(dir, 'sshd_config')
  writeFileSync(
    config,
    [
      'ListenAddress 127.0.0.1',
      `Port ${sshPort}`,
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      'StrictModes no',
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      'UsePAM no',
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'AllowTcpForwarding yes',
      'GatewayPorts no',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  )
  return config
}

/** OpenSSH: a private sshd on a free loopback port, and `ssh -N -R` forwarding to both targets. */
export async function startSsh(tools: { ssh?: string; sshd?: string }, targets: Targets): Promise<PathSetup> {
  const ssh = tools.ssh
  const sshd = tools.sshd
  if (!ssh || !sshd) throw new Error('ssh/sshd not found')
  const dir = makeTempDir('ssh')
  const hostKey = path.join(dir, 'host_ed25519')
  const clientKey = path.join(dir, 'client_ed25519')
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench-host', '-f', hostKey])
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench-client', '-f', clientKey])
  const authorizedKeys = path.join(dir, 'authorized_keys')
  writeFileSync(authorizedKeys, readFileSync(`${clientKey}.pub`))
  // sshd refuses to start without its privilege-separation directory (normally made by the service unit).
  if (process.getuid?.() === 0 && !existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755 })
  const sshPort = await freePort()
  const config = writeSshdConfig(dir, sshPort, hostKey, authorizedKeys)
  const sshdLog = path.join(dir, 'sshd.log')
  const sshdProc = spawnChild('sshd', sshd, ['-D', '-e', '-f', config], { logFile: sshdLog })
  await waitFor('sshd to listen', async () => {
    if (!isRunning(sshdProc)) throw new Error(`sshd exited: ${tailOf(sshdLog)}`)
    return tryConnect(sshPort)
  })

  const iperfFwd = await freePort()
  const echoFwd = await freePort()
  const user = os.userInfo().username
  const sshLog = path.join(dir, 'ssh.log')
  // biome-ignore format: one option per line
  const sshArgs = [
    '-N', '-F', '/dev/null',
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'ExitOnForwardFailure=yes',
    '-o', 'BatchMode=yes',
    '-o', 'IdentitiesOnly=yes',
    '-o', 'LogLevel=ERROR',
    '-i', clientKey,
    '-p', String(sshPort),
    '-R', `${iperfFwd}:127.0.0.1:${targets.iperfPort}`,
    '-R', `${echoFwd}:127.0.0.1:${targets.echoPort}`,
    `${user}@127.0.0.1`,
  ]
  const sshProc = spawnChild('ssh', ssh, sshArgs, { logFile: sshLog })
  // Poll only the echo forward: a bare connect/close through the iperf3 forward upsets the iperf3 server's
  // next test. sshd handles the session's global requests in order and the iperf3 -R comes first, so once
  // the echo forward accepts, the iperf3 one listens too (ExitOnForwardFailure ends ssh if either fails).
  await waitFor(`ssh -R forward on :${echoFwd}`, async () => {
    if (!isRunning(sshProc)) throw new Error(`ssh exited: ${tailOf(sshLog)}`)
    return tryConnect(echoFwd)
  })
  const version = spawnSync(ssh, ['-V'], { encoding: 'utf8' }).stderr.trim()
  return {
    iperfPort: iperfFwd,
    echoPort: echoFwd,
    pids: { ssh: sshProc.pid! },
    info: { version, command: `ssh ${sshArgs.join(' ')}` },
    stop: () => stopChildren([sshdProc, sshProc]),
  }
}
