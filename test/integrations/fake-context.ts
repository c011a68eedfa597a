/**
 * A TransportContext for transport tests: records every uplink and answers with the devices named by the
 * payload (text `device:rest` → [device]), standing in for the converter pipeline, which is tested elsewhere.
 */
import { EventEmitter, once } from 'node:events'
import { type Logger, pino } from 'pino'
import type { TransportContext, UplinkMessage, UplinkOutcome } from '../../integrations/transport.ts'

export interface FakeContext extends TransportContext {
  messages: UplinkMessage[]
  logs: Array<Record<string, unknown>>
  /** The next recorded message not yet taken by next() (waits for it). */
  next(): Promise<UplinkMessage>
  /** Payloads of the next `n` messages, as text. */
  texts(n: number): Promise<string[]>
  /** Resolves with the first log line (present or future) whose msg matches. */
  logged(pattern: RegExp): Promise<Record<string, unknown>>
  /** Resolves once every uplink so far has answered and the transport has taken the answers in. */
  idle(): Promise<void>
  /** When set, each uplink waits for this (after being recorded) before it answers. */
  hold?: () => Promise<void>
  /** When set, uplinks reject with this error (a failing converter). */
  fail?: Error
}

/** The payload of a message as text. */
export function text(message: UplinkMessage): string {
  return Buffer.from(message.payload as Uint8Array).toString()
}

/** A recording context; `device:rest` payloads report `device`, others no device. */
export function fakeContext(): FakeContext {
  const events = new EventEmitter()
  const logs: Array<Record<string, unknown>> = []
  const log: Logger = pino(
    { level: 'debug' },
    {
      write(chunk: string) {
        const line = JSON.parse(chunk) as Record<string, unknown>
        logs.push(line)
        events.emit('log', line)
      },
    },
  )
  let taken = 0
  const answers: Array<Promise<unknown>> = []
  const answer = async (message: UplinkMessage): Promise<UplinkOutcome> => {
    if (ctx.hold) await ctx.hold()
    if (ctx.fail) throw ctx.fail
    const match = /^([\w-]+):/.exec(text(message))
    return { devices: match ? [match[1]] : [] }
  }
  const ctx: FakeContext = {
    messages: [],
    logs,
    log,
    uplink(message: UplinkMessage): Promise<UplinkOutcome> {
      ctx.messages.push(message)
      events.emit('message')
      const outcome = answer(message)
      answers.push(outcome.catch(() => {}))
      return outcome
    },
    async idle() {
      await Promise.all(answers)
      // The transport reacts in its own promise callbacks: let them run (a flush of queued callbacks, no timer).
      await new Promise((resolve) => setImmediate(resolve))
    },
    async next() {
      while (ctx.messages.length <= taken) await once(events, 'message')
      return ctx.messages[taken++]
    },
    async texts(n: number) {
      const out: string[] = []
      for (let i = 0; i < n; i++) out.push(text(await ctx.next()))
      return out
    },
    logged(pattern: RegExp) {
      const hit = logs.find((l) => pattern.test(String(l.msg)))
      if (hit) return Promise.resolve(hit)
      return new Promise((resolve) => {
        const listener = (line: Record<string, unknown>) => {
          if (!pattern.test(String(line.msg))) return
          events.off('log', listener)
          resolve(line)
        }
        events.on('log', listener)
      })
    },
  }
  return ctx
}

/** A promise with its resolve function, to hold an uplink until the test releases it. */
export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void
  const promise = new Promise<void>((r) => {
    resolve = r
  })
  return { promise, resolve }
}
