/**
 * Per-stream credit accounting (DESIGN.md, "Flow control"). Pure bookkeeping, no I/O, so it is tested alone.
 * The receiver starts by granting `window` bytes; it grants more with STREAM_CREDIT once its consumer has
 * taken bytes out of the stream, so a slow consumer stops the producer instead of growing buffers.
 */
export class ReceiveWindow {
  #allowance: number
  #received = 0
  #granted = 0
  readonly #threshold: number

  /** @param windowBytes initial credit granted to the peer (its START_STREAM/OK `window`) */
  constructor(readonly windowBytes: number) {
    this.#allowance = windowBytes
    // Batch grants: one STREAM_CREDIT per quarter window keeps control traffic small.
    this.#threshold = Math.max(1, Math.floor(windowBytes / 4))
  }

  /** Records `bytes` arriving; false when the peer sent more than it was granted. */
  receive(bytes: number): boolean {
    this.#received += bytes
    return this.#received <= this.#allowance
  }

  /**
   * Given how many received bytes are still unconsumed, returns the credit to grant now (0 for none).
   * Credit is granted only for bytes the consumer has taken, never for bytes still buffered.
   */
  grantFor(bufferedBytes: number): number {
    const consumed = this.#received - bufferedBytes
    const pending = consumed - this.#granted
    if (pending < this.#threshold) return 0
    this.#granted += pending
    this.#allowance += pending
    return pending
  }
}

/** Sender-side credit: how many bytes may go out before the next grant. */
export class SendCredit {
  #available: number
  constructor(initialBytes: number) {
    this.#available = initialBytes
  }
  get available(): number {
    return this.#available
  }
  /** Takes up to `wanted` bytes of credit and returns how many were taken. */
  take(wanted: number): number {
    const n = Math.min(wanted, this.#available)
    this.#available -= n
    return n
  }
  /** Adds a STREAM_CREDIT grant. */
  grant(bytes: number): void {
    this.#available += bytes
  }
}
