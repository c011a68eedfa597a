/** Joins two duplex streams both ways, preserving half-close, and tears both down together. */
import type { Duplex } from 'node:stream'

/**
 * Pipes `a` → `b` and `b` → `a`. An `end` on one side ends the other's write side only (half-close);
 * an error or close on either side destroys both. `onDone` runs once, with the first error if any.
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
  a.pipe(b)
  b.pipe(a)
  a.once('error', finish)
  b.once('error', finish)
  a.once('close', () => finish())
  b.once('close', () => finish())
}
