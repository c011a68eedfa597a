/**
 * IoTMP's dead-link rule: a link with no inbound message for keep-alive × 1.15 is dead. This catches half-open
 * TCP links (a NAT that forgot us, a cable pulled) that never deliver a close.
 */
import { KEEP_ALIVE_GRACE } from './messages.ts'

export class DeadLinkTimer {
  #lastInbound = Date.now()
  #timer?: NodeJS.Timeout
  #deadlineMs = 0

  /** `onDead` runs once, with the reason, when the deadline passes without an inbound message. */
  constructor(readonly onDead: (reason: string) => void) {}

  /** Starts watching with the negotiated keep-alive period. */
  start(keepAliveSec: number): void {
    this.#deadlineMs = keepAliveSec * 1000 * KEEP_ALIVE_GRACE
    this.#lastInbound = Date.now()
    this.#arm(keepAliveSec)
  }

  /** Records an inbound message. Cheap: a timestamp, not a timer reset per frame. */
  touch(): void {
    this.#lastInbound = Date.now()
  }

  stop(): void {
    clearTimeout(this.#timer)
  }

  #arm(keepAliveSec: number): void {
    const remaining = this.#lastInbound + this.#deadlineMs - Date.now()
    this.#timer = setTimeout(
      () => {
        if (Date.now() - this.#lastInbound < this.#deadlineMs) return this.#arm(keepAliveSec)
        this.onDead(`no message for ${(this.#deadlineMs / 1000).toFixed(2)} s (keep-alive ${keepAliveSec} s)`)
      },
      Math.max(remaining, 10),
    )
  }
}
