/** TLS target options and failure wording shared by agent and relay. */
import assert from 'node:assert/strict'
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

  it('adds extra CAs to the bundled roots rather than replacing them', () => {
    const pem = readCaFiles([CERT])
    const o = tlsTargetOptions({ host: 'plc.lan', port: 443, verify: true, ca: pem })
    assert.deepEqual(o.ca, [...tls.rootCertificates, ...pem])
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
