/**
 * `ssh -R` with a tty session (`ssh -tt -R … sleep`) instead of `ssh -N -R`: the opt-in `ssh-tty` path of the
 * portal bench. sshd sets TCP_NODELAY on its side of the connection only for an interactive (pty) session;
 * with `-N` there is no session, Nagle stays on at sshd, and small requests multiplexed over the one ssh
 * connection wait for delayed ACKs (≈40 ms stalls under concurrent keep-alive load). The plain path uses
 * bench/lib/ssh-path.ts (`ssh -N -R`, what people type); this one shows the same DIY setup without the stalls.
 */
import type { ChildProcess } from 'node:child_process'
import { freePort } from './ports.ts'
import { stopChildren } from './processes.ts'
import { type Sshd, spawnSshForward, sshClientOptions, sshLogin, startSshd } from './ssh-path.ts'

export interface SshForward {
  /** The forwarded port on the sshd side (127.0.0.1). */
  port: number
  sshPid: number
  sshdPid: number
  info: Record<string, unknown>
  stop: () => Promise<void>
}

/** A private sshd on a free loopback port and `ssh -tt -R 127.0.0.1:P:127.0.0.1:targetPort … sleep`. */
export async function startSshTtyForward(
  tools: { ssh?: string; sshd?: string },
  targetPort: number,
): Promise<SshForward> {
  const { ssh } = tools
  if (!ssh || !tools.sshd) throw new Error('ssh/sshd not found')
  const sshd: Sshd = await startSshd(tools.sshd, 'ssh-tty')
  let sshProc: ChildProcess | undefined
  const stop = () => stopChildren([sshd.proc, ...(sshProc ? [sshProc] : [])])
  try {
    const forward = await freePort()
    // biome-ignore format: one option per line
    const sshArgs = [
      '-tt', ...sshClientOptions(sshd),
      '-R', `127.0.0.1:${forward}:127.0.0.1:${targetPort}`,
      sshLogin(),
      'exec sleep 2147483647',
    ]
    sshProc = await spawnSshForward(ssh, sshd, sshArgs, forward)
    return {
      port: forward,
      sshPid: sshProc.pid!,
      sshdPid: sshd.proc.pid!,
      info: { command: `ssh ${sshArgs.join(' ')}` },
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}
