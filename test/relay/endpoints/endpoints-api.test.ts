/** Endpoints API on a real relay: CRUD, validation messages, the write-only MQTT password, user isolation. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startTestRelay } from '../../e2e/harness.ts'
import { assertError, createUser, httpEndpoint, type LogEntry } from './helpers.ts'

interface EndpointView {
  endpoint: string
  name: string
  description: string
  enabled: boolean
  type: 'http' | 'mqtt'
  created_ts: number
  updated_ts: number
  config: Record<string, unknown>
}

const SECRET = 'broker-secret-never-shown'

test('endpoints API on one relay', async (t) => {
  const relay = await startTestRelay(t)

  await t.test('create fills defaults; list, get, put and delete', async () => {
    const u = await createUser(relay, 'crud')
    const created = await u.api<EndpointView>(
      'POST',
      u.path,
      httpEndpoint('hook', 'http://127.0.0.1:9/in', { headers: { 'x-key': 'k' } }),
    )
    assert.equal(created.status, 201, JSON.stringify(created.body))
    assert.deepEqual(
      { ...created.body, created_ts: 0, updated_ts: 0 },
      {
        endpoint: 'hook',
        name: 'hook',
        description: '',
        enabled: true,
        type: 'http',
        created_ts: 0,
        updated_ts: 0,
        config: {
          method: 'POST',
          url: 'http://127.0.0.1:9/in',
          headers: { 'x-key': 'k' },
          timeout_ms: 10_000,
        },
      },
    )
    assertError(
      await u.api('POST', u.path, httpEndpoint('hook', 'http://127.0.0.1:9/')),
      409,
      /already exists/,
    )

    const second = await u.api('POST', u.path, {
      endpoint: 'alerts',
      name: 'Alerts',
      description: 'to the broker',
      enabled: false,
      type: 'mqtt',
      config: { url: 'mqtt://127.0.0.1:1883', topic: 'alerts/{{device}}', qos: 1 },
    })
    assert.equal(second.status, 201, JSON.stringify(second.body))

    const list = await u.api<EndpointView[]>('GET', u.path)
    assert.equal(list.status, 200)
    assert.deepEqual(
      list.body.map((e) => [e.endpoint, e.type, e.enabled]),
      [
        ['alerts', 'mqtt', false],
        ['hook', 'http', true],
      ],
    )
    const alerts = list.body[0] as EndpointView
    assert.deepEqual(alerts.config, {
      url: 'mqtt://127.0.0.1:1883',
      topic: 'alerts/{{device}}',
      qos: 1,
      retain: false,
      timeout_ms: 10_000,
      password_set: false,
    })

    const put = await u.api<EndpointView>('PUT', `${u.path}/hook`, {
      name: 'Hook',
      type: 'http',
      config: { method: 'PATCH', url: 'https://example.test/x', body: '{"v": {{payload}}}', timeout_ms: 500 },
    })
    assert.equal(put.status, 200, JSON.stringify(put.body))
    assert.equal(put.body.name, 'Hook')
    assert.equal(put.body.created_ts, created.body.created_ts)
    assert.ok(put.body.updated_ts >= created.body.updated_ts)
    const got = await u.api<EndpointView>('GET', `${u.path}/hook`)
    assert.deepEqual(got.body, put.body)
    assert.deepEqual(got.body.config, {
      method: 'PATCH',
      url: 'https://example.test/x',
      body: '{"v": {{payload}}}',
      timeout_ms: 500,
    })

    // A type change is a full replacement too.
    const retyped = await u.api<EndpointView>('PUT', `${u.path}/hook`, {
      endpoint: 'hook',
      type: 'mqtt',
      config: { url: 'mqtts://broker.test', topic: 't', qos: 0 },
    })
    assert.equal(retyped.status, 200, JSON.stringify(retyped.body))
    assert.equal(retyped.body.type, 'mqtt')
    assert.equal(retyped.body.name, 'hook')

    assert.equal((await u.api('DELETE', `${u.path}/hook`)).status, 204)
    assertError(await u.api('GET', `${u.path}/hook`), 404, /endpoint crud\/hook not found/)
    assertError(await u.api('GET', `${u.path}/hook/logs`), 404)
    assertError(await u.api('DELETE', `${u.path}/hook`), 404)
    assertError(await u.api('POST', `${u.path}/hook/call`, {}), 404)
    assertError(
      await u.api('PUT', `${u.path}/hook`, httpEndpoint('hook', 'http://127.0.0.1:9/')),
      404,
      /not found/,
    )
    assert.deepEqual(
      (await u.api<EndpointView[]>('GET', u.path)).body.map((e) => e.endpoint),
      ['alerts'],
    )
  })

  await t.test('validation messages name the field', async () => {
    const u = await createUser(relay, 'validation')
    const url = 'http://127.0.0.1:9/'
    const cases: Array<[string, unknown, RegExp]> = [
      ['no config', { endpoint: 'a', type: 'http' }, /body\/config is required/],
      ['bad id', httpEndpoint('a b', url), /body\/endpoint must match pattern/],
      ['id too long', httpEndpoint('x'.repeat(65), url), /body\/endpoint must match pattern/],
      ['unknown type', { endpoint: 'a', type: 'ftp', config: {} }, /body\/type must be equal to one of/],
      ['no type', { endpoint: 'a', config: {} }, /body\/type is required/],
      ['unknown field', { ...httpEndpoint('a', url), color: 'red' }, /body\/color is not a known field/],
      [
        'unknown config field',
        httpEndpoint('a', url, { topic: 't' }),
        /body\/config\/topic is not a known field/,
      ],
      [
        'bad method',
        httpEndpoint('a', url, { method: 'FETCH' }),
        /body\/config\/method must be equal to one of/,
      ],
      ['not http', httpEndpoint('a', 'ftp://host/'), /body\/config\/url must match pattern/],
      ['bad url', httpEndpoint('a', 'http://exa mple.com/'), /body\/config\/url is not a valid URL/],
      ['bad header', httpEndpoint('a', url, { headers: { 'a b': 'x' } }), /body\/config\/headers/],
      ['header newline', httpEndpoint('a', url, { headers: { a: 'x\r\ny: z' } }), /body\/config\/headers\/a/],
      ['timeout', httpEndpoint('a', url, { timeout_ms: 0 }), /body\/config\/timeout_ms must be >= 1/],
      [
        'body on GET',
        httpEndpoint('a', url, { method: 'GET', body: '{{payload}}' }),
        /body\/config\/body cannot be used with method GET/,
      ],
      [
        'mqtt without topic',
        { endpoint: 'a', type: 'mqtt', config: { url: 'mqtt://h', qos: 0 } },
        /body\/config\/topic is required/,
      ],
      [
        'mqtt qos',
        { endpoint: 'a', type: 'mqtt', config: { url: 'mqtt://h', topic: 't', qos: 3 } },
        /body\/config\/qos must be equal to one of/,
      ],
      [
        'mqtt wildcard',
        { endpoint: 'a', type: 'mqtt', config: { url: 'mqtt://h', topic: 'a/#', qos: 0 } },
        /body\/config\/topic must match pattern/,
      ],
      [
        'mqtt url',
        { endpoint: 'a', type: 'mqtt', config: { url: 'http://h', topic: 't', qos: 0 } },
        /body\/config\/url must match pattern/,
      ],
      [
        'http field on mqtt',
        { endpoint: 'a', type: 'mqtt', config: { url: 'mqtt://h', topic: 't', qos: 0, method: 'POST' } },
        /body\/config\/method is not a known field/,
      ],
    ]
    for (const [what, body, message] of cases) {
      const res = await u.api('POST', u.path, body)
      assert.equal(res.status, 400, `${what}: ${JSON.stringify(res.body)}`)
      assertError(res, 400, message)
      assert.match(
        (res.body as { error: { code: string } }).error.code,
        /^TETHER_ERR_(VALIDATION|BAD_REQUEST)$/,
      )
    }
    assert.deepEqual((await u.api('GET', u.path)).body, [], 'nothing invalid was stored')

    assert.equal((await u.api('POST', u.path, httpEndpoint('a', url))).status, 201)
    assertError(
      await u.api('PUT', `${u.path}/a`, httpEndpoint('b', url)),
      400,
      /body\/endpoint cannot change \(a → b\)/,
    )
    assertError(
      await u.api('PUT', `${u.path}/a`, { type: 'http', config: { url } }),
      400,
      /body\/config\/method is required/,
    )
  })

  await t.test('the MQTT password is write-only', async () => {
    const u = await createUser(relay, 'secrets')
    const mqtt = (config: Record<string, unknown>) => ({
      type: 'mqtt',
      config: { url: 'mqtt://127.0.0.1:1883', topic: 't', qos: 1, username: 'relay', ...config },
    })
    const created = await u.api<EndpointView>('POST', u.path, {
      endpoint: 'broker',
      ...mqtt({ password: SECRET }),
    })
    assert.equal(created.status, 201, JSON.stringify(created.body))
    assert.equal(created.body.config.password_set, true)

    const answers = [
      created,
      await u.api('GET', u.path),
      await u.api('GET', `${u.path}/broker`),
      await u.api('PUT', `${u.path}/broker`, mqtt({ topic: 'other' })),
      await u.api('GET', `${u.path}/broker/logs`),
      await relay.api('GET', `${u.path}/broker`),
    ]
    for (const res of answers) {
      assert.ok(res.status < 300, JSON.stringify(res.body))
      assert.doesNotMatch(JSON.stringify(res.body), new RegExp(SECRET))
      assert.doesNotMatch(JSON.stringify(res.body), /"password"/)
    }
    // PUT without the password kept it: clients cannot read it back to send it again.
    const kept = (answers[3] as { body: EndpointView }).body
    assert.equal(kept.config.password_set, true)
    assert.equal(kept.config.topic, 'other')

    // Pointing the endpoint at another broker (or user) does not take the password along.
    const moved = await u.api<EndpointView>('PUT', `${u.path}/broker`, mqtt({ url: 'mqtt://elsewhere.test' }))
    assert.equal(moved.body.config.password_set, false)
    const back = await u.api<EndpointView>('PUT', `${u.path}/broker`, mqtt({ password: SECRET }))
    assert.equal(back.body.config.password_set, true)
    const cleared = await u.api<EndpointView>('PUT', `${u.path}/broker`, mqtt({ password: '' }))
    assert.equal(cleared.body.config.password_set, false)
  })

  await t.test('another user sees none of it; the admin sees all', async () => {
    const alice = await createUser(relay, 'alice')
    const bob = await createUser(relay, 'bob')
    const created = await alice.api('POST', alice.path, httpEndpoint('private', 'http://127.0.0.1:9/'))
    assert.equal(created.status, 201)
    const one = `${alice.path}/private`
    const routes: Array<[string, string, unknown?]> = [
      ['GET', alice.path],
      ['POST', alice.path, httpEndpoint('intruder', 'http://127.0.0.1:9/')],
      ['GET', one],
      ['PUT', one, httpEndpoint('private', 'http://evil.test/')],
      ['DELETE', one],
      ['POST', `${one}/call`, { x: 1 }],
      ['GET', `${one}/logs`],
    ]
    for (const [method, path, body] of routes) {
      const res = await bob.api(method, path, body)
      assert.ok(
        [403, 404].includes(res.status),
        `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`,
      )
      assertError(res, res.status)
    }
    // Nothing changed, and no call was made.
    const mine = await alice.api<EndpointView[]>('GET', alice.path)
    assert.deepEqual(
      mine.body.map((e) => [e.endpoint, e.config.url]),
      [['private', 'http://127.0.0.1:9/']],
    )
    assert.deepEqual((await alice.api<LogEntry[]>('GET', `${one}/logs`)).body, [])
    assert.deepEqual((await bob.api('GET', bob.path)).body, [])
    assert.equal((await relay.api('GET', one)).status, 200)
    assertError(await relay.api('GET', `${alice.path}/private`, undefined, ''), 401)
  })
})
