/** The vocabulary of a Session: options, CONNECT and stream requests as handlers see them, close info. */
import type { Logger } from 'pino'
import type { ConnectOkParams, ConnectParams, StartStreamParams } from './messages.ts'
import type { TunnelStream } from './tunnel-stream.ts'

/** Channel bytes queued above which streams wait for drain (DESIGN.md: the session watches bufferedAmount). */
export const CHANNEL_HIGH_WATER_BYTES = 2 * 1024 * 1024
/** How long the relay waits for CONNECT after the socket opens. */
export const CONNECT_WAIT_MS = 10_000

/** WebSocket close codes used when a session ends the link. */
export const CloseCode = { NORMAL: 1000, PROTOCOL: 1002, POLICY: 1008, TOO_BIG: 1009, DEAD: 4000 } as const

export type Role = 'relay' | 'agent'

/** CONNECT as the relay sees it. */
export interface ConnectRequest {
  user: string
  device: string
  credential: string
  params: ConnectParams
}

/** An inbound START_STREAM waiting for the handler's decision. */
export interface InboundStreamRequest {
  id: number
  resource: string
  params: StartStreamParams
  /** Answers OK and returns the open stream. */
  accept(): TunnelStream
  /** Answers ERROR {code, message}. */
  reject(code: number, message: string): void
}

export interface SessionOptions {
  role: Role
  logger: Logger
  maxFrameBytes?: number
  /** Receive window this side grants per stream at first, bytes (default 256 KiB). */
  windowBytes?: number
  /** How far a stream's receive window may grow for a consumer that keeps up (default 4 MiB). */
  maxWindowBytes?: number
  requestTimeoutMs?: number
  /** Relay: checks CONNECT and returns the OK params; throw a TetherProtocolError to refuse. */
  authenticate?: (req: ConnectRequest) => Promise<ConnectOkParams>
  /** RUN handler; the resolved value is the OK payload. */
  onRun?: (
    resource: string,
    payload: unknown,
    params: Record<string, unknown> | undefined,
  ) => Promise<unknown>
  onStartStream?: (req: InboundStreamRequest) => void
  onDescribe?: () => unknown
}

/** Why and how a session ended. */
export interface CloseInfo {
  reason: string
  /** Wire error code when an ERROR ended the link (ours or the peer's). */
  wireCode?: number
  by: 'local' | 'remote'
}
