/** HTTP-device callback schemas (Thinger's callback overview and settings); types derive from them. */
import { type Static, Type } from 'typebox'
import { CallbackActions } from '../devices/schemas.ts'

export const CallbackSettingsView = Type.Object({
  actions: CallbackActions,
  properties: Type.Object({ timeout: Type.Integer({ description: 'minutes' }) }),
})
export type CallbackSettingsView = Static<typeof CallbackSettingsView>

export const CallbackOverview = Type.Object({
  url: Type.String({ description: 'where the device POSTs its data' }),
  token: Type.String({ description: 'the device callback token (JWT HS256, jti DeviceCallback_<device>)' }),
  authorization: Type.String({ description: 'the Authorization header value' }),
  url_with_token: Type.String({
    description: 'the URL with ?authorization=, for clients that cannot set headers',
  }),
  curl: Type.String({ description: 'a ready cURL command' }),
  example_body: Type.Unknown(),
  settings: CallbackSettingsView,
})
export type CallbackOverview = Static<typeof CallbackOverview>
