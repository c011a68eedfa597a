/**
 * Hostile converters behind real integrations: each abuse is an error event (422 to the sender), and while one
 * spins, other integrations keep answering.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startTestRelay } from '../../e2e/harness.ts'
import { converter, integration } from './helpers.ts'

const NORMAL = `return { deviceName: 'ok', deviceType: 'probe', telemetry: { n: payload.length } };`

const ABUSES: Record<string, { script: string; error: RegExp }> = {
  loop: { script: 'while (true) {}', error: /timeout/ },
  memory: { script: 'var a = []; while (true) a.push(new Array(1e6).fill(1)); return {};', error: /memory/ },
  escape: {
    script:
      "var p = this.constructor.constructor('return process')(); return { deviceName: 'x', telemetry: { pid: p.pid } };",
    error: /script/,
  },
  require: { script: "var fs = require('fs'); return {};", error: /script: .*require/ },
  pollute: {
    script: "Object.prototype.polluted = 1; if (({}).polluted) throw new Error('polluted'); return null;",
    error: /./,
  },
}

test('abusive converters fail as error events; the relay keeps serving other integrations meanwhile', {
  timeout: 60_000,
}, async (t) => {
  // A long CPU limit makes "meanwhile" unmistakable: the loop runs for 3 s.
  const relay = await startTestRelay(t, { converterTimeoutMs: 3000 })
  await converter(relay, 'normal', 'thingsboard', 'uplink', NORMAL)
  const normal = await integration(relay, { id: 'normal', type: 'http', uplinkConverter: 'normal' })
  const urls: Record<string, string> = {}
  for (const [id, abuse] of Object.entries(ABUSES)) {
    await converter(relay, id, 'thingsboard', 'uplink', abuse.script)
    const view = await integration(relay, { id, type: 'http', uplinkConverter: id, debug: true })
    urls[id] = `${relay.relay.url}/api/v1/integrations/http/${view.http?.routingKey}`
  }
  const normalUrl = `${relay.relay.url}/api/v1/integrations/http/${normal.http?.routingKey}`

  let loopDone = false
  const loop = fetch(urls.loop as string, { method: 'POST', body: 'x' }).then(async (res) => {
    loopDone = true
    return { status: res.status, body: (await res.json()) as { error: { message: string } } }
  })
  // While the loop spins in its isolate, 20 uplinks of another integration are converted and stored.
  for (let i = 0; i < 20; i++) {
    const res = await fetch(normalUrl, { method: 'POST', body: 'abc' })
    assert.equal(res.status, 204, await res.text())
  }
  assert.equal(loopDone, false, 'the normal uplinks finished while the infinite loop was still running')
  const looped = await loop
  assert.equal(looped.status, 422)
  assert.match(looped.body.error.message, ABUSES.loop?.error as RegExp)

  for (const [id, abuse] of Object.entries(ABUSES)) {
    if (id === 'loop') continue
    const res = await fetch(urls[id] as string, { method: 'POST', body: 'x' })
    const body = res.status === 204 ? undefined : ((await res.json()) as { error: { message: string } })
    if (id === 'pollute') {
      // Frozen built-ins: the assignment cannot pollute (a strict-mode TypeError, or silently ignored).
      assert.ok(res.status === 204 || res.status === 422, `pollute answered ${res.status}`)
      const again = await fetch(urls[id] as string, { method: 'POST', body: 'x' })
      assert.notEqual(again.status, 500)
      continue
    }
    assert.equal(res.status, 422, `${id}: ${JSON.stringify(body)}`)
    assert.match(body?.error.message ?? '', abuse.error, id)
    const events = (
      await relay.api<Array<{ error?: string }>>('GET', `/v1/users/admin/integrations/${id}/events`)
    ).body
    assert.match(events.at(-1)?.error ?? '', abuse.error, `${id} event`)
  }
  // The host process was never reached: no point holds a pid.
  assert.equal((await relay.api('GET', '/v1/users/admin/buckets/x')).status, 404)
  // And after all of it, the normal integration still answers.
  assert.equal((await fetch(normalUrl, { method: 'POST', body: 'abc' })).status, 204)
})
