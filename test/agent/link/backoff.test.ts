import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Backoff, type BackoffOptions } from '../../../agent/link/backoff.ts'

/** A hand-driven clock, so uptime can be simulated without real timers. */
function fakeClock(start = 1_000_000) {
  let t = start
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms
    },
  }
}

function delays(backoff: Backoff, n: number): number[] {
  return Array.from({ length: n }, () => backoff.next())
}

describe('Backoff delays', () => {
  const cases: Array<{ name: string; opts: BackoffOptions; expected: number[] }> = [
    {
      name: 'random≈1 doubles from 500 ms and caps at 60 s',
      opts: { random: () => 0.999999 },
      expected: [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000],
    },
    { name: 'random=0 gives no delay', opts: { random: () => 0 }, expected: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0] },
    {
      name: 'random=0.5 is half the exponential ceiling',
      opts: { random: () => 0.5 },
      expected: [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000],
    },
    {
      name: 'custom base and cap',
      opts: { baseMs: 100, capMs: 1000, random: () => 0.999999 },
      expected: [100, 200, 400, 800, 1000, 1000],
    },
    {
      name: 'base equal to cap is constant',
      opts: { baseMs: 50, capMs: 50, random: () => 1 },
      expected: [50, 50, 50],
    },
  ]
  for (const { name, opts, expected } of cases) {
    it(name, () => {
      assert.deepEqual(delays(new Backoff(opts), expected.length), expected)
    })
  }

  it('full jitter stays within [0, min(cap, base·2^attempt)] for any random value', () => {
    const randoms = [0, 1e-9, 0.1, 0.25, 0.333, 0.5, 0.75, 0.9, 0.999999]
    for (const r of randoms) {
      const backoff = new Backoff({ random: () => r })
      for (let attempt = 0; attempt < 40; attempt++) {
        const ceiling = Math.min(60_000, 500 * 2 ** attempt)
        const d = backoff.next()
        assert.ok(Number.isInteger(d), `integer delay, got ${d}`)
        assert.ok(d >= 0 && d <= ceiling, `attempt ${attempt}, random ${r}: ${d} outside [0, ${ceiling}]`)
        assert.ok(
          Math.abs(d - r * ceiling) <= 0.5,
          `attempt ${attempt}, random ${r}: ${d} is not ${r}·${ceiling}`,
        )
      }
    }
  })

  it('clamps a misbehaving random source into [0, ceiling]', () => {
    for (const [r, expected] of [
      [-1, 0],
      [2, 500],
      [Number.NaN, 0],
    ] as const) {
      assert.equal(new Backoff({ random: () => r }).next(), expected, `random ${r}`)
    }
  })

  it('counts attempts', () => {
    const backoff = new Backoff({ random: () => 0 })
    assert.equal(backoff.attempt, 0)
    delays(backoff, 3)
    assert.equal(backoff.attempt, 3)
    backoff.reset()
    assert.equal(backoff.attempt, 0)
  })

  it('never overflows: attempt 2000 is still a finite delay ≤ cap', () => {
    for (const opts of [{ random: () => 0.999999 }, { random: () => 1 }, { baseMs: 0, random: () => 1 }]) {
      const backoff = new Backoff(opts)
      const all = delays(backoff, 2001)
      assert.equal(backoff.attempt, 2001)
      for (const d of all) assert.ok(Number.isFinite(d) && d >= 0 && d <= 60_000, `bad delay ${d}`)
      assert.equal(all[2000], opts.baseMs === 0 ? 0 : 60_000)
    }
  })

  it('rejects nonsensical options', () => {
    for (const opts of [
      { baseMs: -1 },
      { baseMs: Number.NaN },
      { capMs: Number.POSITIVE_INFINITY },
      { baseMs: 1000, capMs: 999 },
      { resetAfterMs: -5 },
    ]) {
      assert.throws(() => new Backoff(opts), RangeError, JSON.stringify(opts))
    }
  })
})

describe('Backoff reset after a stable link', () => {
  type Case = { name: string; upMs: number | undefined; expectedAttempt: number; nextDelay: number }
  const cases: Case[] = [
    { name: 'up exactly 30 s resets', upMs: 30_000, expectedAttempt: 0, nextDelay: 500 },
    { name: 'up 10 min resets', upMs: 600_000, expectedAttempt: 0, nextDelay: 500 },
    { name: 'up 29 s keeps backing off', upMs: 29_000, expectedAttempt: 5, nextDelay: 16_000 },
    { name: 'up 29.999 s keeps backing off', upMs: 29_999, expectedAttempt: 5, nextDelay: 16_000 },
    { name: 'never connected keeps backing off', upMs: undefined, expectedAttempt: 5, nextDelay: 16_000 },
  ]
  for (const { name, upMs, expectedAttempt, nextDelay } of cases) {
    it(name, () => {
      const clock = fakeClock()
      const backoff = new Backoff({ random: () => 0.999999, now: clock.now })
      delays(backoff, 5)
      if (upMs !== undefined) {
        backoff.connected()
        clock.advance(upMs)
      }
      backoff.disconnected()
      assert.equal(backoff.attempt, expectedAttempt)
      assert.equal(backoff.next(), nextDelay)
    })
  }

  it('a short-lived link after a long one does not reset again', () => {
    const clock = fakeClock()
    const backoff = new Backoff({ random: () => 0.999999, now: clock.now })
    delays(backoff, 4)
    backoff.connected()
    clock.advance(45_000)
    backoff.disconnected()
    assert.deepEqual(delays(backoff, 3), [500, 1000, 2000])
    backoff.connected()
    clock.advance(1_000)
    backoff.disconnected()
    assert.equal(backoff.attempt, 3)
    // Uptime is measured from the latest connect, and a second disconnected() without a connect is not uptime.
    clock.advance(60_000)
    backoff.disconnected()
    assert.equal(backoff.attempt, 3)
  })

  it('honours a custom resetAfterMs', () => {
    const clock = fakeClock()
    const backoff = new Backoff({ resetAfterMs: 5_000, random: () => 0, now: clock.now })
    delays(backoff, 2)
    backoff.connected()
    clock.advance(5_000)
    backoff.disconnected()
    assert.equal(backoff.attempt, 0)
  })
})
