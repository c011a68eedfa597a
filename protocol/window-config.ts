/** The flow-control settings relay and agent both take, as typebox fields of their configuration schemas. */
import { Type } from 'typebox'
import { DEFAULT_MAX_WINDOW_BYTES, DEFAULT_WINDOW_BYTES } from './messages.ts'

const bounds = { minimum: 16 * 1024, maximum: 16 * 1024 * 1024 }

/** `windowBytes` and `maxWindowBytes`; `peer` names who is granted the window, for the descriptions. */
export function windowConfigFields(peer: string) {
  return {
    windowBytes: Type.Integer({
      ...bounds,
      default: DEFAULT_WINDOW_BYTES,
      description: `per-stream receive window granted to ${peer} at first`,
    }),
    maxWindowBytes: Type.Integer({
      ...bounds,
      default: DEFAULT_MAX_WINDOW_BYTES,
      description: 'a stream whose consumer keeps up grows its window up to this (memory bound per stream)',
    }),
  }
}
