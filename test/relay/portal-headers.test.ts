/** The portal's header policy and labels, as pure functions. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  mapLocation,
  mapSetCookie,
  type PortalView,
  requestHeaders,
  responseHeaders,
} from '../../relay/portals/header-policy.ts'
import { portalLabel } from '../../relay/portals/portal-label.ts'

const view: PortalView = {
  portalOrigin: 'https://router-gw-12345678.portal.example.com',
  prefix: '',
  deviceHost: '192.168.1.1',
  deviceOrigin: 'http://192.168.1.1',
  preserveHost: false,
  frameAncestor: 'https://tether.example.com',
  secureContext: true,
}

describe('request headers', () => {
  test('drop hop-by-hop headers, those named in Connection, and client-sent X-Forwarded-*', () => {
    const out = requestHeaders(
      {
        connection: 'keep-alive, x-secret-hop',
        'x-secret-hop': '1',
        'keep-alive': 'timeout=5',
        te: 'trailers',
        'proxy-authorization': 'Basic eA==',
        'x-forwarded-for': '6.6.6.6',
        authorization: 'Basic YWRtaW46YWRtaW4=',
        accept: 'text/html',
      },
      view,
      { ip: '203.0.113.9', proto: 'https' },
    )
    for (const gone of ['connection', 'x-secret-hop', 'keep-alive', 'te', 'proxy-authorization']) {
      assert.equal(out[gone], undefined, gone)
    }
    assert.equal(out['x-forwarded-for'], '203.0.113.9', 'a client cannot forge the chain')
    assert.equal(out.authorization, 'Basic YWRtaW46YWRtaW4=', "the device's own auth passes")
    assert.equal(out.host, '192.168.1.1')
  })

  test('leave an Origin from elsewhere untouched, so the device can refuse it', () => {
    const out = requestHeaders({ origin: 'https://evil.example' }, view, { ip: '::1', proto: 'https' })
    assert.equal(out.origin, 'https://evil.example')
  })
})

describe('Location', () => {
  test('maps the device origin onto the portal, with or without the default port', () => {
    assert.equal(mapLocation('http://192.168.1.1/a?b#c', view), `${view.portalOrigin}/a?b#c`)
    assert.equal(mapLocation('http://192.168.1.1:80/a', view), `${view.portalOrigin}/a`)
  })

  test('leaves other hosts, other ports and relative paths alone (subdomain mode)', () => {
    assert.equal(mapLocation('https://example.org/x', view), 'https://example.org/x')
    assert.equal(mapLocation('http://192.168.1.1:8080/x', view), 'http://192.168.1.1:8080/x')
    assert.equal(mapLocation('/login', view), '/login')
    assert.equal(mapLocation('next', view), 'next')
  })

  test('in path mode, prefixes root paths once', () => {
    const path = { ...view, portalOrigin: 'https://tether.example.com', prefix: '/portal/r' }
    assert.equal(mapLocation('/login', path), '/portal/r/login')
    assert.equal(mapLocation('/portal/r/login', path), '/portal/r/login')
    assert.equal(mapLocation('http://192.168.1.1/x', path), 'https://tether.example.com/portal/r/x')
  })
})

describe('Set-Cookie', () => {
  test('outside a secure context keeps the device SameSite and only drops Domain', () => {
    const plain = { ...view, secureContext: false }
    assert.equal(
      mapSetCookie('a=1; Domain=.example.com; Path=/app; SameSite=Strict; Max-Age=60', plain),
      'a=1; SameSite=Strict; Max-Age=60; Path=/app',
    )
  })

  test('in path mode scopes the path under the prefix', () => {
    const path = { ...view, prefix: '/portal/r' }
    assert.equal(
      mapSetCookie('a=1; Path=/app', path),
      'a=1; Path=/portal/r/app; SameSite=None; Secure; Partitioned',
    )
    assert.equal(mapSetCookie('a=1', path), 'a=1; Path=/portal/r/; SameSite=None; Secure; Partitioned')
  })
})

test('response headers: hop-by-hop and framing headers out, one frame-ancestors policy in, cookies kept apart', () => {
  const out = responseHeaders(
    [
      'Connection',
      'close, X-Internal',
      'X-Internal',
      'x',
      'Transfer-Encoding',
      'chunked',
      'X-Frame-Options',
      'DENY',
      'Strict-Transport-Security',
      'max-age=1',
      'Content-Security-Policy',
      "frame-ancestors 'none'",
      'Set-Cookie',
      'a=1',
      'Set-Cookie',
      'b=2',
      'Content-Type',
      'text/html',
    ],
    view,
  )
  assert.deepEqual(out, [
    ['Set-Cookie', 'a=1; Path=/; SameSite=None; Secure; Partitioned'],
    ['Set-Cookie', 'b=2; Path=/; SameSite=None; Secure; Partitioned'],
    ['Content-Type', 'text/html'],
    ['Content-Security-Policy', 'frame-ancestors https://tether.example.com'],
  ])
})

test('portal labels are DNS-safe, at most 63 characters, and tell apart ids that slug alike', () => {
  const long = portalLabel('Router_Web_UI'.repeat(8), 'admin', 'Gateway.Site_1'.repeat(8))
  assert.match(long, /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/)
  assert.ok(long.length <= 63)
  assert.notEqual(portalLabel('web_ui', 'admin', 'gw'), portalLabel('Web-UI', 'admin', 'gw'))
  assert.notEqual(portalLabel('web', 'alice', 'gw'), portalLabel('web', 'bob', 'gw'))
})
