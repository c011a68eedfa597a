/** `BENCH_*` environment knobs: whole numbers, durations in seconds and comma-separated lists. */

/** An integer ≥ `min` from `name`, or `fallback` when unset or empty. */
export function envInt(name: string, fallback: number, min = 1): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}, got ${raw}`)
  return n
}

/** Whole seconds ≥ `min` from `name`, written `10` or `10s`, or `fallback` when unset or empty. */
export function envSeconds(name: string, fallback: number, min = 1): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw.replace(/s$/, ''))
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be whole seconds >= ${min}, got ${raw}`)
  return n
}

/** The comma-separated, trimmed, non-empty items of `name` (none when unset). */
export function envList(name: string): string[] {
  return (process.env[name] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
}
