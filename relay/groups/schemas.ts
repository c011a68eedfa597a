/** Group API schemas: named sets of devices and assets; `customer` groups come from a converter's customerName. */
import { type Static, Type } from 'typebox'

export const GroupMember = Type.Object({
  type: Type.Union([Type.Literal('device'), Type.Literal('asset')]),
  id: Type.String(),
})
export type GroupMember = Static<typeof GroupMember>

export const GroupView = Type.Object({
  group: Type.String(),
  name: Type.String(),
  kind: Type.Union([Type.Literal('customer'), Type.Literal('group')]),
  members: Type.Array(GroupMember),
  created_ts: Type.Integer(),
  updated_ts: Type.Integer(),
})
export type GroupView = Static<typeof GroupView>

/** A stored group. */
export interface GroupRecord extends GroupView {
  user: string
}

export const GroupParams = Type.Object({ user: Type.String(), group: Type.String() })
export type GroupParams = Static<typeof GroupParams>
