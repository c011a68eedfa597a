import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ReceiveWindow, SendCredit } from '../../protocol/credit-window.ts'
import { mulberry32 } from './prng.ts'

/** One step on a ReceiveWindow: bytes arriving (→ within credit?) or a grant check (buffered → grant). */
type Step = { receive: number; ok: boolean } | { buffered: number; grant: number }

function run(windowBytes: number, steps: Step[]): void {
  const w = new ReceiveWindow(windowBytes)
  steps.forEach((step, i) => {
    if ('receive' in step)
      assert.equal(w.receive(step.receive), step.ok, `step ${i}: receive(${step.receive})`)
    else assert.equal(w.grantFor(step.buffered), step.grant, `step ${i}: grantFor(${step.buffered})`)
  })
}

describe('ReceiveWindow', () => {
  const cases: Array<{ name: string; window: number; steps: Step[] }> = [
    { name: 'grants nothing before anything arrived', window: 1024, steps: [{ buffered: 0, grant: 0 }] },
    {
      name: 'grants nothing while every received byte is still buffered',
      window: 1024,
      steps: [
        { receive: 1024, ok: true },
        { buffered: 1024, grant: 0 },
      ],
    },
    {
      name: 'grants only consumed bytes, once a quarter window is consumed',
      window: 1024,
      steps: [
        { receive: 1024, ok: true },
        { buffered: 1024 - 255, grant: 0 },
        { buffered: 1024 - 256, grant: 256 },
        { buffered: 1024 - 256, grant: 0 },
      ],
    },
    {
      name: 'batches small consumptions into one grant per quarter window',
      window: 1000,
      steps: [
        { receive: 600, ok: true },
        { buffered: 500, grant: 0 },
        { buffered: 400, grant: 0 },
        { buffered: 351, grant: 0 },
        { buffered: 350, grant: 250 },
        { buffered: 100, grant: 250 },
        { buffered: 0, grant: 0 },
        { receive: 150, ok: true },
        { buffered: 0, grant: 250 },
      ],
    },
    {
      name: 'accepts exactly the window and detects a one-byte overrun',
      window: 1024,
      steps: [
        { receive: 1024, ok: true },
        { receive: 1, ok: false },
      ],
    },
    {
      name: 'counts an overrun across many small chunks',
      window: 1024,
      steps: [...Array.from({ length: 8 }, () => ({ receive: 128, ok: true })), { receive: 1, ok: false }],
    },
    {
      name: 'a zero-byte chunk never overruns',
      window: 1024,
      steps: [
        { receive: 1024, ok: true },
        { receive: 0, ok: true },
      ],
    },
    {
      name: 'a grant extends what the peer may send by exactly the grant',
      window: 1024,
      steps: [
        { receive: 1024, ok: true },
        { buffered: 768, grant: 256 },
        { receive: 256, ok: true },
        { receive: 1, ok: false },
      ],
    },
    {
      name: 'a full grant reopens the whole window',
      window: 1024,
      steps: [
        { receive: 1024, ok: true },
        { buffered: 0, grant: 1024 },
        { receive: 1024, ok: true },
        { receive: 1, ok: false },
      ],
    },
    {
      name: 'a window under 4 bytes still grants (threshold is at least 1 byte)',
      window: 3,
      steps: [
        { receive: 3, ok: true },
        { buffered: 3, grant: 0 },
        { buffered: 2, grant: 1 },
        { buffered: 0, grant: 2 },
      ],
    },
  ]
  for (const c of cases) it(c.name, () => run(c.window, c.steps))

  it('exposes the window it was built with', () => {
    assert.equal(new ReceiveWindow(4096).windowBytes, 4096)
  })
})

