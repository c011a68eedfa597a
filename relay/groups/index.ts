/** Groups capability: the groups and customers integrations created, with their members. */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { ErrorResponse } from '../auth/schemas.ts'
import { RelayErrors } from '../errors.ts'
import type { KeyValueTable } from '../store/level-store.ts'
import { type UserScopedStore, userScopedStore } from '../store/user-scoped-store.ts'
import { GroupParams, type GroupRecord, GroupView } from './schemas.ts'

/** A user's groups by id. */
export type GroupsStore = UserScopedStore<GroupRecord>

/** GroupsStore on the `groups` sublevel. */
export function levelGroupsStore(table: KeyValueTable<GroupRecord>): GroupsStore {
  return userScopedStore(table, (r) => r.group)
}

const view = ({ user: _user, ...rest }: GroupRecord): GroupView => rest

/** Registers `/v1/users/:user/groups…` (list, get, delete). */
export default async function groupsPlugin(app: FastifyInstance, { groups }: { groups: GroupsStore }) {
  const owner = { onRequest: app.requireOwner }
  const errors = { '4xx': ErrorResponse }
  const load = async (user: string, group: string) => {
    const record = await groups.get(user, group)
    if (!record) throw new RelayErrors.TETHER_ERR_NOT_FOUND(`group ${user}/${group}`)
    return record
  }

  app.get(
    '/v1/users/:user/groups',
    {
      ...owner,
      schema: {
        params: Type.Object({ user: Type.String() }),
        response: { 200: Type.Array(GroupView), ...errors },
      },
    },
    async (req) => (await groups.list((req.params as { user: string }).user)).map(view),
  )
  app.get(
    '/v1/users/:user/groups/:group',
    { ...owner, schema: { params: GroupParams, response: { 200: GroupView, ...errors } } },
    async (req) => {
      const { user, group } = req.params as GroupParams
      return view(await load(user, group))
    },
  )
  app.delete(
    '/v1/users/:user/groups/:group',
    { ...owner, schema: { params: GroupParams, response: errors } },
    async (req, reply) => {
      const { user, group } = req.params as GroupParams
      await load(user, group)
      await groups.del(user, group)
      reply.code(204)
    },
  )
}
