/** Joins two duplex streams both ways, preserving half-close, and tears both down together. */
import type { Duplex } from 'node:stream'

/** True when a stream closed after both of its directions finished cleanly (FIN both ways, no error). */
function closedGracefully(s: Duplex): boolean {
  return s.readableEnded && s.writableFinished && !s.errored
}

/**
 * Pipes `a` → `b` and `b` → `a`. An `end` on one side ends the other's write side only (half-close).
 * An error, or a close before both directions finished, destroys both. A side that closes cleanly leaves the
 * other to flush what it still holds (a slow tunnel reader must not lose the tail of the data) and close on its
 * own. `onDone` runs once both are closed, or at the first abnormal close, with the first error if any.
 */
export function splice(a: Duplex, b: Duplex, onDone?: (err?: Error) => void): void {
  let done = false
  const finish = (err?: Error) => {
    if (done) return
    done = true
    if (!a.destroyed) a.destroy(err)
    if (!b.destroyed) b.destroy(err)
    onDone?.(err)
  }
  const onClose = (closed: Duplex, other: Duplex) => () => {
    // `other` may still hold writes for its peer; once its read side has ended too, it closes by itself when flushed.
    if (!closedGracefully(closed) || !other.readableEnded || other.closed) finish()
  }
  a.pipe(b)
  b.pipe(a)
  a.once('error', finish)
  b.once('error', finish)
  a.once('close', onClose(a, b))
  b.once('close', onClose(b, a))
}
