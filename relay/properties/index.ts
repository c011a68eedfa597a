/** Properties capability: Thinger's `/v3/users/{user}/devices/{device}/properties` routes. */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { ErrorResponse } from '../auth/schemas.ts'
import type { DevicesStore } from '../devices/devices-store.ts'
import { DeviceParams } from '../devices/schemas.ts'
import { RelayErrors } from '../errors.ts'
import type { PropertyService } from './property-service.ts'
import {
  type PropertyCreate,
  PropertyCreate as PropertyCreateSchema,
  type PropertyDeleteMany,
  PropertyDeleteMany as PropertyDeleteManySchema,
  PropertyParams,
  type PropertyValue,
  PropertyValue as PropertyValueSchema,
  PropertyView,
} from './schemas.ts'

export interface PropertiesOptions {
  properties: PropertyService
  devices: DevicesStore
}

type Params = { user: string; device: string; property: string }

export default async function propertiesPlugin(
  app: FastifyInstance,
  { properties, devices }: PropertiesOptions,
) {
  const owner = { onRequest: app.requireOwner }
  const errors = { '4xx': ErrorResponse }
  const base = '/v3/users/:user/devices/:device/properties'

  const deviceMustExist = async ({ user, device }: { user: string; device: string }) => {
    if (!(await devices.get(user, device)))
      throw new RelayErrors.TETHER_ERR_NOT_FOUND(`device ${user}/${device}`)
  }
  const load = async (p: Params) => {
    await deviceMustExist(p)
    const found = await properties.get(p.user, p.device, p.property)
    if (!found) throw new RelayErrors.TETHER_ERR_NOT_FOUND(`property ${p.property} of device ${p.device}`)
    return found
  }

  app.get(
    base,
    { ...owner, schema: { params: DeviceParams, response: { 200: Type.Array(PropertyView), ...errors } } },
    async (req) => {
      const { user, device } = req.params as Params
      await deviceMustExist({ user, device })
      return properties.list(user, device)
    },
  )

  app.post(
    base,
    {
      ...owner,
      schema: {
        params: DeviceParams,
        body: PropertyCreateSchema,
        response: { 201: PropertyView, ...errors },
      },
    },
    async (req, reply) => {
      const { user, device } = req.params as Params
      const body = req.body as PropertyCreate
      await deviceMustExist({ user, device })
      if (await properties.get(user, device, body.property)) {
        throw new RelayErrors.TETHER_ERR_CONFLICT(`property ${body.property} already exists`)
      }
      reply.code(201)
      return properties.set(user, device, body.property, body.value)
    },
  )

  app.delete(
    base,
    {
      ...owner,
      schema: {
        params: DeviceParams,
        body: PropertyDeleteManySchema,
        response: {
          200: Type.Object({ deleted: Type.Array(Type.String()), not_found: Type.Array(Type.String()) }),
        },
      },
    },
    async (req) => {
      const { user, device } = req.params as Params
      await deviceMustExist({ user, device })
      const deleted: string[] = []
      const notFound: string[] = []
      for (const id of new Set((req.body as PropertyDeleteMany).properties)) {
        ;((await properties.delete(user, device, id)) ? deleted : notFound).push(id)
      }
      return { deleted, not_found: notFound }
    },
  )

  app.get(
    `${base}/:property`,
    { ...owner, schema: { params: PropertyParams, response: { 200: PropertyView, ...errors } } },
    async (req) => load(req.params as Params),
  )

  /** PUT and PATCH of one property: a `{value}` body, the property back. */
  const valueRoute = {
    ...owner,
    schema: { params: PropertyParams, body: PropertyValueSchema, response: { 200: PropertyView, ...errors } },
  }

  app.put(`${base}/:property`, valueRoute, async (req) => {
    const p = req.params as Params
    await deviceMustExist(p)
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(p.property)) {
      throw new RelayErrors.TETHER_ERR_BAD_REQUEST('params/property must match ^[A-Za-z0-9_.-]{1,64}$')
    }
    return properties.set(p.user, p.device, p.property, (req.body as PropertyValue).value)
  })

  app.patch(`${base}/:property`, valueRoute, async (req) => {
    const p = req.params as Params
    await load(p)
    return properties.patch(p.user, p.device, p.property, (req.body as PropertyValue).value)
  })

  app.delete(
    `${base}/:property`,
    { ...owner, schema: { params: PropertyParams, response: errors } },
    async (req, reply) => {
      const p = req.params as Params
      await load(p)
      await properties.delete(p.user, p.device, p.property)
      reply.code(204)
    },
  )
}
