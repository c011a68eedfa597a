/** What the agent data-plane tests check at the relay end: buffers drained, and the points a bucket holds. */
import assert from 'node:assert/strict'
import type { EventEmitter } from 'node:events'
import type { Agent } from '../../agent/agent.ts'
import type { TestRelay } from './harness.ts'

export interface Point {
  ts: number
  val: Record<string, unknown>
}

/** Every point of one of admin's buckets, oldest first (export API). */
export async function bucketPoints(relay: TestRelay, bucket: string): Promise<Point[]> {
  const res = await fetch(`${relay.relay.url}/v1/users/admin/buckets/${bucket}/export?format=ndjson`, {
    headers: { authorization: `Bearer ${relay.token}` },
  })
  if (res.status === 404) return []
  assert.equal(res.status, 200, await res.clone().text())
  return (await res.text())
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Point)
}

/**
 * Resolves once `check()` holds, testing it now and after every `event` of `emitter`; the timeout only reports
 * a hang (with `what` and the last value of `describe`).
 */
export function until(
  emitter: EventEmitter,
  event: string,
  check: () => boolean,
  what: string,
  timeoutMs = 30_000,
  describe: () => unknown = () => '',
): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer)
      emitter.off(event, test)
    }
    const test = () => {
      if (!check()) return
      done()
      resolve()
    }
    const timer = setTimeout(() => {
      done()
      reject(new Error(`timed out waiting for ${what}: ${JSON.stringify(describe())}`))
    }, timeoutMs)
    emitter.on(event, test)
    test()
  })
}

/** Resolves once the agent's buffer is empty (checked at each `forwarded` event). */
export function drained(agent: Agent, timeoutMs = 30_000): Promise<void> {
  return until(
    agent.buffer,
    'forwarded',
    () => agent.buffer.stats().depth === 0,
    'the buffer to drain',
    timeoutMs,
    () => agent.buffer.stats(),
  )
}

/** Resolves once the buffer has appended `n` records in all (checked at each `appended` event). */
export function appended(agent: Agent, n: number, timeoutMs = 30_000): Promise<void> {
  return until(
    agent.buffer,
    'appended',
    () => agent.buffer.stats().appended >= n,
    `${n} appended records`,
    timeoutMs,
    () => agent.buffer.stats(),
  )
}
