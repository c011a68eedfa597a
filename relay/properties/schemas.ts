/** Device property schemas (Thinger paths and field names); TypeScript types derive from them. */
import { type Static, Type } from 'typebox'

export const PropertyId = Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$', description: 'property id' })

export const PropertyView = Type.Object({
  property: Type.String(),
  value: Type.Unknown({ description: 'any JSON value' }),
  created_ts: Type.Integer(),
  updated_ts: Type.Integer(),
})
export type PropertyView = Static<typeof PropertyView>

export const PropertyCreate = Type.Object(
  { property: PropertyId, value: Type.Unknown({ description: 'any JSON value' }) },
  { additionalProperties: false, required: ['property', 'value'] },
)
export type PropertyCreate = Static<typeof PropertyCreate>

export const PropertyValue = Type.Object(
  { value: Type.Unknown({ description: 'any JSON value' }) },
  { additionalProperties: false, required: ['value'] },
)
export type PropertyValue = Static<typeof PropertyValue>

export const PropertyParams = Type.Object({
  user: Type.String(),
  device: Type.String(),
  property: Type.String(),
})

export const PropertyDeleteMany = Type.Object(
  { properties: Type.Array(Type.String(), { minItems: 1, maxItems: 1000 }) },
  { additionalProperties: false },
)
export type PropertyDeleteMany = Static<typeof PropertyDeleteMany>
