/** Relay error catalogue: each error has a stable code, an HTTP status and a message template. */
import createError from '@fastify/error'

/** Errors answered as `{error: {code, message}}` with the status below. */
export const RelayErrors = {
  TETHER_ERR_UNAUTHORIZED: createError('TETHER_ERR_UNAUTHORIZED', '%s', 401),
  TETHER_ERR_FORBIDDEN: createError('TETHER_ERR_FORBIDDEN', '%s', 403),
  TETHER_ERR_BAD_CREDENTIALS: createError('TETHER_ERR_BAD_CREDENTIALS', 'invalid username or password', 401),
  TETHER_ERR_NOT_FOUND: createError('TETHER_ERR_NOT_FOUND', '%s not found', 404),
  TETHER_ERR_CONFLICT: createError('TETHER_ERR_CONFLICT', '%s', 409),
  TETHER_ERR_BAD_REQUEST: createError('TETHER_ERR_BAD_REQUEST', '%s', 400),
} as const

export type RelayErrorCode = keyof typeof RelayErrors
