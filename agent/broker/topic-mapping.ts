/**
 * Topic → device mapping (agent config `topics`, data-config.ts TopicMapping): which MQTT topics are uplinked and
 * to which device. Pure: compiled once at start, then `match` per PUBLISH on the broker's hot path.
 *
 * - A mapping's `filter` is an MQTT topic filter; the first mapping whose filter matches a topic wins.
 * - `{1}`, `{2}`… in `device` (and `bucket`) are the filter's wildcard segments in order: what a `+` matched, or
 *   what a `#` matched (its levels joined by `/`, empty when `#` matched the parent level).
 * - The rendered device is sanitised to the relay's device id pattern (relay/data/device-sink.ts): characters
 *   outside `[A-Za-z0-9_-]` become `_`, cut at 64. A topic whose device renders empty is not mapped by that rule.
 */
import type { TopicMapping } from '../data-config.ts'

/** Device ids the relay accepts (relay/devices/schemas.ts DeviceId). */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/

/** The relay's device id for a LAN device name (the same rule as relay/data/device-sink.ts deviceIdOf). */
export function deviceIdOf(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64)
}

/** Where a topic's messages go. */
export interface TopicTarget {
  /** A valid device id (DEVICE_ID_PATTERN). */
  device: string
  /** A valid bucket id, when the mapping names one; absent: the device's own bucket. */
  bucket?: string
  /** Index of the mapping that matched, in the config's `topics`. */
  mapping: number
}

/** A template split into literal text and wildcard references (0-based). */
type Template = Array<string | number>

interface Compiled {
  levels: string[]
  /** The filter starts with a wildcard: it never matches `$` topics [MQTT-4.7.2-1]. */
  leadingWildcard: boolean
  device: Template
  bucket?: Template
}

/** Why `filter` is not a valid MQTT topic filter, or undefined when it is [MQTT-4.7.1-2, MQTT-4.7.1-3]. */
export function filterProblem(filter: string): string | undefined {
  if (filter.length === 0) return 'a filter must not be empty'
  if (filter.includes('\u0000')) return 'a filter must not contain NUL'
  const levels = filter.split('/')
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i] as string
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) {
      return '# must be a whole level, and the last one'
    }
    if (level.includes('+') && level !== '+') return '+ must be a whole level'
  }
  return undefined
}

/** Why `topic` is not a valid topic name to publish to, or undefined [MQTT-4.7.3-1, MQTT-3.3.2-2]. */
export function topicProblem(topic: string): string | undefined {
  if (topic.length === 0) return 'a topic must not be empty'
  if (topic.includes('+') || topic.includes('#')) return 'a topic name must not contain wildcards'
  if (topic.includes('\u0000')) return 'a topic must not contain NUL'
  if (Buffer.byteLength(topic) > 65_535) return 'a topic is at most 65535 bytes'
  return undefined
}

/**
 * The wildcard segments `topic` gives `filter` (split into levels), or undefined when it does not match.
 * Matching is exact per level; `+` matches one level (possibly empty), `#` the rest (possibly nothing).
 */
export function matchLevels(levels: readonly string[], topic: string): string[] | undefined {
  const parts = topic.split('/')
  const captured: string[] = []
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i] as string
    if (level === '#') {
      captured.push(parts.slice(i).join('/'))
      return captured
    }
    const part = parts[i]
    if (part === undefined) return undefined
    if (level === '+') captured.push(part)
    else if (level !== part) return undefined
  }
  return parts.length === levels.length ? captured : undefined
}

/** Splits a `{n}` template; throws a TypeError when it refers past the filter's `wildcards`. */
function compileTemplate(template: string, wildcards: number, what: string): Template {
  const parts: Template = []
  let last = 0
  for (const m of template.matchAll(/\{(\d+)\}/g)) {
    const n = Number(m[1])
    if (n < 1 || n > wildcards) {
      const has = wildcards === 0 ? 'no wildcards' : `wildcards {1} to {${wildcards}}`
      throw new TypeError(`${what} refers to {${n}} but the filter has ${has}`)
    }
    if (m.index > last) parts.push(template.slice(last, m.index))
    parts.push(n - 1)
    last = m.index + m[0].length
  }
  if (last < template.length) parts.push(template.slice(last))
  return parts
}

function render(template: Template, captured: readonly string[]): string {
  let out = ''
  for (const part of template) out += typeof part === 'number' ? (captured[part] ?? '') : part
  return out
}

/** Compiled `topics` mappings; `match` a topic to its device. */
export class TopicMapper {
  readonly #rules: Compiled[]

  private constructor(rules: Compiled[]) {
    this.#rules = rules
  }

  /** Checks and compiles mappings; throws a TypeError naming the first bad one (`topics/<i>/…`). */
  static compile(mappings: readonly TopicMapping[]): TopicMapper {
    const rules = mappings.map((m, i) => {
      const problem = filterProblem(m.filter)
      if (problem) throw new TypeError(`topics/${i}/filter ${JSON.stringify(m.filter)}: ${problem}`)
      const levels = m.filter.split('/')
      const wildcards = levels.filter((l) => l === '+' || l === '#').length
      const rule: Compiled = {
        levels,
        leadingWildcard: levels[0] === '+' || levels[0] === '#',
        device: compileTemplate(m.device, wildcards, `topics/${i}/device`),
      }
      if (m.bucket !== undefined) rule.bucket = compileTemplate(m.bucket, wildcards, `topics/${i}/bucket`)
      return rule
    })
    return new TopicMapper(rules)
  }

  /** Number of mappings. */
  get size(): number {
    return this.#rules.length
  }

  /** The target of `topic`, or undefined when it stays local (no mapping matches). */
  match(topic: string): TopicTarget | undefined {
    for (let i = 0; i < this.#rules.length; i++) {
      const rule = this.#rules[i] as Compiled
      if (rule.leadingWildcard && topic.startsWith('$')) continue
      const captured = matchLevels(rule.levels, topic)
      if (!captured) continue
      const device = deviceIdOf(render(rule.device, captured))
      if (device === '') continue
      if (!rule.bucket) return { device, mapping: i }
      const bucket = deviceIdOf(render(rule.bucket, captured))
      if (bucket === '') continue
      return { device, bucket, mapping: i }
    }
    return undefined
  }
}
