/** The three converter dialects, and their entry points by direction. */
import { ConverterError } from '../errors.ts'
import type { ConverterFunction, Dialect, Direction } from '../types.ts'
import type { DialectSpec } from './dialect.ts'
import { thinger } from './thinger.ts'
import { thingsboard } from './thingsboard.ts'
import { ttn } from './ttn.ts'

export { type DialectSpec, SCRIPT_FILENAME } from './dialect.ts'

export const DIALECTS: Readonly<Record<Dialect, DialectSpec>> = { thingsboard, ttn, thinger }

/** The spec of a dialect; throws ConverterError('input') for an unknown name. */
export function dialectSpec(dialect: Dialect): DialectSpec {
  const spec = Object.hasOwn(DIALECTS, dialect) ? DIALECTS[dialect] : undefined
  if (!spec) throw new ConverterError('input', `unknown dialect ${JSON.stringify(dialect)}`)
  return spec
}

/** The function a dialect calls for a direction: Decoder/Encoder, decodeUplink/encodeDownlink, uplink/downlink. */
export function defaultFunction(dialect: Dialect, direction: Direction): ConverterFunction {
  const spec = dialectSpec(dialect)
  return direction === 'uplink' ? spec.uplink : spec.downlink
}

/** Every entry point a dialect knows. */
export function functionsOf(dialect: Dialect): readonly ConverterFunction[] {
  return dialectSpec(dialect).functions
}

/** Checks that `fn` is one of the dialect's entry points; throws ConverterError('input'). */
export function checkFunction(dialect: Dialect, fn: ConverterFunction): void {
  const known = functionsOf(dialect)
  if (!known.includes(fn)) {
    throw new ConverterError(
      'input',
      `${dialect} converters have no function ${fn} (use ${known.join(', ')})`,
    )
  }
}
