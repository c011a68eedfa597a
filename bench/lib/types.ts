/** Paths under test, measured parts, settings and the per-path result shared by the bench modules. */
import type { ConnRate } from './conn-rate.ts'
import type { Throughput, UdpThroughput } from './iperf.ts'
import type { Latency } from './latency.ts'
import type { ProcStats } from './processes.ts'

export type PathName = 'direct' | 'ssh' | 'tether-ws' | 'tether-wss'
export const ALL_PATHS: PathName[] = ['direct', 'ssh', 'tether-ws', 'tether-wss']
export const LABELS: Record<PathName, string> = {
  direct: 'direct',
  ssh: 'ssh -R',
  'tether-ws': 'Tether ws',
  'tether-wss': 'Tether wss',
}

/** Measured parts: iperf3 TCP + 64-byte RTT, iperf3 UDP at fixed rates, and new connections per second. */
export type PartName = 'tcp' | 'udp' | 'conn'
export const ALL_PARTS: PartName[] = ['tcp', 'udp', 'conn']

/** How the UDP datagrams travel: straight to iperf3, relayed by the relay, or through the agent. */
export type UdpVia = 'direct' | 'udp' | 'udp-iotmp'
export const UDP_LABELS: Record<UdpVia, string> = {
  direct: 'direct',
  udp: 'Tether udp',
  'udp-iotmp': 'Tether udp-iotmp',
}

export interface Settings {
  seconds: number
  rttCount: number
  rttWarmup: number
  payload: number
  udpRates: string[]
  udpDatagramBytes: number
  /** iperf3 `-w` for the UDP runs ('' = iperf3's default). */
  udpSocketBuffer: string
  connCount: number
  connWarmup: number
  connConcurrency: number
}

/** The local targets every path forwards to. */
export interface Targets {
  iperfPort: number
  echoPort: number
  /** A second iperf3 server for the UDP runs (only when the udp part runs). */
  iperfUdpPort?: number
}

/** A path set up: the ports to point the clients at, the processes to watch, and how to stop it. */
export interface PathSetup {
  iperfPort: number
  echoPort: number
  /** iperf3 -u ports (TCP control and UDP on the same number), one per way of carrying the datagrams. */
  udp?: { via: UdpVia; port: number; proxyId?: string }[]
  /** The relay proxy in front of the echo server, whose open connections are checked after the conn part. */
  echoProxyId?: string
  /** Live status (`rx_bytes`, `tx_bytes`, …) of a proxy profile on the relay. */
  proxyStatus?: (id: string) => Promise<ProxyStatus | undefined>
  pids: Record<string, number>
  info?: Record<string, unknown>
  stop: () => Promise<void>
}

export interface ProxyStatus {
  rx_bytes?: number
  tx_bytes?: number
  active_connections?: number
  dropped_datagrams?: number
}

export interface UdpRun extends Partial<UdpThroughput> {
  via: UdpVia
  label: string
  offered: string
  /** Bytes the relay's UDP listener took in during the run (its status rx_bytes delta). */
  relayRxBytes?: number
  /** Share of the datagrams iperf3 sent that never reached the relay's socket. */
  lostBeforeRelayPercent?: number
  /** Datagrams the relay dropped because the tunnel was congested (its status dropped_datagrams delta). */
  droppedAtRelay?: number
  error?: string
}

export interface PathResult {
  path: PathName
  label: string
  throughput: { normal?: Throughput; reverse?: Throughput }
  latency?: Latency
  udp?: UdpRun[]
  conn?: ConnRate & { relayOpenAfter?: number }
  processes?: Record<string, ProcStats>
  info?: Record<string, unknown>
  errors: string[]
}
