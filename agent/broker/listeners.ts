/**
 * The broker's listening sockets: plain MQTT over TCP (node:net) and MQTT over TLS (node:tls), each handing its
 * connections to aedes. Connections are tracked so a close does not wait for idle clients.
 */
import { readFileSync } from 'node:fs'
import net, { type AddressInfo } from 'node:net'
import tls from 'node:tls'
import type { Logger } from 'pino'

/** A bound listener. */
export interface BrokerListener {
  /** The bound port (the OS's choice when configured 0). */
  readonly port: number
  /** Stops accepting, destroys the connections still open, resolves once closed. */
  close(): Promise<void>
}

export interface ListenOptions {
  host: string
  port: number
  /** PEM files: when given, the listener speaks TLS. */
  tls?: { cert: string; key: string }
  onConnection: (socket: net.Socket) => void
  log: Logger
}

/** Binds a TCP or TLS listener; rejects when the address cannot be bound. */
export async function listen(opts: ListenOptions): Promise<BrokerListener> {
  const sockets = new Set<net.Socket>()
  const accept = (socket: net.Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    opts.onConnection(socket)
  }
  let server: net.Server
  if (opts.tls) {
    let secure: { cert: Buffer; key: Buffer }
    try {
      secure = { cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key) }
    } catch (err) {
      throw new Error(`broker.tls: cannot read the certificate or key: ${(err as Error).message}`, {
        cause: err,
      })
    }
    const tlsServer = tls.createServer(secure, accept)
    // A failed handshake (plain MQTT on the TLS port, an untrusted client) concerns that client only.
    tlsServer.on('tlsClientError', (err) => opts.log.info({ err: err.message }, 'MQTT TLS handshake failed'))
    server = tlsServer
  } else {
    server = net.createServer(accept)
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.on('error', (err) => opts.log.error({ err }, 'MQTT listener error'))
  const port = (server.address() as AddressInfo).port
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const socket of sockets) socket.destroy()
      }),
  }
}
