/**
 * Debug events of converters and integrations: the last N calls (input, output, error, metadata, duration) of
 * the ones with `debug: true`, kept in memory only. Each event holds copies of payloads, which is why debug is
 * off by default: it costs memory (N × payload size per converter) and a copy per call.
 */
import { type Static, Type } from 'typebox'

export const DebugEvent = Type.Object({
  ts: Type.Integer({ description: 'ms since epoch' }),
  kind: Type.String({ description: 'uplink, downlink, test, or a transport event' }),
  in: Type.Optional(Type.Unknown({ description: 'input (bytes as base64 strings)' })),
  out: Type.Optional(Type.Unknown()),
  metadata: Type.Optional(Type.Unknown()),
  error: Type.Optional(Type.String()),
  duration_ms: Type.Optional(Type.Number()),
})
export type DebugEvent = Static<typeof DebugEvent>

/** Events beyond this length are cut so a single huge payload cannot hold megabytes per slot. */
const MAX_TEXT = 16_384

/** A JSON-safe, size-capped copy: bytes become base64, long strings are cut. */
export function debugCopy(value: unknown): unknown {
  if (value instanceof Uint8Array)
    return cut(Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64'))
  if (value === undefined) return undefined
  try {
    const text = JSON.stringify(value, (_k, v) =>
      v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : v,
    )
    if (text === undefined) return undefined
    return text.length > MAX_TEXT ? cut(text) : JSON.parse(text)
  } catch {
    return String(value)
  }
}

const cut = (text: string) =>
  text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}… (${text.length} chars)` : text

/** Ring buffers of debug events, one per owner key (`converter:user/id`, `integration:user/id`). */
export class DebugEvents {
  readonly #rings = new Map<string, DebugEvent[]>()

  constructor(readonly capacity = 100) {}

  /** Records an event (values are copied and capped). */
  add(key: string, event: DebugEvent): void {
    let ring = this.#rings.get(key)
    if (!ring) {
      ring = []
      this.#rings.set(key, ring)
    }
    ring.push({
      ...event,
      in: debugCopy(event.in),
      out: debugCopy(event.out),
      metadata: debugCopy(event.metadata),
    })
    if (ring.length > this.capacity) ring.splice(0, ring.length - this.capacity)
  }

  /** The kept events, oldest first. */
  list(key: string): DebugEvent[] {
    return [...(this.#rings.get(key) ?? [])]
  }

  /** Forgets a key's events (debug turned off, resource deleted). */
  clear(key: string): void {
    this.#rings.delete(key)
  }
}
