/**
 * Pending downlinks of HTTP-integration devices: a device that only talks HTTP can only be answered, so its
 * downlinks wait here until its next uplink. Bounded per device; the oldest is dropped (and counted) when full.
 */
import type { DownlinkRequest } from '../../integrations/converter-calls.ts'

export class DownlinkQueue {
  readonly #queues = new Map<string, DownlinkRequest[]>()
  /** Downlinks dropped because a device's queue was full. */
  dropped = 0

  constructor(readonly capacity: number) {}

  /** Queues a downlink for `device`; false when it pushed out the oldest one. */
  push(device: string, request: DownlinkRequest): boolean {
    let queue = this.#queues.get(device)
    if (!queue) {
      queue = []
      this.#queues.set(device, queue)
    }
    queue.push(request)
    if (queue.length <= this.capacity) return true
    queue.shift()
    this.dropped++
    return false
  }

  /** Takes every pending downlink of `device`, oldest first. */
  take(device: string): DownlinkRequest[] {
    const queue = this.#queues.get(device) ?? []
    this.#queues.delete(device)
    return queue
  }

  /** Puts downlinks back at the head of `device`'s queue (they were taken but not sent). */
  unshift(device: string, requests: DownlinkRequest[]): void {
    if (requests.length === 0) return
    this.#queues.set(device, [...requests, ...(this.#queues.get(device) ?? [])].slice(-this.capacity))
  }

  /** Pending downlinks of `device`. */
  size(device?: string): number {
    if (device !== undefined) return this.#queues.get(device)?.length ?? 0
    let n = 0
    for (const q of this.#queues.values()) n += q.length
    return n
  }
}

/**
 * The one downlink an HTTP answer carries, from a device's pending ones: the oldest RPC call when there is one
 * (commands are sent one per answer, in order), else every attribute update merged (later keys win). `rest` goes
 * back to the queue for the next uplink.
 */
export function nextDownlink(pending: DownlinkRequest[]): {
  send?: DownlinkRequest
  rest: DownlinkRequest[]
} {
  const rpc = pending.findIndex((p) => p.msgType === 'RPC_CALL')
  if (rpc >= 0) return { send: pending[rpc], rest: pending.filter((_, i) => i !== rpc) }
  if (pending.length === 0) return { rest: [] }
  const msg: Record<string, unknown> = {}
  for (const p of pending) {
    if (p.msg !== null && typeof p.msg === 'object' && !Array.isArray(p.msg)) Object.assign(msg, p.msg)
  }
  return { send: { ...(pending.at(-1) as DownlinkRequest), msg }, rest: [] }
}
