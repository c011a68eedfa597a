/** Opens the target of a TCP-family profile: dialed by the relay (host, plugin) or by the agent (device). */
import net from 'node:net'
import type { Duplex } from 'node:stream'
import tls from 'node:tls'
import { PROXY_RESOURCE_PREFIX } from '../../protocol/messages.ts'
import { explainTlsFailure, type TlsTarget, tlsTargetOptions } from '../../protocol/tls-target.ts'
import { type ProxyContext, relayTargetAddress } from './proxy-context.ts'
import type { ProxyProfile } from './schemas.ts'

/** Resolves with a connected duplex to the profile's target, or rejects with a message naming the target. */
export function openTcpUpstream(profile: ProxyProfile, ctx: ProxyContext): Promise<Duplex> {
  const { target } = profile
  const secure = target.tls === true
  const verify = target.verify !== false
  if (target.type === 'device') {
    const link = ctx.hub.get(target.user, target.device)
    if (!link) return Promise.reject(new Error(`device ${target.user}/${target.device} is offline`))
    return link.session
      .openStream(`${PROXY_RESOURCE_PREFIX}${profile.id}`, {
        protocol: 'tcp',
        address: target.address,
        port: target.port,
        ...(secure ? { secure, verify } : {}),
        ...(secure && target.servername ? { servername: target.servername } : {}),
      })
      .catch((err: Error) => {
        throw new Error(`agent could not open ${target.address}:${target.port}: ${err.message}`, {
          cause: err,
        })
      })
  }
  const address = relayTargetAddress(target, ctx)
  const tlsTarget: TlsTarget | undefined = secure
    ? { host: address, port: target.port, servername: target.servername, verify, ca: ctx.targetCa }
    : undefined
  return dial(address, target.port, tlsTarget, ctx.dialTimeoutMs)
}

function dial(address: string, port: number, tlsTarget: TlsTarget | undefined, timeoutMs: number) {
  return new Promise<Duplex>((resolve, reject) => {
    const where = `${address}:${port}`
    const secure = tlsTarget !== undefined
    const socket = secure
      ? tls.connect(tlsTargetOptions(tlsTarget))
      : net.connect({ host: address, port, allowHalfOpen: true, noDelay: true })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`could not connect to ${where}: no answer within ${timeoutMs} ms`))
    }, timeoutMs)
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer)
      socket.removeAllListeners('error')
      socket.on('error', () => {}) // reported by the splice
      resolve(socket)
    })
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      const why =
        (tlsTarget && explainTlsFailure(err, tlsTarget)) ??
        (err.code === 'ECONNREFUSED' ? 'connection refused' : err.message)
      reject(new Error(`could not connect to ${where}: ${why}`))
    })
  })
}
