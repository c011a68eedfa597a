/**
 * An OpenSSH session through tcp-iotmp to a throw-away sshd.
 * A missing tool skips the test locally and fails it in CI (CI=true), naming the Debian package.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { chmod, mkdir, writeFile } from 'node:fs/promises'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { createTcpProxy, freePort, startTunnel } from '../harness.ts'
import { accepts, isRoot, ok, proxyStatus, ready, requireTools, run, sandbox, TIMEOUT } from './tools.ts'

test('OpenSSH: an ssh session to a loopback sshd through tcp-iotmp', TIMEOUT, async (t) => {
  const tools = requireTools(t, {
    sshd: 'openssh-server',
    ssh: 'openssh-client',
    'ssh-keygen': 'openssh-client',
  })
  if (!tools) return
  const box = await sandbox(t, 'ssh')
  const hostKey = join(box.dir, 'host_ed25519')
  const clientKey = join(box.dir, 'client_ed25519')
  for (const key of [hostKey, clientKey]) {
    ok(
      await run(tools['ssh-keygen']!, ['-q', '-t', 'ed25519', '-N', '', '-C', 'tether-test', '-f', key]),
      'ssh-keygen',
    )
  }
  const authorizedKeys = join(box.dir, 'authorized_keys')
  await writeFile(authorizedKeys, readFileSync(`${clientKey}.pub`))
  await chmod(authorizedKeys, 0o600)
  const sshPort = await freePort()
  const config = join(box.dir, 'sshd_config')
  await writeFile(
    config,
    [
      `Port ${sshPort}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      'StrictModes no',
      'UsePAM no',
      `PidFile ${join(box.dir, 'sshd.pid')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      '',
    ].join('\n'),
  )
  if (isRoot) await mkdir('/run/sshd', { recursive: true, mode: 0o755 }) // privilege separation dir
  const server = box.spawn(tools.sshd!, ['-D', '-e', '-f', config])
  await ready(server, 'sshd', () => accepts(sshPort))

  const { relay } = await startTunnel(t, [`127.0.0.1:${sshPort}`])
  const port = await createTcpProxy(relay, 'ssh', { device: 'gw', address: '127.0.0.1', port: sshPort })
  const session = await run(tools.ssh!, [
    '-F',
    '/dev/null',
    '-p',
    String(port),
    '-i',
    clientKey,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'ConnectTimeout=10',
    '-o',
    'LogLevel=ERROR',
    `${userInfo().username}@127.0.0.1`,
    'echo tunnelled-ssh',
  ])
  assert.equal(session.code, 0, `ssh failed:\n${session.stderr}\nsshd:\n${server.output()}`)
  assert.equal(session.stdout.trim(), 'tunnelled-ssh')
  const status = await proxyStatus(relay, 'ssh')
  assert.equal(status.total_connections, 1)
})
