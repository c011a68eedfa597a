/** External tools the bench drives (iperf3, ssh, ssh-keygen, sshd, openssl), installed with apt-get if missing. */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { log } from './log.ts'
import { run } from './processes.ts'

export interface Tools {
  iperf3: string
  ssh?: string
  sshd?: string
}

/** Full path of `cmd` on PATH (or in the sbin/bin dirs), if any. */
export function which(cmd: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin', '/sbin', '/bin']
  for (const dir of dirs) {
    if (!dir) continue
    const full = path.join(dir, cmd)
    if (existsSync(full)) return full
  }
  return undefined
}

/** A command the bench runs and the Debian package that provides it. */
export interface WantedTool {
  cmd: string
  pkg: string
}

/** The OpenSSH tools of the `ssh -R` paths: client, key generator and server. */
export const SSH_TOOLS: WantedTool[] = [
  { cmd: 'ssh', pkg: 'openssh-client' },
  { cmd: 'ssh-keygen', pkg: 'openssh-client' },
  { cmd: 'sshd', pkg: 'openssh-server' },
]

/**
 * Installs the packages of the `wanted` commands that are not on PATH with apt-get (root only; openssh-server
 * brings openssh-client along); throws when one is still missing afterwards.
 */
export function installMissing(wanted: WantedTool[]): void {
  const missing = wanted.filter((w) => !which(w.cmd))
  if (missing.length === 0) return
  const pkgs = [...new Set(missing.map((m) => m.pkg))]
  if (pkgs.includes('openssh-server')) pkgs.push('openssh-client')
  const unique = [...new Set(pkgs)]
  log(`missing ${missing.map((m) => m.cmd).join(', ')}: installing ${unique.join(' ')} with apt-get`)
  if (process.getuid?.() !== 0) throw new Error(`not root: install ${unique.join(' ')} yourself`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  log('apt-get update')
  run('apt-get', ['update'], 300_000, env)
  log(`apt-get install -y ${unique.join(' ')}`)
  run('apt-get', ['install', '-y', '--no-install-recommends', ...unique], 600_000, env)
  const still = wanted.filter((w) => !which(w.cmd))
  if (still.length > 0) throw new Error(`still missing after install: ${still.map((m) => m.cmd).join(', ')}`)
  log(`installed ${unique.join(' ')}`)
}

/** Finds the tools the selected paths need; installs the missing ones with apt-get (root only). */
export function ensureTools(needSsh: boolean, needOpenssl: boolean): Tools {
  const wanted: WantedTool[] = [{ cmd: 'iperf3', pkg: 'iperf3' }]
  if (needSsh) wanted.push(...SSH_TOOLS)
  if (needOpenssl) wanted.push({ cmd: 'openssl', pkg: 'openssl' })
  installMissing(wanted)
  return { iperf3: which('iperf3')!, ssh: which('ssh'), sshd: which('sshd') }
}

/** `ssh -V` prints to stderr. */
export function sshVersion(ssh: string): string {
  return spawnSync(ssh, ['-V'], { encoding: 'utf8' }).stderr.trim()
}

/** First line of `iperf3 --version`. */
export function iperfVersion(iperf3: string): string {
  return spawnSync(iperf3, ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0]
}
