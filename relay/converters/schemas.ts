/** Converter API schemas; TypeScript types derive from them. */
import { type Static, Type } from 'typebox'
import { DebugEvent } from './debug-events.ts'

export const ConverterId = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'converter id' })
export const Dialect = Type.Union(
  [Type.Literal('thingsboard'), Type.Literal('ttn'), Type.Literal('thinger')],
  {
    description:
      'thingsboard: Decoder/Encoder function bodies; ttn: Device Repository codec; thinger: module.exports.uplink/downlink',
  },
)
export const Direction = Type.Union([Type.Literal('uplink'), Type.Literal('downlink')])
export const ConverterFunctionName = Type.Union(
  ['Decoder', 'Encoder', 'decodeUplink', 'encodeDownlink', 'decodeDownlink', 'uplink', 'downlink'].map((f) =>
    Type.Literal(f),
  ),
)

/** Scripts are small programs; 256 KiB fits the largest TTN Device Repository codecs with room to spare. */
export const MAX_SCRIPT_CHARS = 262_144

const fields = {
  name: Type.Optional(Type.String({ maxLength: 128 })),
  dialect: Dialect,
  direction: Direction,
  script: Type.String({ minLength: 1, maxLength: MAX_SCRIPT_CHARS }),
  debug: Type.Optional(
    Type.Boolean({ description: 'keep the last calls readable at …/events (costs memory)' }),
  ),
}

export const ConverterCreate = Type.Object({ id: ConverterId, ...fields }, { additionalProperties: false })
export type ConverterCreate = Static<typeof ConverterCreate>

export const ConverterPut = Type.Object(
  {
    id: Type.Optional(Type.String({ description: 'must be the id of the path: ids never change' })),
    ...fields,
  },
  { additionalProperties: false },
)
export type ConverterPut = Static<typeof ConverterPut>

export const ConverterView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  dialect: Dialect,
  direction: Direction,
  script: Type.String(),
  debug: Type.Boolean(),
  created_ts: Type.Integer(),
  updated_ts: Type.Integer(),
})
export type ConverterView = Static<typeof ConverterView>

/** A stored converter. */
export interface ConverterRecord extends ConverterView {
  user: string
}

export const ConverterParams = Type.Object({ user: Type.String(), converter: Type.String() })
export type ConverterParams = Static<typeof ConverterParams>
export const UserParams = Type.Object({ user: Type.String() })
export type UserParams = Static<typeof UserParams>

/** A sample input for the test tool; the payload is given in one of several forms. */
export const ConverterTestInput = Type.Object(
  {
    function: Type.Optional(ConverterFunctionName),
    payload_hex: Type.Optional(Type.String({ pattern: '^([0-9a-fA-F]{2})*$', maxLength: 2_097_152 })),
    payload_base64: Type.Optional(Type.String({ maxLength: 2_097_152 })),
    payload_text: Type.Optional(Type.String({ maxLength: 1_048_576 })),
    payload_json: Type.Optional(
      Type.Unknown({ description: 'thinger uplink: a JSON payload instead of bytes' }),
    ),
    metadata: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    fPort: Type.Optional(Type.Integer({ minimum: 0, maximum: 255 })),
    data: Type.Optional(
      Type.Unknown({ description: 'downlink input: Encoder msg, encodeDownlink data, downlink payload' }),
    ),
    msgType: Type.Optional(Type.String({ maxLength: 64 })),
    integrationMetadata: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
)
export type ConverterTestInput = Static<typeof ConverterTestInput>

export const ConverterLogLine = Type.Object({ level: Type.String(), message: Type.String() })

export const ConverterTestResult = Type.Object({
  ok: Type.Boolean(),
  function: Type.String(),
  output: Type.Optional(Type.Unknown({ description: 'byte arrays are shown as arrays of numbers' })),
  error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
  logs: Type.Array(ConverterLogLine),
  duration_ms: Type.Number(),
})
export type ConverterTestResult = Static<typeof ConverterTestResult>

export const DebugEventList = Type.Array(DebugEvent)
