/** Feeds agents' link traffic (bytes and IoTMP frames) into the daily device counters. */
import type { AgentHub, AgentLink } from '../hub/agent-hub.ts'
import type { DeviceTraffic } from './device-traffic.ts'

/** Samples every live link each `intervalMs` and at disconnect; returns a function that stops it. */
export function trackAgentTraffic(hub: AgentHub, traffic: DeviceTraffic, intervalMs = 5000): () => void {
  const counted = new WeakMap<AgentLink, { rx: number; tx: number; frames: number }>()
  const sample = (link: AgentLink) => {
    const s = link.session
    const before = counted.get(link) ?? { rx: 0, tx: 0, frames: 0 }
    const now = { rx: s.rxBytes, tx: s.txBytes, frames: s.rxFrames + s.txFrames }
    if (now.frames === before.frames) return
    counted.set(link, now)
    traffic.record(link.user, link.device, {
      rx: now.rx - before.rx,
      tx: now.tx - before.tx,
      messages: now.frames - before.frames,
    })
  }
  const timer = setInterval(() => {
    for (const link of hub.links()) sample(link)
  }, intervalMs)
  timer.unref()
  hub.on('disconnected', sample)
  return () => {
    clearInterval(timer)
    hub.off('disconnected', sample)
    for (const link of hub.links()) sample(link)
  }
}
