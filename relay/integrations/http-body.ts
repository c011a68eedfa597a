/**
 * HTTP integration bodies as ThingsBoard's HTTP integration hands them to the uplink converter: JSON as sent,
 * `text/plain` as text, `application/octet-stream` as bytes, form posts and multipart forms as an object of
 * fields (a multipart file becomes its JSON when it parses, else its base64), and GET query parameters as an
 * object.
 */
import { Readable } from 'node:stream'
import { Busboy, type BusboyInstance } from '@fastify/busboy'

/** The converter's payload: raw bytes keep the exact body; parsed forms are objects. */
export type HttpPayload = Uint8Array | Record<string, unknown>

export class HttpBodyError extends Error {}

const mediaType = (contentType: string | undefined) =>
  (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? ''

/** The payload of a request body with its content type; throws HttpBodyError on a malformed body. */
export async function httpPayload(contentType: string | undefined, body: Buffer): Promise<HttpPayload> {
  const type = mediaType(contentType)
  if (type === 'application/x-www-form-urlencoded') {
    return Object.fromEntries(new URLSearchParams(body.toString('utf8')))
  }
  if (type === 'multipart/form-data') return multipart(contentType as string, body)
  if (type === 'application/json' || type.endsWith('+json')) {
    try {
      JSON.parse(body.toString('utf8'))
    } catch (err) {
      throw new HttpBodyError(`body is not valid JSON: ${(err as Error).message}`)
    }
  }
  // JSON, text and bytes all reach the converter as the bytes sent; a Thinger converter gets parsed JSON.
  return body
}

/** Whether a body of this content type is JSON (Thinger converters then receive it parsed). */
export function isJson(contentType: string | undefined): boolean {
  const type = mediaType(contentType)
  return type === 'application/json' || type.endsWith('+json')
}

/** Whether a body of this content type is text (Thinger converters then receive a string). */
export function isText(contentType: string | undefined): boolean {
  return mediaType(contentType).startsWith('text/')
}

function multipart(contentType: string, body: Buffer): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const fields: Record<string, unknown> = {}
    let parser: BusboyInstance
    try {
      parser = new Busboy({ headers: { 'content-type': contentType }, limits: { files: 20, fields: 1000 } })
    } catch (err) {
      return reject(new HttpBodyError(`multipart body: ${(err as Error).message}`))
    }
    const files: Promise<void>[] = []
    parser.on('field', (name: string, value: string) => {
      fields[name] = value
    })
    parser.on('file', (name: string, stream: Readable) => {
      files.push(
        (async () => {
          const chunks: Buffer[] = []
          for await (const chunk of stream) chunks.push(chunk as Buffer)
          const data = Buffer.concat(chunks)
          try {
            fields[name] = JSON.parse(data.toString('utf8'))
          } catch {
            fields[name] = data.toString('base64')
          }
        })(),
      )
    })
    parser.on('error', (err: Error) => reject(new HttpBodyError(`multipart body: ${err.message}`)))
    parser.on('finish', () => {
      Promise.all(files).then(() => resolve(fields), reject)
    })
    Readable.from([body]).pipe(parser)
  })
}
