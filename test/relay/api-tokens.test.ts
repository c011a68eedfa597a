/** API tokens: created by a user, optionally scoped to some resources, revoked at once. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { login, startTestRelay } from '../e2e/harness.ts'

interface Created {
  id: string
  token: string
  name: string
  scopes?: unknown[]
}

test('an unscoped API token acts as its user until revoked', async (t) => {
  const relay = await startTestRelay(t)
  await relay.api('POST', '/v1/users', { username: 'ana', password: 'ana-password-1', role: 'user' })
  const ana = (await login(relay, 'ana', 'ana-password-1')).access_token
  const created = await relay.api<Created>('POST', '/v1/users/ana/tokens', { name: 'script' }, ana)
  assert.equal(created.status, 201)
  const { token, id } = created.body
  assert.equal(
    (await relay.api('POST', '/v1/users/ana/devices', { device: 'd1', type: 'http' }, token)).status,
    201,
  )
  assert.equal((await relay.api('GET', '/v1/users/admin/devices', undefined, token)).status, 404)
  const listed = await relay.api<Array<{ id: string; token?: string }>>(
    'GET',
    '/v1/users/ana/tokens',
    undefined,
    ana,
  )
  assert.deepEqual(
    listed.body.map((x) => [x.id, x.token]),
    [[id, undefined]],
    'the token itself is shown once, at creation',
  )
  assert.equal((await relay.api('DELETE', `/v1/users/ana/tokens/${id}`, undefined, ana)).status, 204)
  const revoked = await relay.api<{ error: { message: string } }>(
    'GET',
    '/v1/users/ana/devices',
    undefined,
    token,
  )
  assert.equal(revoked.status, 401)
  assert.match(revoked.body.error.message, /revoked/)
})

test('a scoped token reaches only its resources, with only its access, and never as an admin', async (t) => {
  const relay = await startTestRelay(t)
  for (const device of ['dev', 'other'])
    await relay.api('POST', '/v1/users/admin/devices', { device, type: 'http' })
  await relay.api('PUT', '/v3/users/admin/devices/dev/properties/p', { value: 1 })
  const scoped = await relay.api<Created>('POST', '/v1/users/admin/tokens', {
    name: 'dashboard',
    scopes: [{ type: 'device', id: 'dev', access: 'read' }],
  })
  const token = scoped.body.token
  const as = (method: string, path: string, body?: unknown) => relay.api(method, path, body, token)
  assert.equal((await as('GET', '/v3/users/admin/devices/dev/properties/p')).status, 200)
  assert.equal((await as('GET', '/v1/users/admin/devices/dev')).status, 200)
  const overview = await as('GET', '/v3/users/admin/devices/dev/callback')
  assert.equal(overview.status, 403, "the callback overview holds the device's write token")
  assert.equal((await as('PUT', '/v3/users/admin/devices/dev/properties/p', { value: 2 })).status, 403)
  assert.equal((await as('GET', '/v1/users/admin/devices/other')).status, 403)
  assert.equal((await as('GET', '/v1/users/admin/devices')).status, 403, 'a list names no single resource')
  assert.equal((await as('GET', '/v1/server/proxies')).status, 403, 'scoped tokens are never admin')
  assert.equal((await as('POST', '/v1/users/admin/tokens', { name: 'wider' })).status, 403)
  const bad = await relay.api('POST', '/v1/users/admin/tokens', {
    name: 'x',
    scopes: [{ type: 'planet', id: 'mars', access: 'read' }],
  })
  assert.equal(bad.status, 400)
})

test('a read-only token for one bucket reads its points and nothing else', async (t) => {
  const relay = await startTestRelay(t)
  for (const bucket of ['public', 'private']) {
    await relay.api('POST', '/v1/users/admin/buckets', { bucket })
    await relay.api('POST', `/v1/users/admin/buckets/${bucket}/data`, { ts: 1000, v: bucket })
  }
  const { body } = await relay.api<Created>('POST', '/v1/users/admin/tokens', {
    name: 'dashboard',
    scopes: [{ type: 'bucket', id: 'public', access: 'read' }],
  })
  const as = (method: string, path: string, data?: unknown) => relay.api(method, path, data, body.token)
  const read = await as('GET', '/v1/users/admin/buckets/public/data')
  assert.equal(read.status, 200)
  assert.deepEqual(read.body, [{ ts: 1000, val: { v: 'public' } }])
  assert.equal((await as('GET', '/v1/users/admin/buckets/public/export?format=ndjson')).status, 200)
  assert.equal((await as('POST', '/v1/users/admin/buckets/public/data', { v: 'x' })).status, 403)
  assert.equal((await as('DELETE', '/v1/users/admin/buckets/public')).status, 403)
  assert.equal((await as('GET', '/v1/users/admin/buckets/private/data')).status, 403)
  assert.equal((await as('GET', '/v1/users/admin/buckets')).status, 403)
})
