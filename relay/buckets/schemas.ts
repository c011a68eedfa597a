/** Bucket API schemas (Thinger-compatible paths and field names); TypeScript types derive from them. */
import { type Static, Type } from 'typebox'
import { Username } from '../auth/schemas.ts'

/** Bucket ids never contain `!` or `/`, so they are safe inside storage keys. */
export const BUCKET_ID_PATTERN = '^[A-Za-z0-9_-]{1,64}$'
export const BucketId = Type.String({ pattern: BUCKET_ID_PATTERN, description: 'bucket id' })

/** The largest timestamp a point may carry (ms since epoch): exact in a JS number. */
export const MAX_TS = Number.MAX_SAFE_INTEGER
/** Points one write may carry (an HTTP body is also capped by fastify's 1 MiB body limit). */
export const MAX_POINTS_PER_WRITE = 10_000
/** Points one read answers at most. */
export const MAX_READ_ITEMS = 1000

const Timestamp = (description: string) => Type.Integer({ minimum: 0, maximum: MAX_TS, description })

export const BucketSource = Type.Union(
  [Type.Literal('device'), Type.Literal('callback'), Type.Literal('api'), Type.Literal('agent')],
  { description: 'what feeds the bucket' },
)

export const BucketConfig = Type.Object(
  {
    source: BucketSource,
    device: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'feeding device' })),
  },
  { additionalProperties: false },
)
export type BucketConfig = Static<typeof BucketConfig>

const RetentionDays = Type.Integer({ minimum: 1, maximum: 36500, description: 'points older than this go' })

export const BucketCreate = Type.Object(
  {
    bucket: BucketId,
    name: Type.Optional(Type.String({ maxLength: 128, description: 'defaults to the id' })),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    enabled: Type.Optional(Type.Boolean({ description: 'a disabled bucket refuses writes (default true)' })),
    config: Type.Optional(BucketConfig),
    retention_days: Type.Optional(RetentionDays),
  },
  { additionalProperties: false },
)
export type BucketCreate = Static<typeof BucketCreate>

/** `PUT …/buckets/{bucket}`: absent fields are kept; `retention_days: null` keeps points forever. */
export const BucketUpdate = Type.Object(
  {
    bucket: Type.Optional(Type.String({ description: 'must be the id of the path: ids never change' })),
    name: Type.Optional(Type.String({ maxLength: 128 })),
    description: Type.Optional(Type.String({ maxLength: 1024 })),
    enabled: Type.Optional(Type.Boolean()),
    config: Type.Optional(BucketConfig),
    retention_days: Type.Optional(Type.Union([RetentionDays, Type.Null()])),
  },
  { additionalProperties: false },
)
export type BucketUpdate = Static<typeof BucketUpdate>

export const BucketView = Type.Object({
  bucket: Type.String(),
  name: Type.String(),
  description: Type.String(),
  enabled: Type.Boolean(),
  config: BucketConfig,
  retention_days: Type.Optional(Type.Integer({ description: 'absent: points are kept forever' })),
  created_ts: Type.Integer(),
})
export type BucketView = Static<typeof BucketView>

/** A stored bucket. */
export interface BucketRecord extends BucketView {
  user: string
  /** Set while its points are being deleted: the bucket no longer exists for the API. */
  deleting?: boolean
}

export const UserParams = Type.Object({ user: Username })
export const BucketParams = Type.Object({ user: Username, bucket: BucketId })

/** `?authorization=<token>` is the Thinger way to pass a token, so every query schema accepts it. */
const authorization = Type.Optional(Type.String({ description: 'access token, instead of the header' }))

export const AuthQuery = Type.Object({ authorization }, { additionalProperties: false })

export const ReadQuery = Type.Object(
  {
    items: Type.Optional(
      Type.Integer({ minimum: 1, maximum: MAX_READ_ITEMS, default: 100, description: 'points per page' }),
    ),
    min_ts: Type.Optional(Timestamp('oldest ts, inclusive')),
    max_ts: Type.Optional(Timestamp('newest ts, inclusive')),
    sort: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')], { default: 'desc' })),
    authorization,
  },
  { additionalProperties: false },
)
export type ReadQuery = Static<typeof ReadQuery>

export const ExportFormat = Type.Union([Type.Literal('csv'), Type.Literal('json'), Type.Literal('ndjson')])
export type ExportFormat = Static<typeof ExportFormat>

export const ExportQuery = Type.Object(
  {
    format: Type.Optional(
      Type.Union([Type.Literal('csv'), Type.Literal('json'), Type.Literal('ndjson')], { default: 'json' }),
    ),
    min_ts: Type.Optional(Timestamp('oldest ts, inclusive')),
    max_ts: Type.Optional(Timestamp('newest ts, inclusive')),
    authorization,
  },
  { additionalProperties: false },
)
export type ExportQuery = Static<typeof ExportQuery>

/** One point of a write: any JSON object; its own `ts` (ms since epoch) is checked by the service. */
const PointIn = Type.Object({}, { additionalProperties: true, description: 'a point; optional ts' })

export const WriteBody = Type.Union([PointIn, Type.Array(PointIn, { maxItems: MAX_POINTS_PER_WRITE })], {
  description: 'one point or an array of points',
})

export const WriteResult = Type.Object({ written: Type.Integer({ description: 'points stored' }) })

export const BucketPoint = Type.Object({ ts: Type.Integer(), val: Type.Unknown() })
export type BucketPoint = Static<typeof BucketPoint>
