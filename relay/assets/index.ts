/** Assets capability: listing, reading and deleting the assets integrations created. */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { ErrorResponse } from '../auth/schemas.ts'
import { RelayErrors } from '../errors.ts'
import type { KeyValueTable } from '../store/level-store.ts'
import { type UserScopedStore, userScopedStore } from '../store/user-scoped-store.ts'
import { AssetParams, type AssetRecord, AssetView } from './schemas.ts'

/** A user's assets by id. */
export type AssetsStore = UserScopedStore<AssetRecord>

/** AssetsStore on the `assets` sublevel. */
export function levelAssetsStore(table: KeyValueTable<AssetRecord>): AssetsStore {
  return userScopedStore(table, (r) => r.asset)
}

const view = ({ user: _user, ...rest }: AssetRecord): AssetView => rest

/** Registers `/v1/users/:user/assets…` (list, get, delete). */
export default async function assetsPlugin(app: FastifyInstance, { assets }: { assets: AssetsStore }) {
  const owner = { onRequest: app.requireOwner }
  const errors = { '4xx': ErrorResponse }
  const load = async (user: string, asset: string) => {
    const record = await assets.get(user, asset)
    if (!record) throw new RelayErrors.TETHER_ERR_NOT_FOUND(`asset ${user}/${asset}`)
    return record
  }

  app.get(
    '/v1/users/:user/assets',
    {
      ...owner,
      schema: {
        params: Type.Object({ user: Type.String() }),
        response: { 200: Type.Array(AssetView), ...errors },
      },
    },
    async (req) => (await assets.list((req.params as { user: string }).user)).map(view),
  )
  app.get(
    '/v1/users/:user/assets/:asset',
    { ...owner, schema: { params: AssetParams, response: { 200: AssetView, ...errors } } },
    async (req) => {
      const { user, asset } = req.params as AssetParams
      return view(await load(user, asset))
    },
  )
  app.delete(
    '/v1/users/:user/assets/:asset',
    { ...owner, schema: { params: AssetParams, response: errors } },
    async (req, reply) => {
      const { user, asset } = req.params as AssetParams
      await load(user, asset)
      await assets.del(user, asset)
      reply.code(204)
    },
  )
}
