/** Record keys of the buffer's LevelDB, and a reader over the oldest stored records for drop-oldest. */
import type { Level } from 'level'

/** Every record key sorts within [RECORDS_START, RECORDS_END). */
export const RECORDS_START = 'r!'
export const RECORDS_END = 'r"'

/** `r!` + the seq as 16 hex digits: keys sort like the numbers. */
export function recordKey(seq: number): string {
  return RECORDS_START + seq.toString(16).padStart(16, '0')
}

/** The seq of a record key. */
export function seqOfKey(key: string): number {
  return Number.parseInt(key.slice(RECORDS_START.length), 16)
}

/** A stored record as drop-oldest sees it. */
export interface FrontRecord {
  seq: number
  size: number
  stored: boolean
}

/** Walks the stored records oldest first, opening its iterator only when asked for one. */
export class FrontReader {
  readonly #db: Level<string, Buffer>
  readonly #fromSeq: number
  #it?: { next(): Promise<[string, Buffer] | undefined>; close(): Promise<void> }
  #done = false

  /** Reads `db` from `fromSeq` on (no stored record is older). */
  constructor(db: Level<string, Buffer>, fromSeq: number) {
    this.#db = db
    this.#fromSeq = fromSeq
  }

  /** The next oldest stored record, or undefined past the last. */
  async next(): Promise<FrontRecord | undefined> {
    if (this.#done) return undefined
    this.#it ??= this.#db.iterator<string, Buffer>({ gte: recordKey(this.#fromSeq), lt: RECORDS_END })
    const entry = await this.#it.next()
    if (!entry) {
      this.#done = true
      return undefined
    }
    return { seq: seqOfKey(entry[0]), size: entry[1].length, stored: true }
  }

  /** Closes the iterator, if one was opened. */
  async close(): Promise<void> {
    await this.#it?.close()
  }
}
