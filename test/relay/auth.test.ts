/** Auth API: token grants (JSON and form), bearer checks, expiry, roles and ownership, on a real relay. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ADMIN_PASSWORD, eventually, login, startTestRelay, type TestRelay } from '../e2e/harness.ts'

interface TokenBody {
  access_token: string
  token_type: string
  expires_in: number
  refresh_token: string
  role: string
}

interface ErrorBody {
  error: { code: string; message: string }
}

/** Asserts an error answer: status, `{error: {code, message}}`, and the message when given. */
function assertError(res: { status: number; body: unknown }, status: number, message?: RegExp): ErrorBody {
  assert.equal(res.status, status, JSON.stringify(res.body))
  const body = res.body as ErrorBody
  assert.equal(typeof body.error?.code, 'string')
  assert.equal(typeof body.error?.message, 'string')
  if (message) assert.match(body.error.message, message)
  return body
}

/** GET without any Authorization header. */
async function getRaw(relay: TestRelay, path: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${relay.relay.url}${path}`, { headers })
  return { status: res.status, body: (await res.json()) as unknown }
}

test('auth API on one relay', async (t) => {
  const relay = await startTestRelay(t)

  await t.test('password grant with JSON and with a form-encoded body', async () => {
    const json = await relay.api<TokenBody>(
      'POST',
      '/oauth/token',
      { grant_type: 'password', username: 'admin', password: ADMIN_PASSWORD },
      '',
    )
    assert.equal(json.status, 200)
    assert.equal(json.body.token_type, 'Bearer')
    assert.equal(json.body.role, 'admin')
    assert.equal(json.body.expires_in, 3600)
    assert.ok(json.body.access_token.split('.').length === 3, 'a JWT')
    assert.ok(json.body.refresh_token.split('.').length === 3, 'a JWT')

    const form = new URLSearchParams({ grant_type: 'password', username: 'admin', password: ADMIN_PASSWORD })
    const res = await fetch(`${relay.relay.url}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.toString(),
    })
    assert.equal(res.status, 200)
    const body = (await res.json()) as TokenBody
    assert.equal(body.token_type, 'Bearer')
    const devices = await relay.api('GET', '/v1/users/admin/devices', undefined, body.access_token)
    assert.equal(devices.status, 200)

    const badForm = await fetch(`${relay.relay.url}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'password',
        username: 'admin',
        password: 'wrong-one',
      }).toString(),
    })
    assertError({ status: badForm.status, body: await badForm.json() }, 401)
  })

  await t.test(
    'wrong password and unknown user: 401 with {error: {code, message}}, same answer',
    async () => {
      const wrong = await relay.api(
        'POST',
        '/oauth/token',
        { grant_type: 'password', username: 'admin', password: 'not-the-password' },
        '',
      )
      const a = assertError(wrong, 401)
      const unknown = await relay.api(
        'POST',
        '/oauth/token',
        { grant_type: 'password', username: 'nobody', password: 'not-the-password' },
        '',
      )
      const b = assertError(unknown, 401)
      assert.deepEqual(b, a)
      const noGrant = await relay.api(
        'POST',
        '/oauth/token',
        { username: 'admin', password: ADMIN_PASSWORD },
        '',
      )
      assertError(noGrant, 400)
    },
  )

  await t.test('missing, garbage and malformed tokens: 401', async (t) => {
    assertError(await getRaw(relay, '/v1/users/admin/devices'), 401, /missing bearer token/)
    assertError(
      await getRaw(relay, '/v1/users/admin/devices', { authorization: 'Bearer not.a.jwt' }),
      401,
      /^invalid token$/,
    )
    assertError(
      await getRaw(relay, '/v1/users/admin/devices', { authorization: 'Bearer garbage' }),
      401,
      /^invalid token$/,
    )
    // A token signed by another relay (another secret) is just as invalid.
    const other = await startTestRelay(t)
    assertError(
      await getRaw(relay, '/v1/users/admin/devices', { authorization: `Bearer ${other.token}` }),
      401,
      /^invalid token$/,
    )
    // Not a bearer scheme.
    assertError(
      await getRaw(relay, '/v1/users/admin/devices', { authorization: `Basic ${relay.token}` }),
      401,
    )
    assertError(await getRaw(relay, '/v1/server/proxies'), 401)
    assertError(await getRaw(relay, '/v1/users'), 401)
  })

  await t.test('?authorization=<token> query form works', async () => {
    const ok = await getRaw(relay, `/v1/users/admin/devices?authorization=${encodeURIComponent(relay.token)}`)
    assert.equal(ok.status, 200)
    assert.ok(Array.isArray(ok.body))
    assertError(await getRaw(relay, '/v1/users/admin/devices?authorization=garbage'), 401, /^invalid token$/)
  })

  await t.test(
    'refresh grant issues new tokens; refresh and access tokens are not interchangeable',
    async () => {
      const first = await login(relay, 'admin', ADMIN_PASSWORD)
      const { refresh_token: refresh } = first as TokenBody
      const refreshed = await relay.api<TokenBody>(
        'POST',
        '/oauth/token',
        { grant_type: 'refresh_token', refresh_token: refresh },
        '',
      )
      assert.equal(refreshed.status, 200)
      assert.equal(refreshed.body.role, 'admin')
      assert.equal((await relay.api('GET', '/v1/users', undefined, refreshed.body.access_token)).status, 200)

      // Form-encoded refresh grant.
      const res = await fetch(`${relay.relay.url}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refresh }).toString(),
      })
      assert.equal(res.status, 200)

      assertError(await relay.api('GET', '/v1/users', undefined, refresh), 401, /not an access token/)
      assertError(
        await relay.api(
          'POST',
          '/oauth/token',
          { grant_type: 'refresh_token', refresh_token: first.access_token },
          '',
        ),
        401,
        /invalid refresh token/,
      )
      assertError(
        await relay.api(
          'POST',
          '/oauth/token',
          { grant_type: 'refresh_token', refresh_token: 'garbage' },
          '',
        ),
        401,
      )
    },
  )

  await t.test(
    'a user-role account: 403 on admin routes, 404 on other users, 200 on its own resources',
    async () => {
      const created = await relay.api<{ username: string; role: string; passwordHash?: string }>(
        'POST',
        '/v1/users',
        { username: 'bob', password: 'bob-password-1', role: 'user' },
      )
      assert.equal(created.status, 201)
      assert.equal(created.body.role, 'user')
      assert.equal(created.body.passwordHash, undefined)
      assertError(
        await relay.api('POST', '/v1/users', { username: 'bob', password: 'bob-password-2' }),
        409,
        /already exists/,
      )

      const bob = await login(relay, 'bob', 'bob-password-1')
      assert.equal((bob as TokenBody).role, 'user')
      const as = (method: string, path: string, body?: unknown) =>
        relay.api(method, path, body, bob.access_token)

      assertError(await as('GET', '/v1/server/proxies'), 403)
      assertError(await as('GET', '/v1/users'), 403)
      assertError(await as('POST', '/v1/users', { username: 'eve', password: 'eve-password' }), 403)
      assertError(await as('GET', '/v1/users/admin/devices'), 404, /admin/)
      assertError(await as('POST', '/v1/users/admin/devices', { device: 'sneaky', type: 'agent' }), 404)

      // The admin's own device is out of reach too, whether it exists or not (no enumeration by status).
      assert.equal(
        (await relay.api('POST', '/v1/users/admin/devices', { device: 'adm-gw', type: 'agent' })).status,
        201,
      )
      assertError(await as('GET', '/v1/users/admin/devices/adm-gw'), 404)
      assertError(await as('GET', '/v1/users/admin/devices/no-such'), 404)
      assertError(await as('DELETE', '/v1/users/admin/devices/adm-gw'), 404)
      assert.equal((await relay.api('GET', '/v1/users/admin/devices/adm-gw')).status, 200)

      const own = await as('GET', '/v1/users/bob/devices')
      assert.equal(own.status, 200)
      assert.deepEqual(own.body, [])
      const gw = await as('POST', '/v1/users/bob/devices', { device: 'bob-gw', type: 'agent' })
      assert.equal(gw.status, 201)
      assert.equal((await as('GET', '/v1/users/bob/devices/bob-gw')).status, 200)

      // The admin sees everyone's devices.
      const adminView = await relay.api<Array<{ device: string }>>('GET', '/v1/users/bob/devices')
      assert.equal(adminView.status, 200)
      assert.deepEqual(
        adminView.body.map((d) => d.device),
        ['bob-gw'],
      )
    },
  )
})

test('expired access token: 401 "token expired"', async (t) => {
  // A 2 s lifetime leaves at least 1 s after issue (exp has second granularity) to see the token work.
  const relay = await startTestRelay(t, { accessTokenTtlSec: 2 })
  const { access_token: token } = await login(relay, 'admin', ADMIN_PASSWORD)
  const path = '/v1/users/admin/devices'
  assert.equal((await relay.api('GET', path, undefined, token)).status, 200)
  // Waiting for the expiry is the behaviour under test: at most 2 s.
  const expired = await eventually(
    async () => {
      const res = await relay.api('GET', path, undefined, token)
      return res.status === 401 ? res : undefined
    },
    3000,
    'token expiry',
  )
  assertError(expired!, 401, /^token expired$/)
})
