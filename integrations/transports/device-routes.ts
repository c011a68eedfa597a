/**
 * Where each device was last heard (a TCP connection, a UDP address): the devices an uplink's converter named
 * are routed to the place that uplink came from, so downlinks find them.
 */

/** Default cap of remembered devices; the least recently heard one is forgotten first. */
export const DEFAULT_MAX_DEVICES = 100_000

interface Entry<R> {
  route: R
  /** Order in which the uplink started: a slow older uplink must not override a newer one. */
  seq: number
}

export class DeviceRoutes<R> {
  readonly #byDevice = new Map<string, Entry<R>>()
  readonly #byRoute = new Map<R, Set<string>>()
  readonly #maxDevices: number
  #seq = 0

  constructor(maxDevices = DEFAULT_MAX_DEVICES) {
    this.#maxDevices = maxDevices
  }

  get size(): number {
    return this.#byDevice.size
  }

  /** Call when an uplink starts; pass the number to learn() when it completes. */
  begin(): number {
    return ++this.#seq
  }

  /** Routes `devices` to `route` unless a later uplink already routed them elsewhere. */
  learn(seq: number, devices: readonly string[], route: R): void {
    for (const device of devices) {
      const known = this.#byDevice.get(device)
      if (known && known.seq > seq) continue
      if (known) this.#unlink(device, known.route)
      // Re-insert so Map order is least recently heard first (eviction order).
      this.#byDevice.delete(device)
      this.#byDevice.set(device, { route, seq })
      const set = this.#byRoute.get(route) ?? new Set<string>()
      this.#byRoute.set(route, set.add(device))
    }
    for (const [device, entry] of this.#byDevice) {
      if (this.#byDevice.size <= this.#maxDevices) break
      this.#byDevice.delete(device)
      this.#unlink(device, entry.route)
    }
  }

  /** The device's last route, if any. */
  get(device: string): R | undefined {
    return this.#byDevice.get(device)?.route
  }

  /** Forgets every device routed to `route` (its connection closed). */
  forget(route: R): void {
    const devices = this.#byRoute.get(route)
    if (!devices) return
    this.#byRoute.delete(route)
    for (const device of devices) this.#byDevice.delete(device)
  }

  #unlink(device: string, route: R): void {
    const set = this.#byRoute.get(route)
    set?.delete(device)
    if (set?.size === 0) this.#byRoute.delete(route)
  }
}
