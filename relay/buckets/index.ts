/**
 * Buckets capability: time series of JSON points per user, on Thinger-compatible paths
 * (`/v1/users/{user}/buckets…`): CRUD, writes, paged reads and streamed exports. The work is done by
 * `BucketService`, which other capabilities call in-process.
 */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { ErrorResponse } from '../auth/schemas.ts'
import type { BucketService } from './bucket-service.ts'
import {
  AuthQuery,
  BucketCreate,
  BucketParams,
  BucketPoint,
  BucketUpdate,
  BucketView,
  ExportQuery,
  ReadQuery,
  UserParams,
  WriteBody,
  WriteResult,
} from './schemas.ts'

export type { BucketExport, BucketServiceOptions, WriteOptions } from './bucket-service.ts'
export { BucketService } from './bucket-service.ts'
export { type BucketsStore, levelBucketsStore } from './buckets-store.ts'
export { levelPointsStore, type PointsStore } from './points-store.ts'

export interface BucketsOptions {
  service: BucketService
}

type Params = { user: string; bucket: string }

/** Registers `/v1/users/:user/buckets…`; every route is for the bucket's owner or an admin. */
export async function bucketsPlugin(app: FastifyInstance, { service }: BucketsOptions): Promise<void> {
  const owner = { onRequest: app.requireOwner }
  const errors = { '4xx': ErrorResponse }

  // Child hooks run before the relay's own onClose, which closes the store: writes finish first.
  app.addHook('onClose', () => service.close())

  app.get(
    '/v1/users/:user/buckets',
    {
      ...owner,
      schema: {
        params: UserParams,
        querystring: AuthQuery,
        response: { 200: Type.Array(BucketView), ...errors },
      },
    },
    async (req) => service.list((req.params as { user: string }).user),
  )

  app.post(
    '/v1/users/:user/buckets',
    {
      ...owner,
      schema: {
        params: UserParams,
        querystring: AuthQuery,
        body: BucketCreate,
        response: { 201: BucketView, ...errors },
      },
    },
    async (req, reply) => {
      const view = await service.create((req.params as { user: string }).user, req.body as BucketCreate)
      reply.code(201)
      return view
    },
  )

  app.get(
    '/v1/users/:user/buckets/:bucket',
    {
      ...owner,
      schema: { params: BucketParams, querystring: AuthQuery, response: { 200: BucketView, ...errors } },
    },
    async (req) => {
      const { user, bucket } = req.params as Params
      return service.get(user, bucket)
    },
  )

  app.put(
    '/v1/users/:user/buckets/:bucket',
    {
      ...owner,
      schema: {
        params: BucketParams,
        querystring: AuthQuery,
        body: BucketUpdate,
        response: { 200: BucketView, ...errors },
      },
    },
    async (req) => {
      const { user, bucket } = req.params as Params
      return service.update(user, bucket, req.body as BucketUpdate)
    },
  )

  app.delete(
    '/v1/users/:user/buckets/:bucket',
    { ...owner, schema: { params: BucketParams, querystring: AuthQuery, response: errors } },
    async (req, reply) => {
      const { user, bucket } = req.params as Params
      await service.delete(user, bucket)
      reply.code(204)
    },
  )

  app.post(
    '/v1/users/:user/buckets/:bucket/data',
    {
      ...owner,
      schema: {
        params: BucketParams,
        querystring: AuthQuery,
        body: WriteBody,
        response: { 200: WriteResult, ...errors },
      },
    },
    async (req) => {
      const { user, bucket } = req.params as Params
      return { written: await service.write(user, bucket, req.body, { source: 'api' }) }
    },
  )

  app.get(
    '/v1/users/:user/buckets/:bucket/data',
    {
      ...owner,
      schema: {
        params: BucketParams,
        querystring: ReadQuery,
        response: { 200: Type.Array(BucketPoint), ...errors },
      },
    },
    async (req, reply) => {
      const { user, bucket } = req.params as Params
      const json = await service.readJson(user, bucket, req.query as ReadQuery)
      // Already JSON text: a string with a JSON content type is sent as is, not serialised again.
      return reply.type('application/json; charset=utf-8').send(json)
    },
  )

  app.get(
    '/v1/users/:user/buckets/:bucket/export',
    { ...owner, schema: { params: BucketParams, querystring: ExportQuery, response: errors } },
    async (req, reply) => {
      const { user, bucket } = req.params as Params
      const out = await service.export(user, bucket, req.query as ExportQuery)
      return reply
        .type(out.contentType)
        .header('content-disposition', `attachment; filename="${out.filename}"`)
        .send(out.stream)
    },
  )
}

export default bucketsPlugin
