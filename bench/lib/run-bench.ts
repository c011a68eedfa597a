/** Runs a bench's main: stops its children on signals, a whole-run watchdog and any failure, then exits. */
import { log } from './log.ts'
import { cleanup, cleanupSync } from './processes.ts'

/**
 * Awaits `main` (its exit code); `onStop` runs first when a signal or the watchdog (`timeoutS`, named by
 * BENCH_TIMEOUT) cuts the run short.
 */
export async function runBench(
  main: () => Promise<number>,
  timeoutS: number,
  onStop?: () => void,
): Promise<never> {
  const stop = (why: string, code: number) => {
    log(why)
    onStop?.()
    cleanup().finally(() => process.exit(code))
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => stop(`${signal}: stopping`, 130))
  process.on('exit', cleanupSync)
  setTimeout(
    () => stop(`whole run exceeded BENCH_TIMEOUT=${timeoutS}s: stopping`, 124),
    timeoutS * 1000,
  ).unref()
  let exitCode = 1
  try {
    exitCode = await main()
  } catch (err) {
    log(`FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
  } finally {
    await cleanup()
  }
  process.exit(exitCode)
}
