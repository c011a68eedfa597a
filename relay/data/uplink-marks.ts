/**
 * The highest seq the relay has stored per agent and buffer epoch: records at or below it are redeliveries and
 * are ignored. Behind an interface so a database backend can replace LevelDB. A mark is written (fsynced) after
 * the batch's sinks finished and before the OK, so an acknowledged record is never stored twice, and a crash
 * between the sinks and the mark only leads to a redelivery that idempotent sinks overwrite.
 */
import type { Level } from 'level'

export interface UplinkMarks {
  /** The highest stored seq of the agent's epoch; 0 when none. */
  get(user: string, device: string, epoch: string): Promise<number>
  /** Records that everything up to `seq` is stored. */
  set(user: string, device: string, epoch: string, seq: number): Promise<void>
}

/** UplinkMarks on the `data-marks` sublevel, keys `user/device/epoch`, cached in memory (the relay is the only writer). */
export function levelUplinkMarks(db: Level<string, string>): UplinkMarks {
  const marks = db.sublevel<string, string>('data-marks', { keyEncoding: 'utf8', valueEncoding: 'utf8' })
  const cache = new Map<string, number>()
  const keyOf = (user: string, device: string, epoch: string) => `${user}/${device}/${epoch}`
  return {
    async get(user, device, epoch) {
      const key = keyOf(user, device, epoch)
      let seq = cache.get(key)
      if (seq === undefined) {
        seq = Number((await marks.get(key)) ?? 0)
        cache.set(key, seq)
      }
      return seq
    },
    async set(user, device, epoch, seq) {
      const key = keyOf(user, device, epoch)
      // `sync` is a classic-level option that abstract-level's types do not list.
      await marks.put(key, String(seq), { sync: true } as object)
      cache.set(key, seq)
    },
  }
}
