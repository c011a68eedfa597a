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
  // A union of literals fails as one `const` error per literal plus an `anyOf`: say which values are allowed.
  const allowed = new Map<string, unknown[]>()
  for (const e of errors) {
    if (e.keyword !== 'const') continue
    const values = allowed.get(e.instancePath) ?? []
    values.push((e.params as { allowedValue?: unknown }).allowedValue)
    allowed.set(e.instancePath, values)
  }
  const messages = errors.map((e) => {
    const values = allowed.get(e.instancePath)
    if (!values || (e.keyword !== 'const' && e.keyword !== 'anyOf'))
      return describeValidationError(e, dataVar)
    const list = values.map((v) => JSON.stringify(v))
    return `${dataVar}${e.instancePath} must be ${list.length > 1 ? `one of ${list.join(', ')}` : list[0]}`
  })
  return new Error([...new Set(messages)].join('; '))
}
