/** Runs the `tether` CLI as a user does: a real child process (`cli/tether.mjs`). */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

export const CLI = new URL('../../cli/tether.mjs', import.meta.url).pathname
const run = promisify(execFile)

/** Runs `tether …args`; resolves with stdout/stderr and the exit code (never throws on non-zero). */
export async function tether(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--no-node-snapshot', CLI, ...args], {
      env: { ...process.env, ...env },
    })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}
