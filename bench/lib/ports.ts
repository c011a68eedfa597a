/** Loopback ports: finding free ones and probing whether one accepts TCP connections. */
import dgram from 'node:dgram'
import net from 'node:net'

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

function udpPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4')
    sock.once('error', () => {
      sock.close()
      resolve(false)
    })
    sock.bind({ port, address: '127.0.0.1', exclusive: true }, () => sock.close(() => resolve(true)))
  })
}

/** A port number on 127.0.0.1 free for both TCP and UDP (an iperf3 UDP test uses both). */
export async function freeTcpUdpPort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await freePort()
    if (await udpPortFree(port)) return port
  }
  throw new Error('no port free for both TCP and UDP after 20 attempts')
}

/** True when a TCP connection to 127.0.0.1:`port` succeeds within `timeoutMs` (then closes it). */
export function tryConnect(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port })
    const done = (ok: boolean) => {
      clearTimeout(timer)
      sock.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    sock.once('connect', () => done(true))
    sock.once('error', () => done(false))
  })
}
