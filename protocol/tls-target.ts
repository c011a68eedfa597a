/**
 * TLS to a proxy target, shared by the agent (LAN targets) and the relay (host and plugin targets): which name
 * is sent as SNI and checked against the certificate, which CAs are trusted, and how a rejected certificate is
 * explained to the admin who has to fix it.
 */
import { readFileSync } from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'

export interface TlsTarget {
  /** Address to connect to (a resolved IP or a name). */
  host: string
  port: number
  /** Name checked against the certificate and sent as SNI; default: `host` unless it is an IP. */
  servername?: string
  /** False accepts any certificate (self-signed router UIs); logged by the caller. */
  verify: boolean
  /** Extra trusted CA certificates (PEM), on top of Node's bundled roots. */
  ca: readonly string[]
}

/** tls.connect options for a target. SNI never carries an IP (RFC 6066); an IP is checked against IP SANs. */
export function tlsTargetOptions(target: TlsTarget): tls.ConnectionOptions & { allowHalfOpen: boolean } {
  const name = target.servername ?? (net.isIP(target.host) ? undefined : target.host)
  return {
    host: target.host,
    port: target.port,
    // A target that closes first (HTTP "Connection: close") must only end our read side: the tunnel may still
    // hold the tail of its answer for a slow client, and a TLS socket that also ended its write side would
    // close and take that tail with it.
    allowHalfOpen: true,
    rejectUnauthorized: target.verify,
    ...(name && !net.isIP(name) ? { servername: name } : {}),
    // A name that is an IP (servername: "10.0.0.5") is still what the certificate must match.
    ...(name && net.isIP(name)
      ? { checkServerIdentity: (_: string, cert) => tls.checkServerIdentity(name, cert) }
      : {}),
    ...(target.ca.length > 0 ? { ca: [...defaultCas(), ...target.ca] } : {}),
  }
}

let defaults: string[] | undefined
/**
 * What Node trusts when no `ca` is given: its bundled roots plus NODE_EXTRA_CA_CERTS. Passing `ca` replaces
 * that store, so the extra file is added back here (Node 20 has no tls.getCACertificates()).
 */
function defaultCas(): string[] {
  if (defaults) return defaults
  defaults = [...tls.rootCertificates]
  const extra = process.env.NODE_EXTRA_CA_CERTS
  if (extra) {
    try {
      defaults.push(readFileSync(extra, 'utf8'))
    } catch {
      // Node itself warns at start when the file cannot be read
    }
  }
  return defaults
}

const UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
])

/** A handshake failure in terms an admin can act on; undefined for errors that are not about the certificate. */
export function explainTlsFailure(err: NodeJS.ErrnoException, target: TlsTarget): string | undefined {
  const name = target.servername ?? target.host
  if (err.code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `certificate of ${target.host}:${target.port} is not valid for ${name} (${err.message})`
  }
  if (err.code && UNTRUSTED.has(err.code)) {
    return (
      `certificate of ${target.host}:${target.port} is not trusted (${err.code}): add its CA to targetCa, ` +
      'or set verify: false on the profile for a self-signed device'
    )
  }
  if (err.code === 'CERT_HAS_EXPIRED' || err.code === 'CERT_NOT_YET_VALID') {
    return `certificate of ${target.host}:${target.port} is outside its validity period (${err.code})`
  }
  return undefined
}

/** Reads the PEM files of a `targetCa` setting; an unreadable file is a startup error naming it. */
export function readCaFiles(files: readonly string[]): string[] {
  return files.map((file) => {
    try {
      const pem = readFileSync(file, 'utf8')
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in it')
      return pem
    } catch (err) {
      throw new Error(`targetCa: cannot use ${file}: ${(err as Error).message}`)
    }
  })
}
