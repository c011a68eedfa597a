/** Wording of request validation errors: every message names the field it is about (`body/source/port …`). */
import type { FastifySchemaValidationError } from 'fastify/types/schema.js'

/** One message per failed rule; an unknown field is named, which ajv's own message does not do. */
export function describeValidationError(error: FastifySchemaValidationError, dataVar: string): string {
  const path = `${dataVar}${error.instancePath}`
  const params = error.params as Record<string, unknown>
  if (error.keyword === 'additionalProperties' && typeof params.additionalProperty === 'string') {
    return `${path}/${params.additionalProperty} is not a known field`
  }
  if (error.keyword === 'required' && typeof params.missingProperty === 'string') {
    return `${path}/${params.missingProperty} is required`
  }
  return `${path} ${error.message ?? 'is invalid'}`
}

/** fastify `schemaErrorFormatter`: all failed rules, deduplicated, in one 400 message. */
export function formatValidationErrors(errors: FastifySchemaValidationError[], dataVar: string): Error {
  const messages = [...new Set(errors.map((e) => describeValidationError(e, dataVar)))]
  return new Error(messages.join('; '))
}
