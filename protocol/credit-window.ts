/**
 * Per-stream credit accounting (DESIGN.md, "Flow control"). Pure bookkeeping, no I/O, so it is tested alone.
 * The receiver starts by granting `window` bytes; it grants more with STREAM_CREDIT once its consumer has
 * taken bytes out of the stream, so a slow consumer stops the producer instead of growing buffers.
 */
export class ReceiveWindow {
  #allowance: number
  #received = 0
  #granted = 0
  #window: number
  #threshold: number
  readonly #maxWindow: number
  /** Every allowance the peer may know of and has not reached yet: where it stops if it runs out of credit. */
  readonly #checkpoints: number[] = []
  /** The last arrival used up the credit of a checkpoint: the peer was left waiting for our next grant. */
  #peerStalled = false

  /**
   * @param windowBytes initial credit granted to the peer (its START_STREAM/OK `window`)
   * @param maxWindowBytes how far `grow` may take the window (default: it never grows)
   */
  constructor(
    readonly windowBytes: number,
    maxWindowBytes = windowBytes,
  ) {
    this.#allowance = windowBytes
    this.#window = windowBytes
    this.#maxWindow = Math.max(windowBytes, maxWindowBytes)
    this.#checkpoints.push(windowBytes)
    // Batch grants: one STREAM_CREDIT per quarter window keeps control traffic small.
    this.#threshold = Math.max(1, Math.floor(windowBytes / 4))
  }

  /** The window now in force: `windowBytes`, or more after `grow`. */
  get currentWindow(): number {
    return this.#window
  }

  /**
   * Records `bytes` arriving; false when the peer sent more than it was granted. `unit`: the peer sends in
   * indivisible units of about this size (datagrams), so credit left below it is as good as spent.
   */
  receive(bytes: number, unit = 1): boolean {
    this.#received += bytes
    const checkpoints = this.#checkpoints
    while (checkpoints.length > 0 && checkpoints[0]! < this.#received) checkpoints.shift()
    const next = checkpoints[0]
    this.#peerStalled = next !== undefined && next - this.#received < Math.max(1, unit)
    if (this.#peerStalled) checkpoints.shift()
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
    this.#checkpoints.push(this.#allowance)
    return pending
  }

  /**
   * Window auto-tuning, called after data arrived. Data that ends exactly where the peer's credit ended at one
   * of our grants means the peer spent everything and then waited for the next grant, already on its way: the
   * round trip costs it time. If our consumer keeps up (at most half a window buffered), the window, not the
   * consumer, limits the stream (a bandwidth-delay product larger than the window), so it doubles, up to the
   * maximum. Returns the extra credit to grant at once (0 for none). A consumer that falls behind keeps bytes
   * buffered and stops the growth; memory per stream stays bounded by the maximum window.
   */
  grow(bufferedBytes: number): number {
    if (!this.#peerStalled || this.#window >= this.#maxWindow) return 0
    if (bufferedBytes > this.#window / 2) return 0
    const grown = Math.min(this.#maxWindow, this.#window * 2)
    const extra = grown - this.#window
    this.#window = grown
    this.#threshold = Math.max(1, Math.floor(grown / 4))
    this.#allowance += extra
    this.#checkpoints.push(this.#allowance)
    return extra
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
