/** Tools the portal bench drives (wrk, nginx and, for the ssh paths, OpenSSH), installed with apt-get if missing. */
import { spawnSync } from 'node:child_process'
import { installMissing, SSH_TOOLS, type WantedTool, which } from './tools.ts'

export interface PortalTools {
  wrk: string
  nginx: string
  ssh?: string
  sshd?: string
}

/** Finds wrk and nginx (and the OpenSSH tools with `needSsh`); installs the missing ones with apt-get. */
export function ensurePortalTools(needSsh: boolean): PortalTools {
  const wanted: WantedTool[] = [
    { cmd: 'wrk', pkg: 'wrk' },
    { cmd: 'nginx', pkg: 'nginx-light' },
  ]
  if (needSsh) wanted.push(...SSH_TOOLS)
  installMissing(wanted)
  return { wrk: which('wrk')!, nginx: which('nginx')!, ssh: which('ssh'), sshd: which('sshd') }
}

/** `wrk -v` prints its version and usage, exiting 1: the first line. */
export function wrkVersion(wrk: string): string {
  const res = spawnSync(wrk, ['-v'], { encoding: 'utf8' })
  return `${res.stdout}${res.stderr}`.split('\n')[0].trim()
}

/** `nginx -v` prints to stderr. */
export function nginxVersion(nginx: string): string {
  const res = spawnSync(nginx, ['-v'], { encoding: 'utf8' })
  return `${res.stderr}${res.stdout}`.split('\n')[0].trim()
}
