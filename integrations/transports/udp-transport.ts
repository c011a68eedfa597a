/**
 * The UDP integration: every datagram to `settings.port` is one uplink; a device named by the converter is
 * remembered at the datagram's source address, and its downlinks are sent there as one datagram each.
 */
import dgram from 'node:dgram'
import net from 'node:net'
import { UDP_SOCKET_BUFFER_BYTES } from '../../protocol/udp-buffers.ts'
import type { UdpSettings } from '../schemas.ts'
import {
  downlinkBytes,
  type EncodedDownlink,
  type Transport,
  type TransportContext,
  type TransportStatus,
  type UplinkOutcome,
} from '../transport.ts'
import { DEFAULT_MAX_DEVICES, DeviceRoutes } from './device-routes.ts'

/** Uplinks in flight above which datagrams are dropped: UDP has no backpressure, memory must stay bounded. */
export const DEFAULT_MAX_PENDING_UPLINKS = 1000
/** Largest UDP payload over IPv4 (65535 − 8 UDP − 20 IP header bytes). */
const MAX_DATAGRAM_BYTES = 65_507

export interface UdpTransportOptions {
  maxPendingUplinks?: number
  /** Devices whose address is remembered; the least recently heard is forgotten first. */
  maxDevices?: number
}

export interface UdpTransportStatus extends TransportStatus {
  /** Datagrams dropped because maxPendingUplinks uplinks were in flight. */
  droppedDatagrams: number
}

interface Address {
  address: string
  port: number
}

export class UdpTransport implements Transport {
  readonly #settings: UdpSettings
  readonly #ctx: TransportContext
  readonly #socket: dgram.Socket
  readonly #routes: DeviceRoutes<Address>
  readonly #maxPendingUplinks: number
  #state: TransportStatus['state'] = 'starting'
  #error: string | undefined
  #pending = 0
  #received = 0
  #sent = 0
  #dropped = 0

  constructor(settings: UdpSettings, ctx: TransportContext, opts: UdpTransportOptions = {}) {
    this.#settings = settings
    this.#ctx = ctx
    this.#maxPendingUplinks = opts.maxPendingUplinks ?? DEFAULT_MAX_PENDING_UPLINKS
    this.#routes = new DeviceRoutes(opts.maxDevices ?? DEFAULT_MAX_DEVICES)
    this.#socket = dgram.createSocket({
      type: net.isIPv6(settings.address ?? '') ? 'udp6' : 'udp4',
      // Bursts arrive faster than one event-loop turn hands them on; the kernel caps this at rmem_max.
      recvBufferSize: UDP_SOCKET_BUFFER_BYTES,
    })
    this.#socket.on('message', (msg, rinfo) => this.#onDatagram(msg, rinfo))
  }

  /** Binds settings.port (0: any free port, see status().port) at settings.address (default 0.0.0.0). */
  start(): Promise<void> {
    const { port, address = '0.0.0.0' } = this.#settings
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => {
        this.#state = 'error'
        this.#error = err.message
        reject(err)
      }
      this.#socket.once('error', onError)
      this.#socket.bind({ port, address, exclusive: true }, () => {
        this.#socket.off('error', onError)
        this.#socket.on('error', (err) => this.#ctx.log.error({ err }, 'udp integration: socket error'))
        this.#state = 'running'
        resolve()
      })
    })
  }

  /** Closes the socket. */
  async stop(): Promise<void> {
    this.#state = 'stopped'
    await new Promise<void>((resolve) => {
      try {
        this.#socket.close(() => resolve())
      } catch {
        resolve() // never bound, or closed already
      }
    })
  }

  /** Sends the downlink as one datagram to the device's last source address. */
  deliver(device: string, downlink: EncodedDownlink): Promise<void> {
    const to = this.#routes.get(device)
    if (!to) return Promise.reject(new Error(`device ${device} has no known udp address`))
    if (this.#state !== 'running') return Promise.reject(new Error('udp integration is not running'))
    let bytes: Buffer
    try {
      bytes = downlinkBytes(downlink)
    } catch (err) {
      return Promise.reject(err)
    }
    if (bytes.length > MAX_DATAGRAM_BYTES) {
      return Promise.reject(new Error(`downlink of ${bytes.length} bytes exceeds one datagram`))
    }
    return new Promise((resolve, reject) => {
      this.#socket.send(bytes, to.port, to.address, (err) => {
        if (err) return reject(err)
        this.#sent++
        resolve()
      })
    })
  }

  /** State, bound port and counters. */
  status(): UdpTransportStatus {
    let port: number | undefined
    try {
      port = this.#socket.address().port
    } catch {
      port = undefined // not bound
    }
    return {
      state: this.#state,
      ...(this.#error !== undefined && { error: this.#error }),
      ...(port !== undefined && { port }),
      received: this.#received,
      sent: this.#sent,
      droppedDatagrams: this.#dropped,
    }
  }

  #onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.#received++
    if (this.#pending >= this.#maxPendingUplinks) {
      // One line per thousand drops, not one per datagram.
      if (this.#dropped++ % 1000 === 0) {
        this.#ctx.log.warn(
          { dropped: this.#dropped },
          'udp integration: too many uplinks in flight; dropping',
        )
      }
      return
    }
    this.#pending++
    const from: Address = { address: rinfo.address, port: rinfo.port }
    const metadata = { remoteAddress: rinfo.address, remotePort: String(rinfo.port) }
    const seq = this.#routes.begin()
    // A synchronous throw becomes a rejection: an uplink must never take the socket down.
    new Promise<UplinkOutcome>((resolve) => resolve(this.#ctx.uplink({ payload: msg, metadata })))
      .then(
        (outcome) => this.#routes.learn(seq, outcome.devices, from),
        (err: Error) =>
          this.#ctx.log.warn({ ...metadata, err: err.message }, 'udp integration: uplink failed'),
      )
      .finally(() => {
        this.#pending--
      })
  }
}
