/** TLS target options and failure wording shared by agent and relay. */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import tls from 'node:tls'
import { explainTlsFailure, readCaFiles, tlsTargetOptions } from '../../protocol/tls-target.ts'

const CERT = join(import.meta.dirname, '..', 'fixtures', 'tls', 'localhost.crt')

describe('tlsTargetOptions', () => {
  it('sends a name as SNI but never an IP', () => {
    const byName = tlsTargetOptions({ host: 'plc.lan', port: 443, verify: true, ca: [] })
    assert.equal(byName.servername, 'plc.lan')
    assert.equal(byName.ca, undefined, 'no extra CA: Node keeps its bundled roots')
    const byIp = tlsTargetOptions({ host: '10.0.0.5', port: 443, verify: true, ca: [] })
    assert.equal(byIp.servername, undefined)
    assert.equal(byIp.checkServerIdentity, undefined, 'the IP itself is checked against the IP SANs')
  })

  it('checks an explicit IP servername against the certificate without sending it as SNI', () => {
    const o = tlsTargetOptions({ host: '192.0.2.1', port: 443, servername: '10.0.0.5', verify: true, ca: [] })
    assert.equal(o.servername, undefined)
    const cert = { subject: { CN: 'x' }, subjectaltname: 'IP Address:10.0.0.5' } as tls.PeerCertificate
    assert.equal(o.checkServerIdentity?.('192.0.2.1', cert), undefined)
    const other = { subject: { CN: 'x' }, subjectaltname: 'IP Address:192.0.2.1' } as tls.PeerCertificate
    assert.ok(o.checkServerIdentity?.('192.0.2.1', other) instanceof Error)
  })

  it("keeps trusting NODE_EXTRA_CA_CERTS when targetCa is set (a `ca` option replaces Node's default store)", () => {
    const moduleUrl = new URL('../../protocol/tls-target.ts', import.meta.url).href
    const script = `const m = await import(${JSON.stringify(moduleUrl)});
      const o = m.tlsTargetOptions({ host: 'a', port: 1, verify: true, ca: ['site CA'] });
      process.stdout.write(String(o.ca.includes(${JSON.stringify(readFileSync(CERT, 'utf8'))})))`
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: CERT },
    })
    assert.equal(out.toString(), 'true')
  })

  it('adds extra CAs to the bundled roots rather than replacing them', () => {
    const pem = readCaFiles([CERT])
    const o = tlsTargetOptions({ host: 'plc.lan', port: 443, verify: true, ca: pem })
    const ca = o.ca as string[]
    assert.deepEqual(ca.slice(0, tls.rootCertificates.length), [...tls.rootCertificates])
    assert.deepEqual(ca.slice(-pem.length), pem)
  })
})

describe('TLS target sockets', () => {
  it('stay half-open when the target ends first, so the tunnel can still deliver and be answered', async (t) => {
    const key = readFileSync(join(import.meta.dirname, '..', 'fixtures', 'tls', 'localhost.key'))
    const received: Buffer[] = []
    const server = tls.createServer({ cert: readFileSync(CERT), key, allowHalfOpen: true }, (socket) => {
      socket.on('data', (d: Buffer) => received.push(d))
      socket.end('bye') // an HTTP server answering "Connection: close"
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    t.after(() => server.close())
    const { port } = server.address() as AddressInfo
    const socket = tls.connect(tlsTargetOptions({ host: '127.0.0.1', port, verify: false, ca: [] }))
    socket.resume()
    await once(socket, 'end')
    assert.equal(socket.writable, true, 'our write side is still open after the target ended')
    socket.end('after')
    await once(socket, 'close')
    assert.equal(Buffer.concat(received).toString(), 'after')
  })
})

describe('explainTlsFailure', () => {
  const target = { host: '10.0.0.5', port: 8443, servername: 'router.lan', verify: true, ca: [] }
  it('names the expected name on a mismatch and the remedy for an untrusted certificate', () => {
    const mismatch = Object.assign(new Error("Hostname/IP does not match certificate's altnames"), {
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
    })
    assert.match(
      explainTlsFailure(mismatch, target)!,
      /^certificate of 10\.0\.0\.5:8443 is not valid for router\.lan/,
    )
    const untrusted = Object.assign(new Error('self-signed certificate'), {
      code: 'DEPTH_ZERO_SELF_SIGNED_CERT',
    })
    assert.match(explainTlsFailure(untrusted, target)!, /not trusted .*targetCa.*verify: false/)
  })
  it('leaves errors that are not about the certificate alone', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
    assert.equal(explainTlsFailure(refused, target), undefined)
  })
})

describe('readCaFiles', () => {
  it('names the file that cannot be used', () => {
    assert.throws(
      () => readCaFiles(['/nonexistent/ca.pem']),
      /targetCa: cannot use \/nonexistent\/ca\.pem: ENOENT/,
    )
    assert.throws(
      () => readCaFiles([import.meta.filename]),
      /targetCa: cannot use .*: no PEM certificate in it/,
    )
  })
})
