/** Asset API schemas: assets are the non-device entities converters report on (buildings, fields, lines…). */
import { type Static, Type } from 'typebox'

export const AssetView = Type.Object({
  asset: Type.String(),
  name: Type.String(),
  type: Type.String(),
  attributes: Type.Record(Type.String(), Type.Unknown()),
  bucket: Type.String({ description: "the bucket that holds the asset's telemetry" }),
  integration: Type.Optional(Type.String({ description: 'the integration that created it' })),
  created_ts: Type.Integer(),
  updated_ts: Type.Integer(),
})
export type AssetView = Static<typeof AssetView>

/** A stored asset. */
export interface AssetRecord extends AssetView {
  user: string
}

export const AssetParams = Type.Object({ user: Type.String(), asset: Type.String() })
export type AssetParams = Static<typeof AssetParams>
