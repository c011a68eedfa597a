/**
 * Per-device traffic: last seen, bytes and messages each way, callbacks ignored, and daily counters for the
 * last 30 days, for every device type. Counted in memory (a callback must not cost a disk write of its own)
 * and flushed to LevelDB every few seconds and at close.
 */
import type { KeyValueTable } from '../store/level-store.ts'

/** One day of traffic. */
export interface DailyTraffic {
  /** UTC date, `YYYY-MM-DD`. */
  day: string
  messages: number
  rx_bytes: number
  tx_bytes: number
}

/** A device's stored counters. */
export interface TrafficRecord {
  user: string
  device: string
  last_seen_ts?: number
  rx_bytes: number
  tx_bytes: number
  messages: number
  /** Callbacks answered but not processed (a body that is not JSON). */
  ignored: number
  days: Record<string, Omit<DailyTraffic, 'day'>>
}

/** Days kept (and reported). */
export const TRAFFIC_DAYS = 30
const DAY_MS = 24 * 3600 * 1000

const key = (user: string, device: string) => `${user}/${device}`
const dayOf = (ts: number) => new Date(ts).toISOString().slice(0, 10)

export class DeviceTraffic {
  readonly #table: KeyValueTable<TrafficRecord>
  readonly #records = new Map<string, TrafficRecord>()
  readonly #dirty = new Set<string>()
  #timer?: NodeJS.Timeout
  #flushing: Promise<void> = Promise.resolve()

  private constructor(table: KeyValueTable<TrafficRecord>) {
    this.#table = table
  }

  /** Loads the stored counters; flushes every `flushMs`. */
  static async open(table: KeyValueTable<TrafficRecord>, flushMs = 5000): Promise<DeviceTraffic> {
    const traffic = new DeviceTraffic(table)
    for (const r of await table.values()) traffic.#records.set(key(r.user, r.device), r)
    traffic.#timer = setInterval(() => void traffic.flush(), flushMs)
    traffic.#timer.unref()
    return traffic
  }

  /** Counts traffic of a device now: `messages` exchanges, bytes received from and sent to it. */
  record(
    user: string,
    device: string,
    t: { messages?: number; rx: number; tx: number; ignored?: boolean },
  ): void {
    const now = Date.now()
    const r = this.#record(user, device)
    const messages = t.messages ?? 1
    r.last_seen_ts = now
    r.rx_bytes += t.rx
    r.tx_bytes += t.tx
    r.messages += messages
    if (t.ignored) r.ignored++
    const day = dayOf(now)
    let d = r.days[day]
    if (!d) {
      d = { messages: 0, rx_bytes: 0, tx_bytes: 0 }
      r.days[day] = d
    }
    d.messages += messages
    d.rx_bytes += t.rx
    d.tx_bytes += t.tx
    this.#dirty.add(key(user, device))
  }

  /** The counters of a device (zeros when it never sent anything). */
  get(user: string, device: string): TrafficRecord {
    return this.#records.get(key(user, device)) ?? emptyRecord(user, device)
  }

  /** The last `TRAFFIC_DAYS` days, oldest first, days without traffic included as zeros. */
  daily(user: string, device: string, now = Date.now()): DailyTraffic[] {
    const r = this.get(user, device)
    const days: DailyTraffic[] = []
    for (let i = TRAFFIC_DAYS - 1; i >= 0; i--) {
      const day = dayOf(now - i * DAY_MS)
      days.push({ day, ...(r.days[day] ?? { messages: 0, rx_bytes: 0, tx_bytes: 0 }) })
    }
    return days
  }

  /** Drops a deleted device's counters. */
  async forget(user: string, device: string): Promise<void> {
    this.#records.delete(key(user, device))
    this.#dirty.delete(key(user, device))
    await this.#table.del(key(user, device))
  }

  /** Writes changed counters (and prunes days older than the window). */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      const oldest = dayOf(Date.now() - TRAFFIC_DAYS * DAY_MS)
      const keys = [...this.#dirty]
      this.#dirty.clear()
      for (const k of keys) {
        const r = this.#records.get(k)
        if (!r) continue
        for (const day of Object.keys(r.days)) if (day < oldest) delete r.days[day]
        await this.#table.put(k, r).catch(() => this.#dirty.add(k))
      }
    })
    return this.#flushing
  }

  /** Stops the timer and flushes. */
  async close(): Promise<void> {
    clearInterval(this.#timer)
    await this.flush()
  }

  #record(user: string, device: string): TrafficRecord {
    const k = key(user, device)
    let r = this.#records.get(k)
    if (!r) {
      r = emptyRecord(user, device)
      this.#records.set(k, r)
    }
    return r
  }
}

function emptyRecord(user: string, device: string): TrafficRecord {
  return { user, device, rx_bytes: 0, tx_bytes: 0, messages: 0, ignored: 0, days: {} }
}
