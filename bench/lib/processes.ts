/**
 * Child processes and temp dirs of the bench: each is registered here and stopped or removed on exit,
 * failure or signal. Also RSS and CPU-time sampling of running processes from /proc.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { sleep, withTimeout } from './wait.ts'

const children: { name: string; proc: ChildProcess }[] = []
const tempDirs: string[] = []
/** Set once cleanup starts: nothing new is started after that. */
let cleanedUp = false

/** Creates a temp dir that is removed at cleanup. */
export function makeTempDir(prefix: string): string {
  if (cleanedUp) throw new Error('the bench is stopping')
  const dir = mkdtempSync(path.join(os.tmpdir(), `tether-bench-${prefix}-`))
  tempDirs.push(dir)
  return dir
}

/** True while the process has neither exited nor been killed. */
export const isRunning = (proc: ChildProcess) => proc.exitCode === null && proc.signalCode === null

async function stopChild(proc: ChildProcess, graceMs = 3000): Promise<void> {
  if (!isRunning(proc) || proc.pid === undefined) return
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  proc.kill('SIGTERM')
  const killed = await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)])
  if (!killed && isRunning(proc)) {
    proc.kill('SIGKILL')
    await Promise.race([exited, sleep(1000)])
  }
}

/** Stops the given children (newest first) and forgets them. */
export async function stopChildren(procs: ChildProcess[]): Promise<void> {
  for (const proc of [...procs].reverse()) {
    await stopChild(proc)
    const i = children.findIndex((c) => c.proc === proc)
    if (i >= 0) children.splice(i, 1)
  }
}

/** Stops every registered child and removes every temp dir; later starts are refused. */
export async function cleanup(): Promise<void> {
  if (cleanedUp) return
  cleanedUp = true
  await stopChildren(children.map((c) => c.proc))
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true })
}

/** Last-resort cleanup for process exit: SIGKILLs the children and removes the temp dirs. */
export function cleanupSync(): void {
  for (const { proc } of children) if (isRunning(proc)) proc.kill('SIGKILL')
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true })
}

/** Spawns a long-running child with stdout/stderr going to a log file (plus an optional line watcher). */
export function spawnChild(
  name: string,
  cmd: string,
  args: string[],
  opts: { logFile: string; env?: NodeJS.ProcessEnv; onOutput?: (text: string) => void },
): ChildProcess {
  if (cleanedUp) throw new Error(`not starting ${name}: the bench is stopping`)
  const out = createWriteStream(opts.logFile)
  const proc = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
  children.push({ name, proc })
  for (const stream of [proc.stdout, proc.stderr]) {
    stream?.on('data', (chunk: Buffer) => {
      out.write(chunk)
      opts.onOutput?.(chunk.toString())
    })
  }
  proc.on('error', (err) => out.write(`\n[bench] spawn error: ${err.message}\n`))
  proc.on('exit', () => out.end())
  return proc
}

/** Runs a registered child to completion within `timeoutMs` (killed after); resolves with code and output. */
export async function runChild(
  name: string,
  cmd: string,
  args: string[],
  what: string,
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  if (cleanedUp) throw new Error('the bench is stopping')
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push({ name, proc })
  let stdout = ''
  let stderr = ''
  proc.stdout.on('data', (c: Buffer) => {
    stdout += c.toString()
  })
  proc.stderr.on('data', (c: Buffer) => {
    stderr += c.toString()
  })
  // 'close' comes after the output streams end, so the whole output has been read.
  const closed = new Promise<number | null>((resolve) => {
    proc.once('close', (code) => resolve(code))
    proc.once('error', (err) => {
      stderr += err.message
      resolve(null)
    })
  })
  try {
    const code = await withTimeout(what, timeoutMs, closed)
    return { code, stdout, stderr }
  } finally {
    await stopChildren([proc])
  }
}

/** The last `lines` lines of a log file. */
export function tailOf(file: string, lines = 25): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

/** Runs a short command to completion; throws with its output on failure. */
export function run(cmd: string, args: string[], timeoutMs = 60_000, env?: NodeJS.ProcessEnv): string {
  const res = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, env: env ?? process.env })
  if (res.error) throw new Error(`${cmd} ${args.join(' ')}: ${res.error.message}`)
  if (res.status !== 0) {
    throw new Error(
      `${cmd} ${args.join(' ')} exited ${res.status ?? res.signal}: ${res.stderr || res.stdout}`,
    )
  }
  return res.stdout
}

// ---------------------------------------------------------------------------------------------------------
// Process statistics from /proc.
// ---------------------------------------------------------------------------------------------------------

export interface ProcStats {
  pid: number
  /** VmRSS once set up, before any traffic. */
  startRssBytes: number
  peakRssBytes: number
  /** utime + stime since the process started. */
  cpuSeconds: number
  /** CPU seconds used during each measured part (tcp, udp, conn). */
  cpuSecondsByPart: Record<string, number>
}

function readStatusKb(pid: number, field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : undefined
  } catch {
    return undefined
  }
}

let ticksPerSecond: number | undefined
const clockTicks = () => {
  ticksPerSecond ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100
  return ticksPerSecond
}

function readCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // After "pid (comm) ": state is field 3, utime 14, stime 15 → indices 11 and 12 here.
    return (Number(fields[11]) + Number(fields[12])) / clockTicks()
  } catch {
    return undefined
  }
}

/** Samples VmRSS periodically and reads VmHWM at the end; the peak is the larger of the two. */
export class ProcWatcher {
  private peakKb = new Map<number, number>()
  private startKb = new Map<number, number>()
  private partCpu = new Map<number, Record<string, number>>()
  private timer: NodeJS.Timeout

  constructor(private readonly pids: Record<string, number>) {
    for (const pid of Object.values(pids)) this.startKb.set(pid, readStatusKb(pid, 'VmRSS') ?? 0)
    this.timer = setInterval(() => this.sample(), 250)
    this.timer.unref()
  }

  private sample(): void {
    for (const pid of Object.values(this.pids)) {
      const kb = readStatusKb(pid, 'VmRSS')
      if (kb !== undefined) this.peakKb.set(pid, Math.max(this.peakKb.get(pid) ?? 0, kb))
    }
  }

  /** Runs `fn` and adds the CPU time each process used meanwhile to `part`. */
  async during<T>(part: string, fn: () => Promise<T>): Promise<T> {
    const pids = Object.values(this.pids)
    const before = pids.map((pid) => readCpuSeconds(pid))
    try {
      return await fn()
    } finally {
      pids.forEach((pid, i) => {
        const start = before[i]
        const end = readCpuSeconds(pid)
        if (start === undefined || end === undefined) return
        const parts = this.partCpu.get(pid) ?? {}
        parts[part] = Math.round(((parts[part] ?? 0) + end - start) * 100) / 100
        this.partCpu.set(pid, parts)
      })
    }
  }

  /** Call before the processes are stopped. */
  finish(): Record<string, ProcStats> {
    clearInterval(this.timer)
    this.sample()
    const result: Record<string, ProcStats> = {}
    for (const [name, pid] of Object.entries(this.pids)) {
      const hwm = readStatusKb(pid, 'VmHWM') ?? 0
      const peakKb = Math.max(hwm, this.peakKb.get(pid) ?? 0)
      result[name] = {
        pid,
        startRssBytes: (this.startKb.get(pid) ?? 0) * 1024,
        peakRssBytes: peakKb * 1024,
        cpuSeconds: readCpuSeconds(pid) ?? Number.NaN,
        cpuSecondsByPart: this.partCpu.get(pid) ?? {},
      }
    }
    return result
  }
}
