/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`) by self time: the top functions, and the totals per
 * source (the relay's own files, each npm package, node internals, GC, idle).
 *
 *   node --import tsx bench/cpuprofile-top.ts FILE.cpuprofile [--top 30] [--skip 5] [--last 10]
 *     [--inclusive] [--callers NAME]
 *
 * --skip S drops the first S seconds of samples (startup, tsx compiling); --last S keeps only the last S
 * seconds (e.g. the measured wrk run, which ends shortly before the process is stopped). --inclusive adds the
 * top functions by total time (their own plus their callees'); --callers NAME adds the call chains (up to
 * 12 callers deep) that lead to NAME's self time, e.g. `--callers writev`.
 *
 * The repo's own TypeScript runs as tsx compiled it (esbuild, whitespace minified: a whole module on a few
 * lines), so the profile's line numbers of those files say nothing. Their `file:line` is mapped back to the
 * .ts source by compiling the file again the way tsx does and reading the source map; this uses the file as
 * it is now, so profile and summarise the same code. A `~` before the line marks a frame whose function name
 * was not found at its position in the recompiled code (the line may be off).
 */
import { existsSync, readFileSync } from 'node:fs'
import { createRequire, SourceMap } from 'node:module'
import path from 'node:path'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
  columnNumber: number
}
interface ProfileNode {
  id: number
  callFrame: CallFrame
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

const args = process.argv.slice(2)
const option = (name: string, fallback: number) => {
  const i = args.indexOf(name)
  if (i < 0) return fallback
  const v = Number(args[i + 1])
  args.splice(i, 2)
  if (!Number.isFinite(v)) throw new Error(`${name} needs a number`)
  return v
}
const flag = (name: string) => {
  const i = args.indexOf(name)
  if (i >= 0) args.splice(i, 1)
  return i >= 0
}
const stringOption = (name: string) => {
  const i = args.indexOf(name)
  if (i < 0) return undefined
  const v = args[i + 1]
  args.splice(i, 2)
  if (!v) throw new Error(`${name} needs a function name`)
  return v
}
const inclusive = flag('--inclusive')
const callersOf = stringOption('--callers')
const top = option('--top', 30)
const skip = option('--skip', 0)
const last = option('--last', 0)
const file = args[0]
if (!file) {
  process.stderr.write(
    'usage: cpuprofile-top.ts FILE.cpuprofile [--top N] [--skip S] [--last S] [--inclusive] [--callers NAME]\n',
  )
  process.exit(2)
}

const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')

/** Where a frame's code lives: the repo's own file, an npm package, node internals or a V8 pseudo-frame. */
function sourceOf(frame: CallFrame): string {
  const { url, functionName } = frame
  if (!url) return functionName.startsWith('(') ? functionName : '(native/V8 builtin)'
  if (url.startsWith('node:')) return 'node internals'
  const p = url.replace(/^file:\/\//, '')
  const nm = p.lastIndexOf('/node_modules/')
  if (nm >= 0) {
    const rest = p.slice(nm + '/node_modules/'.length).split('/')
    return `npm ${rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`
  }
  return p.startsWith(root) ? path.relative(root, p) : p
}

// Sample timestamps: startTime + running sum of timeDeltas (µs).
const times: number[] = []
let t = profile.startTime
for (const d of profile.timeDeltas) {
  t += d
  times.push(t)
}
const endTime = times.at(-1) ?? profile.endTime
const from = last > 0 ? endTime - last * 1e6 : profile.startTime + skip * 1e6

const selfUs = new Map<number, number>()
let totalUs = 0
for (let i = 0; i < profile.samples.length; i++) {
  if (times[i] < from) continue
  // A sample's time is the gap to the next sample (the last one gets none).
  const dt = i + 1 < times.length ? times[i + 1] - times[i] : 0
  selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + dt)
  totalUs += dt
}

interface Compiled {
  lines: string[]
  map: SourceMap
}
interface Esbuild {
  transformSync: (code: string, options: Record<string, unknown>) => { code: string; map: string }
}
let esbuild: Esbuild | null | undefined
const compiled = new Map<string, Compiled | null>()

/** The file compiled with tsx's esbuild options (ESM, minified whitespace, kept names, a source map). */
function compile(file: string): Compiled | null {
  if (compiled.has(file)) return compiled.get(file) ?? null
  let result: Compiled | null = null
  try {
    esbuild ??= createRequire(path.join(root, 'package.json'))('esbuild') as Esbuild
    const tsconfig = path.join(root, 'tsconfig.json')
    const out = esbuild.transformSync(readFileSync(file, 'utf8'), {
      loader: 'ts',
      format: 'esm',
      target: `node${process.versions.node}`,
      sourcefile: file,
      sourcemap: 'external',
      minifyWhitespace: true,
      keepNames: true,
      ...(existsSync(tsconfig) ? { tsconfigRaw: JSON.parse(readFileSync(tsconfig, 'utf8')) } : {}),
    })
    result = { lines: out.code.split('\n'), map: new SourceMap(JSON.parse(out.map)) }
  } catch {
    esbuild ??= null
  }
  compiled.set(file, result)
  return result
}

/**
 * The 1-based line of a frame in its source: for the repo's .ts files, mapped from tsx's output (V8 places a
 * function at its parameter list, for some methods a little earlier: the name nearby is preferred).
 */
function sourceLine(frame: CallFrame): string {
  const file = frame.url.replace(/^file:\/\//, '')
  const generated = String(frame.lineNumber + 1)
  if (!/\.[cm]?ts$/.test(file) || file.includes('/node_modules/') || !file.startsWith(root)) return generated
  const c = compile(file)
  if (!c) return `~${generated}`
  const text = c.lines[frame.lineNumber] ?? ''
  let column = frame.columnNumber
  let found = false
  const name = frame.functionName.split('.').at(-1) ?? ''
  if (name && /^[#\w$]+$/.test(name)) {
    const before = text.lastIndexOf(name, column)
    const after = text.indexOf(name, column)
    if (before >= 0 && column - before <= name.length + 1) [column, found] = [before, true]
    else if (after >= 0 && after - column <= 60) [column, found] = [after, true]
  }
  const entry = c.map.findEntry(frame.lineNumber, column) as { originalLine?: number }
  if (entry.originalLine === undefined) return `~${generated}`
  return `${found || !name ? '' : '~'}${entry.originalLine + 1}`
}

/** `name  source:line` of a profile node. */
const labels = new Map<number, string>()
function labelOf(id: number): string {
  let label = labels.get(id)
  if (label === undefined) {
    const frame = byId.get(id)!.callFrame
    const source = sourceOf(frame)
    label = `${frame.functionName || '(anonymous)'}  ${frame.url ? `${source}:${sourceLine(frame)}` : source}`
    labels.set(id, label)
  }
  return label
}
const parentOf = new Map<number, number>()
for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id)

const byFunction = new Map<string, { us: number; source: string }>()
const bySource = new Map<string, number>()
for (const [id, us] of selfUs) {
  const frame = byId.get(id)?.callFrame
  if (!frame) continue
  const source = sourceOf(frame)
  const key = labelOf(id)
  const entry = byFunction.get(key) ?? { us: 0, source }
  entry.us += us
  byFunction.set(key, entry)
  bySource.set(source, (bySource.get(source) ?? 0) + us)
}

const ms = (us: number) => (us / 1000).toFixed(0).padStart(7)
const pct = (us: number) => `${((100 * us) / totalUs).toFixed(1)}%`.padStart(7)
const lines = [
  `${path.basename(file)}: ${(totalUs / 1e6).toFixed(2)} s of samples${skip ? ` after the first ${skip} s` : ''}${last ? ` in the last ${last} s` : ''}`,
  '',
  `${'self ms'.padStart(7)}${'self'.padStart(7)}  function  source:line`,
]
for (const [key, v] of [...byFunction].sort((a, b) => b[1].us - a[1].us).slice(0, top))
  lines.push(`${ms(v.us)}${pct(v.us)}  ${key}`)
lines.push('', `${'self ms'.padStart(7)}${'self'.padStart(7)}  source`)
for (const [source, us] of [...bySource].sort((a, b) => b[1] - a[1]).slice(0, top))
  lines.push(`${ms(us)}${pct(us)}  ${source}`)

if (inclusive) {
  // A function counts once per sample, however often it recurs on the stack.
  const total = new Map<string, number>()
  for (const [id, us] of selfUs) {
    const seen = new Set<string>()
    for (let n: number | undefined = id; n !== undefined; n = parentOf.get(n)) {
      const label = labelOf(n)
      if (seen.has(label)) continue
      seen.add(label)
      total.set(label, (total.get(label) ?? 0) + us)
    }
  }
  lines.push(
    '',
    `${'total ms'.padStart(8)}${'total'.padStart(7)}  function  source:line (own time + callees)`,
  )
  for (const [label, us] of [...total].sort((a, b) => b[1] - a[1]).slice(0, top))
    lines.push(`${ms(us).padStart(8)}${pct(us)}  ${label}`)
}

if (callersOf) {
  const chains = new Map<string, number>()
  let sum = 0
  for (const [id, us] of selfUs) {
    if (byId.get(id)?.callFrame.functionName !== callersOf) continue
    sum += us
    const chain: string[] = []
    for (let n = parentOf.get(id); n !== undefined && chain.length < 12; n = parentOf.get(n))
      chain.push(labelOf(n))
    const key = chain.join(`\n${' '.repeat(18)}< `)
    chains.set(key, (chains.get(key) ?? 0) + us)
  }
  lines.push('', `callers of ${callersOf} (${ms(sum).trim()} ms self), up to 12 deep:`)
  for (const [key, us] of [...chains].sort((a, b) => b[1] - a[1]).slice(0, 6))
    lines.push(`${ms(us)}${pct(us)}  < ${key}`)
}
process.stdout.write(`${lines.join('\n')}\n`)
