/** Requests waiting for their OK/ERROR reply, by stream id, each with its own timeout. */
import type { Message } from './messages.ts'

interface Pending {
  resolve(msg: Message): void
  reject(err: Error): void
  timer: NodeJS.Timeout
  /** Runs synchronously on OK, before any later frame is handled (opens streams without a race). */
  onOk?: (msg: Message) => void
}

export class PendingRequests {
  readonly #pending = new Map<number, Pending>()

  /** True while a request with this id waits for its reply. */
  has(id: number): boolean {
    return this.#pending.has(id)
  }

  /**
   * Waits for the reply to request `id`: resolves with the OK, rejects with `onTimeout()` after `timeoutMs`.
   * `send` sends the request; if it throws, the wait ends with that error.
   */
  wait(
    id: number,
    timeoutMs: number,
    onTimeout: () => Error,
    send: () => void,
    onOk?: (msg: Message) => void,
  ): Promise<Message> {
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(onTimeout())
      }, timeoutMs)
      this.#pending.set(id, { resolve, reject, timer, onOk })
      try {
        send()
      } catch (err) {
        clearTimeout(timer)
        this.#pending.delete(id)
        reject(err)
      }
    })
  }

  /** Settles the request `msg` answers: OK resolves (after its onOk), anything else rejects with `toError`. */
  settle(msg: Message, ok: boolean, toError: () => Error): boolean {
    const pending = this.#pending.get(msg.streamId)
    if (!pending) return false
    this.#pending.delete(msg.streamId)
    clearTimeout(pending.timer)
    if (ok) {
      pending.onOk?.(msg)
      pending.resolve(msg)
    } else pending.reject(toError())
    return true
  }

  /** Rejects every waiting request (the link closed). */
  rejectAll(err: Error): void {
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer)
      p.reject(err)
    }
    this.#pending.clear()
  }
}
