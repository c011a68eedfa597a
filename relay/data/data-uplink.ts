/**
 * The relay's RUN `$data` handler (DESIGN.md, "Data uplink"). Per agent, batches are handled one at a time in
 * arrival order (the order the agent sent them), so records are stored in seq order:
 *
 * 1. batch checks (records.ts): a malformed batch gets ERROR BAD_ENCODING;
 * 2. `after` beyond the stored mark means an earlier batch was not stored: ERROR, the agent resends from its
 *    oldest unacknowledged record, so nothing is ever stored past a gap;
 * 3. records at or below the mark (uplink-marks.ts) are redeliveries: ignored;
 * 4. invalid records are counted as rejected; the rest go to their sinks (data-sinks.ts);
 * 5. once every sink is done, the mark moves to the batch's last seq and the OK `{ack: lastSeq}` goes out.
 *
 * A sink failure answers ERROR (not stored, resend later) without moving the mark.
 */
import type { Logger } from 'pino'
import { dataError } from './data-errors.ts'
import type { DataAgent, DataSinks } from './data-sinks.ts'
import { type DataBatch, type DataRecord, parseBatch, recordProblem, toDataRecord } from './records.ts'
import type { UplinkMarks } from './uplink-marks.ts'

export interface DataUplinkOptions {
  sinks: DataSinks
  marks: UplinkMarks
  log: Logger
}

/** The OK payload of RUN `$data`: every record up to `ack` is stored (or was refused for good). */
export interface DataAck {
  ack: number
}

export class DataUplink {
  readonly #sinks: DataSinks
  readonly #marks: UplinkMarks
  readonly #log: Logger
  /** The tail of each agent's chain of batches, by `user/device`. */
  readonly #chains = new Map<string, Promise<unknown>>()

  constructor(opts: DataUplinkOptions) {
    this.#sinks = opts.sinks
    this.#marks = opts.marks
    this.#log = opts.log
  }

  /** Handles one RUN `$data` of the agent `link`; resolves with the OK payload, rejects with the ERROR. */
  async handle(
    link: { user: string; device: string },
    payload: unknown,
    params: Record<string, unknown> | undefined,
  ): Promise<DataAck> {
    const counters = this.#sinks.counters
    let batch: DataBatch
    try {
      batch = parseBatch(payload, params)
    } catch (err) {
      counters.refused++
      this.#log.info({ user: link.user, device: link.device }, (err as Error).message)
      throw err
    }
    const agent: DataAgent = { user: link.user, device: link.device, epoch: batch.epoch }
    try {
      const ack = await this.#serial(`${link.user}/${link.device}`, () => this.#store(agent, batch))
      counters.batches++
      return ack
    } catch (err) {
      counters.refused++
      throw err
    }
  }

  /** Resolves once every batch being handled is done (relay shutdown, before the store closes). */
  async close(): Promise<void> {
    while (this.#chains.size > 0) await Promise.allSettled([...this.#chains.values()])
  }

  async #store(agent: DataAgent, batch: DataBatch): Promise<DataAck> {
    const { user, device, epoch } = agent
    const stored = await this.#marks.get(user, device, epoch)
    if (batch.after !== undefined && batch.after > stored) {
      throw dataError('TETHER_ERR_DATA_OUT_OF_SEQUENCE', batch.after, stored)
    }
    const fresh: DataRecord[] = []
    let duplicates = 0
    let invalid = 0
    let problem: string | undefined
    for (const record of batch.records) {
      if (record.seq <= stored) {
        duplicates++
        continue
      }
      const why = recordProblem(record)
      if (why === undefined) fresh.push(toDataRecord(record))
      else {
        invalid++
        problem ??= `seq ${record.seq}: ${why}`
      }
    }
    let refused = 0
    if (fresh.length > 0) {
      try {
        refused = (await this.#sinks.dispatch(agent, fresh)).rejected
      } catch (err) {
        this.#log.error({ err, user, device }, 'storing agent data failed')
        throw dataError('TETHER_ERR_DATA_NOT_STORED', (err as Error).message)
      }
    }
    const last = (batch.records[batch.records.length - 1] as { seq: number }).seq
    if (last > stored) {
      try {
        await this.#marks.set(user, device, epoch, last)
      } catch (err) {
        this.#log.error({ err, user, device }, 'recording the stored seq failed')
        throw dataError('TETHER_ERR_DATA_NOT_STORED', (err as Error).message)
      }
    }
    // Counted once the batch is settled: a batch answered ERROR comes again and must not count twice.
    const counters = this.#sinks.counters
    counters.duplicates += duplicates
    counters.stored += fresh.length - refused
    counters.rejected += invalid + refused
    if (problem)
      this.#log.info({ user, device, invalid }, `agent data records rejected (acknowledged): ${problem}`)
    return { ack: last }
  }

  /** Runs `fn` after every earlier call for `key` has settled. */
  #serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#chains.get(key) ?? Promise.resolve()
    const run = previous.catch(() => {}).then(fn)
    const tail = run.catch(() => {})
    this.#chains.set(key, tail)
    void tail.then(() => {
      if (this.#chains.get(key) === tail) this.#chains.delete(key)
    })
    return run
  }
}
