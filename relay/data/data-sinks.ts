/**
 * Where agents' data records go, by source: a registry of sinks keyed by source prefix. The device sink
 * (device-sink.ts) takes every source nobody registered (`mqtt`, `bridge`, `http`, …); other capabilities
 * register their own (`integration` for `integration:<id>`).
 *
 * A sink must be idempotent per (agent, epoch, seq): the relay records what it stored only after every sink of a
 * batch has finished, so a relay crash in between makes the agent deliver the batch again. Keying what it stores
 * by `agent.device`, `agent.epoch` and `record.seq` (as the device sink does) makes that redelivery harmless.
 */
import type { DataRecord } from './records.ts'

/** The agent a batch came from. */
export interface DataAgent {
  /** The agent's owner: records are filed under this account. */
  user: string
  /** The agent's device id. */
  device: string
  /** The agent buffer's incarnation; (device, epoch, seq) identifies a record for good. */
  epoch: string
}

/** What a sink reports: records it refused for good (acknowledged to the agent, not stored). */
export interface DataSinkResult {
  rejected?: number
}

/**
 * Stores records of one batch, in seq order. Resolve once they are durable; reject (for any transient reason)
 * to have the whole batch delivered again later.
 */
// biome-ignore lint/suspicious/noConfusingVoidType: a sink with nothing to report is a plain `async` function.
export type DataSink = (agent: DataAgent, records: DataRecord[]) => Promise<void | DataSinkResult>

/** Running totals of the data uplink (for /metrics and tests). */
export interface DataCounters {
  /** Batches answered OK. */
  batches: number
  /** Records handed to sinks and stored. */
  stored: number
  /** Records at or below the stored seq of their agent: redeliveries, ignored. */
  duplicates: number
  /** Records acknowledged but not stored: invalid, or refused by a sink (disabled device or bucket). */
  rejected: number
  /** Batches answered ERROR. */
  refused: number
}

export class DataSinks {
  readonly counters: DataCounters = { batches: 0, stored: 0, duplicates: 0, rejected: 0, refused: 0 }
  readonly #sinks = new Map<string, DataSink>()
  readonly #fallback: DataSink

  /** `fallback` takes every source no registered prefix matches. */
  constructor(fallback: DataSink) {
    this.#fallback = fallback
  }

  /**
   * Sends records whose source is `sourcePrefix`, or starts with `sourcePrefix:` (or with `sourcePrefix` when it
   * ends in `:`), to `sink`; the longest matching prefix wins. Returns a function that unregisters it.
   */
  register(sourcePrefix: string, sink: DataSink): () => void {
    if (sourcePrefix === '') throw new Error('a data sink needs a source prefix')
    if (this.#sinks.has(sourcePrefix)) throw new Error(`source ${sourcePrefix} already has a data sink`)
    this.#sinks.set(sourcePrefix, sink)
    return () => {
      if (this.#sinks.get(sourcePrefix) === sink) this.#sinks.delete(sourcePrefix)
    }
  }

  /** The sink records of `source` go to. */
  sinkFor(source: string): DataSink {
    let best: string | undefined
    for (const prefix of this.#sinks.keys()) {
      const matches = source === prefix || source.startsWith(prefix.endsWith(':') ? prefix : `${prefix}:`)
      if (matches && (best === undefined || prefix.length > best.length)) best = prefix
    }
    return best === undefined ? this.#fallback : (this.#sinks.get(best) as DataSink)
  }

  /**
   * Hands each sink its records (in seq order) and waits for all of them; resolves with how many they refused
   * for good, rejects with the first failure once every sink has finished (none keeps running behind a reply).
   */
  async dispatch(agent: DataAgent, records: DataRecord[]): Promise<{ rejected: number }> {
    const bySink = new Map<DataSink, DataRecord[]>()
    for (const record of records) {
      const sink = this.sinkFor(record.source)
      const list = bySink.get(sink)
      if (list) list.push(record)
      else bySink.set(sink, [record])
    }
    const results = await Promise.allSettled([...bySink].map(([sink, list]) => sink(agent, list)))
    let rejected = 0
    for (const result of results) {
      if (result.status === 'rejected') throw result.reason
      rejected += result.value?.rejected ?? 0
    }
    return { rejected }
  }
}
