/** Options `tether relay` and `tether agent` share: list parsing, flow-control windows, trusted target CAs. */
import { Option } from 'commander'

/** argParser for repeatable, comma-separated list options. */
export const collectList = (value: string, previous: string[] = []): string[] => [
  ...previous,
  ...value.split(',').filter(Boolean),
]

/** `--window`: the per-stream flow-control window granted at first. */
export function windowOption(): Option {
  return new Option('--window <bytes>', 'per-stream flow-control window at first (default 262144)').env(
    'TETHER_WINDOW_BYTES',
  )
}

/** `--max-window`: how far a stream's window may grow for a reader that keeps up. */
export function maxWindowOption(): Option {
  return new Option('--max-window <bytes>', 'largest per-stream window after growth (default 4194304)').env(
    'TETHER_MAX_WINDOW_BYTES',
  )
}

/** `--target-ca`: PEM CA files trusted for TLS to `targets` (besides the bundled roots). */
export function targetCaOption(targets: string): Option {
  return new Option(
    '--target-ca <files>',
    `PEM CAs trusted for TLS to ${targets}, repeatable or comma-separated`,
  )
    .env('TETHER_TARGET_CA')
    .argParser(collectList)
}

/** The config keys of the window options, numbers when given. */
export function windowConfig(o: Record<string, unknown>): Record<string, number | undefined> {
  return {
    windowBytes: o.window === undefined ? undefined : Number(o.window),
    maxWindowBytes: o.maxWindow === undefined ? undefined : Number(o.maxWindow),
  }
}
