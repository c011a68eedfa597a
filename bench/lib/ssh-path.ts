/**
 * The OpenSSH path: a private sshd on a free loopback port and `ssh -N -R` forwards to the targets. The pieces
 * (`startSshd`, `sshClientOptions`, `spawnSshForward`) also make the portal bench's `ssh -tt -R` path.
 */
import type { ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { freePort, tryConnect } from './ports.ts'
import { isRunning, makeTempDir, run, spawnChild, stopChildren, tailOf } from './processes.ts'
import { sshVersion } from './tools.ts'
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

/** A private sshd listening on 127.0.0.1, with throw-away host and client keys in its temp dir. */
export interface Sshd {
  /** The temp dir holding the keys, the config and the logs. */
  dir: string
  port: number
  /** The client's private key (its public half is the only authorized key). */
  clientKey: string
  proc: ChildProcess
}

/** Starts a private sshd (temp dir `prefix`) on a free loopback port; waits until it accepts connections. */
export async function startSshd(sshd: string, prefix: string): Promise<Sshd> {
  const dir = makeTempDir(prefix)
  const hostKey = path.join(dir, 'host_ed25519')
  const clientKey = path.join(dir, 'client_ed25519')
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench-host', '-f', hostKey])
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench-client', '-f', clientKey])
  const authorizedKeys = path.join(dir, 'authorized_keys')
  writeFileSync(authorizedKeys, readFileSync(`${clientKey}.pub`))
  // sshd refuses to start without its privilege-separation directory (normally made by the service unit).
  if (process.getuid?.() === 0 && !existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755 })
  const port = await freePort()
  const config = writeSshdConfig(dir, port, hostKey, authorizedKeys)
  const sshdLog = path.join(dir, 'sshd.log')
  const proc = spawnChild('sshd', sshd, ['-D', '-e', '-f', config], { logFile: sshdLog })
  try {
    await waitFor('sshd to listen', async () => {
      if (!isRunning(proc)) throw new Error(`sshd exited: ${tailOf(sshdLog)}`)
      return tryConnect(port)
    })
  } catch (err) {
    await stopChildren([proc])
    throw err
  }
  return { dir, port, clientKey, proc }
}

/** The ssh client options of both ssh paths: no config or host-key checks, the one key, fail on a failed -R. */
export function sshClientOptions(sshd: Sshd): string[] {
  // biome-ignore format: one option per line
  return [
    '-F', '/dev/null',
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'ExitOnForwardFailure=yes',
    '-o', 'BatchMode=yes',
    '-o', 'IdentitiesOnly=yes',
    '-o', 'LogLevel=ERROR',
    '-i', sshd.clientKey,
    '-p', String(sshd.port),
  ]
}

/** `user@127.0.0.1` for the current user (root in the bench), the login the sshd authorizes. */
export const sshLogin = () => `${os.userInfo().username}@127.0.0.1`

/**
 * Spawns `ssh args` (log in the sshd's dir) and waits until `pollPort`, one of its -R forwards, accepts; stops
 * the ssh again when it does not.
 */
export async function spawnSshForward(
  ssh: string,
  sshd: Sshd,
  args: string[],
  pollPort: number,
): Promise<ChildProcess> {
  const sshLog = path.join(sshd.dir, 'ssh.log')
  const proc = spawnChild('ssh', ssh, args, { logFile: sshLog })
  try {
    await waitFor(`ssh -R forward on :${pollPort}`, async () => {
      if (!isRunning(proc)) throw new Error(`ssh exited: ${tailOf(sshLog)}`)
      return tryConnect(pollPort)
    })
  } catch (err) {
    await stopChildren([proc])
    throw err
  }
  return proc
}

/** OpenSSH: a private sshd on a free loopback port, and `ssh -N -R` forwarding to both targets. */
export async function startSsh(tools: { ssh?: string; sshd?: string }, targets: Targets): Promise<PathSetup> {
  const ssh = tools.ssh
  if (!ssh || !tools.sshd) throw new Error('ssh/sshd not found')
  const sshd = await startSshd(tools.sshd, 'ssh')
  const iperfFwd = await freePort()
  const echoFwd = await freePort()
  // biome-ignore format: one option per line
  const sshArgs = [
    '-N', ...sshClientOptions(sshd),
    '-R', `${iperfFwd}:127.0.0.1:${targets.iperfPort}`,
    '-R', `${echoFwd}:127.0.0.1:${targets.echoPort}`,
    sshLogin(),
  ]
  // Poll only the echo forward: a bare connect/close through the iperf3 forward upsets the iperf3 server's
  // next test. sshd handles the session's global requests in order and the iperf3 -R comes first, so once
  // the echo forward accepts, the iperf3 one listens too (ExitOnForwardFailure ends ssh if either fails).
  const sshProc = await spawnSshForward(ssh, sshd, sshArgs, echoFwd)
  return {
    iperfPort: iperfFwd,
    echoPort: echoFwd,
    pids: { ssh: sshProc.pid! },
    info: { version: sshVersion(ssh), command: `ssh ${sshArgs.join(' ')}` },
    stop: () => stopChildren([sshd.proc, sshProc]),
  }
}
