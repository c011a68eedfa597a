/** Finding the processes a child forked (nginx workers, sshd's per-connection process) from /proc. */
import { readdirSync, readFileSync } from 'node:fs'

interface ProcEntry {
  pid: number
  ppid: number
  comm: string
}

function allProcesses(): ProcEntry[] {
  const out: ProcEntry[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const open = stat.indexOf('(')
      const close = stat.lastIndexOf(')')
      const fields = stat.slice(close + 2).split(' ')
      out.push({ pid: Number(name), ppid: Number(fields[1]), comm: stat.slice(open + 1, close) })
    } catch {
      // exited meanwhile
    }
  }
  return out
}

/** Every descendant of `pid` (children, their children, …), in breadth-first order. */
export function descendantsOf(pid: number): ProcEntry[] {
  const procs = allProcesses()
  const out: ProcEntry[] = []
  let frontier = [pid]
  while (frontier.length > 0) {
    const next = procs.filter((p) => frontier.includes(p.ppid))
    out.push(...next)
    frontier = next.map((p) => p.pid)
  }
  return out
}

/** Direct children of `pid` whose command name is `comm`. */
export function childrenNamed(pid: number, comm: string): number[] {
  return allProcesses()
    .filter((p) => p.ppid === pid && p.comm === comm)
    .map((p) => p.pid)
}
