/** Converters capability: per-user converter scripts (CRUD), the test tool and debug events. */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { functionsOf } from '../../converters/index.ts'
import { ErrorResponse } from '../auth/schemas.ts'
import { RelayErrors } from '../errors.ts'
import type { ConverterService } from './converter-service.ts'
import {
  ConverterCreate,
  ConverterParams,
  ConverterPut,
  type ConverterRecord,
  ConverterTestInput,
  ConverterTestResult,
  ConverterView,
  DebugEventList,
  UserParams,
} from './schemas.ts'

export interface ConvertersOptions {
  service: ConverterService
  /** The integration that uses a converter, if any: such a converter cannot be deleted. */
  usedBy: (user: string, converter: string) => Promise<string | undefined>
  /** Called after a converter was saved or deleted, so integrations pick up the new version. */
  onChanged?: (record: ConverterRecord, deleted: boolean) => void
}

/** The API view of a stored converter. */
export function converterView({ user: _user, ...view }: ConverterRecord): ConverterView {
  return view
}

/** Registers `/v1/users/:user/converters…`: CRUD, `…/test` and `…/events`. */
export default async function convertersPlugin(
  app: FastifyInstance,
  { service, usedBy, onChanged }: ConvertersOptions,
) {
  const owner = { onRequest: app.requireOwner }
  const errors = { '4xx': ErrorResponse }

  const save = async (
    user: string,
    id: string,
    body: ConverterCreate | ConverterPut,
    previous?: ConverterRecord,
  ) => {
    const now = Date.now()
    const record: ConverterRecord = {
      user,
      id,
      name: body.name ?? previous?.name ?? id,
      dialect: body.dialect,
      direction: body.direction,
      script: body.script,
      debug: body.debug ?? false,
      created_ts: previous?.created_ts ?? now,
      // Strictly increasing: the engine compiles by (id, updated_ts), so two saves in one ms must differ.
      updated_ts: previous && previous.updated_ts >= now ? previous.updated_ts + 1 : now,
    }
    await service.check(record)
    await service.store.put(record)
    if (previous) service.forget(previous, record.debug)
    onChanged?.(record, false)
    return record
  }

  app.get(
    '/v1/users/:user/converters',
    { ...owner, schema: { params: UserParams, response: { 200: Type.Array(ConverterView), ...errors } } },
    async (req) => (await service.store.list((req.params as UserParams).user)).map(converterView),
  )

  app.post(
    '/v1/users/:user/converters',
    {
      ...owner,
      schema: { params: UserParams, body: ConverterCreate, response: { 201: ConverterView, ...errors } },
    },
    async (req, reply) => {
      const { user } = req.params as UserParams
      const body = req.body as ConverterCreate
      if (await service.store.get(user, body.id)) {
        throw new RelayErrors.TETHER_ERR_CONFLICT(`converter ${body.id} already exists`)
      }
      const record = await save(user, body.id, body)
      reply.code(201)
      return converterView(record)
    },
  )

  app.get(
    '/v1/users/:user/converters/:converter',
    { ...owner, schema: { params: ConverterParams, response: { 200: ConverterView, ...errors } } },
    async (req) => {
      const { user, converter } = req.params as ConverterParams
      return converterView(await service.load(user, converter))
    },
  )

  app.put(
    '/v1/users/:user/converters/:converter',
    {
      ...owner,
      schema: { params: ConverterParams, body: ConverterPut, response: { 200: ConverterView, ...errors } },
    },
    async (req) => {
      const { user, converter } = req.params as ConverterParams
      const body = req.body as ConverterPut
      if (body.id !== undefined && body.id !== converter) {
        throw new RelayErrors.TETHER_ERR_BAD_REQUEST(`body/id cannot change (${converter} → ${body.id})`)
      }
      const previous = await service.load(user, converter)
      const integration = await usedBy(user, converter)
      if (integration && body.direction !== previous.direction) {
        throw new RelayErrors.TETHER_ERR_CONFLICT(
          `converter ${converter} is the ${previous.direction} converter of integration ${integration}: its direction cannot change`,
        )
      }
      return converterView(await save(user, converter, body, previous))
    },
  )

  app.delete(
    '/v1/users/:user/converters/:converter',
    { ...owner, schema: { params: ConverterParams, response: errors } },
    async (req, reply) => {
      const { user, converter } = req.params as ConverterParams
      const record = await service.load(user, converter)
      const integration = await usedBy(user, converter)
      if (integration) {
        throw new RelayErrors.TETHER_ERR_CONFLICT(
          `converter ${converter} is used by integration ${integration}`,
        )
      }
      await service.store.del(user, converter)
      service.forget(record)
      onChanged?.(record, true)
      reply.code(204)
    },
  )

  app.post(
    '/v1/users/:user/converters/:converter/test',
    {
      ...owner,
      schema: {
        params: ConverterParams,
        body: ConverterTestInput,
        response: { 200: ConverterTestResult, ...errors },
      },
    },
    async (req) => {
      const { user, converter } = req.params as ConverterParams
      const body = (req.body ?? {}) as ConverterTestInput
      const record = await service.load(user, converter)
      const allowed = functionsOf(record.dialect)
      if (body.function !== undefined && !allowed.includes(body.function)) {
        throw new RelayErrors.TETHER_ERR_BAD_REQUEST(
          `body/function must be one of ${allowed.map((f) => `"${f}"`).join(', ')} for dialect ${record.dialect}`,
        )
      }
      // A failing script is still an answered test: 200 with `ok: false`, the error and the logs.
      return service.test(record, body)
    },
  )

  app.get(
    '/v1/users/:user/converters/:converter/events',
    { ...owner, schema: { params: ConverterParams, response: { 200: DebugEventList, ...errors } } },
    async (req) => {
      const { user, converter } = req.params as ConverterParams
      return service.events(await service.load(user, converter))
    },
  )
}
