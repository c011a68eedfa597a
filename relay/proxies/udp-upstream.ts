/**
 * Opens the target of a UDP-family profile as a datagram channel: a connected UDP socket on the relay (host,
 * plugin) or a datagram stream through the agent (device), one STREAM_DATA per datagram.
 */
import dgram from 'node:dgram'
import { lookup } from 'node:dns/promises'
import { PROXY_RESOURCE_PREFIX } from '../../protocol/messages.ts'
import { UDP_SOCKET_BUFFER_BYTES } from '../../protocol/udp-buffers.ts'
import { type ProxyContext, relayTargetAddress } from './proxy-context.ts'
import type { ProxyProfile } from './schemas.ts'

/** One client's channel to the target. */
export interface DatagramUpstream {
  /** Sends one datagram; false when it was dropped because the path is congested (UDP semantics). */
  send(datagram: Buffer): boolean
  close(): void
}

export interface DatagramHandlers {
  onMessage(datagram: Buffer): void
  onClose(reason: string): void
}

/** Resolves with an open channel to the profile's target, or rejects with a message naming the target. */
export async function openUdpUpstream(
  profile: ProxyProfile,
  ctx: ProxyContext,
  handlers: DatagramHandlers,
): Promise<DatagramUpstream> {
  const { target } = profile
  if (target.type === 'device') {
    const link = ctx.hub.get(target.user, target.device)
    if (!link) throw new Error(`device ${target.user}/${target.device} is offline`)
    const stream = await link.session
      .openStream(`${PROXY_RESOURCE_PREFIX}${profile.id}`, {
        protocol: 'udp',
        address: target.address,
        port: target.port,
      })
      .catch((err: Error) => {
        throw new Error(`agent could not open udp ${target.address}:${target.port}: ${err.message}`)
      })
    stream.on('data', (datagram: Buffer) => handlers.onMessage(datagram))
    stream.on('error', () => {})
    stream.on('close', () => handlers.onClose('stream closed'))
    return {
      send: (datagram) => {
        if (stream.writableNeedDrain || stream.destroyed) return false
        stream.write(datagram)
        return true
      },
      close: () => stream.destroy(),
    }
  }

  const host = relayTargetAddress(target, ctx)
  const { address, family } = await lookup(host).catch((err: Error) => {
    throw new Error(`cannot resolve ${host}: ${err.message}`)
  })
  const socket = dgram.createSocket({
    type: family === 6 ? 'udp6' : 'udp4',
    recvBufferSize: UDP_SOCKET_BUFFER_BYTES,
    sendBufferSize: UDP_SOCKET_BUFFER_BYTES,
  })
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.connect(target.port, address, () => {
      socket.off('error', reject)
      resolve()
    })
  }).catch((err: Error) => {
    socket.close()
    throw new Error(`could not open udp ${host}:${target.port}: ${err.message}`)
  })
  // ICMP port unreachable surfaces as ECONNREFUSED on a connected socket: the next datagram may succeed.
  socket.on('error', () => {})
  socket.on('message', (datagram) => handlers.onMessage(datagram))
  let closed = false
  return {
    send: (datagram) => {
      if (closed) return false
      socket.send(datagram)
      return true
    },
    close: () => {
      if (closed) return
      closed = true
      socket.close()
    },
  }
}