describe('ReceiveWindow.grow (auto-tuning)', () => {
  it('doubles when the peer spent its whole initial credit and the consumer kept up', () => {
    const w = new ReceiveWindow(1024, 4096)
    assert.equal(w.receive(1024), true)
    assert.equal(w.grow(0), 1024, 'the extra credit is granted at once')
    assert.equal(w.currentWindow, 2048)
    assert.equal(w.receive(1024), true, 'the extra credit may be spent')
    assert.equal(w.receive(1), false, 'and no more than that')
  })

  it('recognises a stall at the credit a later grant left the peer with', () => {
    const w = new ReceiveWindow(1024, 8192)
    w.receive(512)
    assert.equal(w.grow(0), 0, 'the peer still has credit: no stall')
    assert.equal(w.grantFor(0), 512) // the peer may now go up to 1536
    w.receive(512) // reaches the initial 1024: the peer had credit from the grant, but it may not have arrived
    assert.equal(w.grow(0), 1024, 'ending exactly at a credit boundary is a stall')
    w.receive(1000)
    assert.equal(w.grow(0), 0, 'in the middle of the credit: no stall')
  })

  it('counts credit left below one datagram as spent for datagram senders', () => {
    const w = new ReceiveWindow(1000, 4000)
    w.receive(300, 300)
    w.receive(300, 300)
    assert.equal(w.grow(0), 0, '400 bytes of credit left: room for another datagram')
    w.receive(300, 300)
    assert.equal(w.grow(0), 1000, '100 bytes left cannot carry a 300-byte datagram: the peer waits')
  })

  it('does not grow for a consumer that falls behind', () => {
    const w = new ReceiveWindow(1024, 4096)
    w.receive(1024)
    assert.equal(w.grow(600), 0, 'more than half a window still buffered')
    assert.equal(w.currentWindow, 1024)
  })

  it('stops at the maximum, and never grows without one', () => {
    const w = new ReceiveWindow(1024, 3000)
    w.receive(1024)
    assert.equal(w.grow(0), 1024)
    w.receive(1024)
    assert.equal(w.grow(0), 952, 'capped at 3000')
    w.receive(952)
    assert.equal(w.grow(0), 0)
    const fixed = new ReceiveWindow(1024)
    fixed.receive(1024)
    assert.equal(fixed.grow(0), 0)
  })
})

describe('SendCredit', () => {
  const cases: Array<{
    name: string
    initial: number
    ops: Array<['take' | 'grant', number, number?]>
    left: number
  }> = [
    { name: 'starts with the initial credit', initial: 100, ops: [], left: 100 },
    { name: 'takes what is wanted when available', initial: 100, ops: [['take', 40, 40]], left: 60 },
    { name: 'takes at most what is available', initial: 100, ops: [['take', 150, 100]], left: 0 },
    {
      name: 'takes nothing once exhausted',
      initial: 100,
      ops: [
        ['take', 100, 100],
        ['take', 1, 0],
      ],
      left: 0,
    },
    { name: 'taking zero takes zero', initial: 100, ops: [['take', 0, 0]], left: 100 },
    {
      name: 'a grant adds to what is left',
      initial: 100,
      ops: [
        ['take', 100, 100],
        ['grant', 30],
        ['take', 50, 30],
      ],
      left: 0,
    },
    {
      name: 'zero initial credit waits for a grant',
      initial: 0,
      ops: [
        ['take', 10, 0],
        ['grant', 10],
      ],
      left: 10,
    },
  ]
  for (const c of cases) {
    it(c.name, () => {
      const credit = new SendCredit(c.initial)
      for (const [op, n, taken] of c.ops) {
        if (op === 'take') assert.equal(credit.take(n), taken)
        else credit.grant(n)
      }
      assert.equal(credit.available, c.left)
    })
  }
})

describe('SendCredit and ReceiveWindow together', () => {
  it('a sender that respects its credit never overruns, and every consumed byte is granted back', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const random = mulberry32(seed)
      const windowBytes = 1024 + Math.floor(random() * 64 * 1024)
      const threshold = Math.floor(windowBytes / 4)
      const credit = new SendCredit(windowBytes)
      const window = new ReceiveWindow(windowBytes)
      let buffered = 0
      let consumed = 0
      let granted = 0
      for (let step = 0; step < 2000; step++) {
        const sent = credit.take(Math.floor(random() * windowBytes))
        assert.ok(window.receive(sent), `seed ${seed} step ${step}: overrun`)
        buffered += sent
        const eaten = Math.floor(random() * (buffered + 1))
        buffered -= eaten
        consumed += eaten
        const grant = window.grantFor(buffered)
        credit.grant(grant)
        granted += grant
        assert.ok(
          grant === 0 || grant >= threshold,
          `seed ${seed} step ${step}: grant ${grant} under a quarter`,
        )
        assert.ok(consumed - granted < threshold, `seed ${seed} step ${step}: ungranted consumption`)
        // Conservation: credit left + bytes in the receiver + consumed-but-not-granted == the window.
        assert.equal(credit.available + buffered + (consumed - granted), windowBytes)
      }
    }
  })
})
