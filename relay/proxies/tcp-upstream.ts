/** Opens the target of a TCP-family profile: dialed by the relay (host, plugin) or by the agent (device). */
import net from 'node:net'
import type { Duplex } from 'node:stream'
import tls from 'node:tls'
import { PROXY_RESOURCE_PREFIX } from '../../protocol/messages.ts'
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
        ...(secure && !net.isIP(target.address) ? { servername: target.address } : {}),
      })
      .catch((err: Error) => {
        throw new Error(`agent could not open ${target.address}:${target.port}: ${err.message}`)
      })
  }
  const address = relayTargetAddress(target, ctx)
  return dial(address, target.port, secure, verify, ctx.dialTimeoutMs)
}

function dial(address: string, port: number, secure: boolean, verify: boolean, timeoutMs: number) {
  return new Promise<Duplex>((resolve, reject) => {
    const where = `${address}:${port}`
    const socket = secure
      ? tls.connect({
          host: address,
          port,
          rejectUnauthorized: verify,
          ...(net.isIP(address) ? {} : { servername: address }),
        })
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
      const why = err.code === 'ECONNREFUSED' ? 'connection refused' : err.message
      reject(new Error(`could not connect to ${where}: ${why}`))
    })
  })
}
