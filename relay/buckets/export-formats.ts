/**
 * Export encodings, each an async generator of text chunks pulled from a point cursor, so a stream built on it
 * reads the store only as fast as the client takes the data (constant memory for any range).
 */
import { RelayErrors } from '../errors.ts'
import type { PointCursor } from './points-store.ts'
import type { ExportFormat } from './schemas.ts'

/** A CSV header wider than this is refused: the column set is the one thing a CSV export keeps in memory. */
export const MAX_CSV_COLUMNS = 10_000

export const EXPORT_CONTENT_TYPES: Record<ExportFormat, string> = {
  csv: 'text/csv; charset=utf-8',
  json: 'application/json; charset=utf-8',
  ndjson: 'application/x-ndjson; charset=utf-8',
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

/** Calls `cell(name, value)` for each leaf: nested objects become dotted names, arrays and scalars are leaves. */
function walkLeaves(value: unknown, prefix: string, cell: (name: string, value: unknown) => void): void {
  if (!isPlainObject(value)) return cell(prefix || 'val', value)
  for (const key in value) {
    const name = prefix ? `${prefix}.${key}` : key
    const v = value[key]
    if (isPlainObject(v)) walkLeaves(v, name, cell)
    else cell(name, v)
  }
}

/** RFC 4180: a field holding a comma, quote, CR or LF is quoted, its quotes doubled. */
export function csvField(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

/** A leaf as cell text: arrays as JSON text, null as an empty cell. */
function cellText(value: unknown): string {
  if (value === null || value === undefined) return ''
  if (typeof value === 'string') return value
  if (typeof value === 'object') return JSON.stringify(value)
  return String(value)
}

/** First pass of a CSV export: the column names of every point, in first-seen order. Keeps no point. */
export async function csvColumns(cursor: PointCursor): Promise<string[]> {
  const columns = new Set<string>()
  const add = (name: string) => {
    columns.add(name)
  }
  try {
    for (let batch = await cursor.next(); batch.length > 0; batch = await cursor.next()) {
      for (const text of batch) walkLeaves((JSON.parse(text) as { val: unknown }).val, '', add)
      if (columns.size > MAX_CSV_COLUMNS) {
        throw new RelayErrors.TETHER_ERR_BAD_REQUEST(
          `the points of this range have more than ${MAX_CSV_COLUMNS} distinct fields; export json or ndjson instead`,
        )
      }
    }
  } finally {
    await cursor.close()
  }
  return [...columns]
}

/** Text chunks of one export (CSV needs its `columns`); `onPoints` counts the points read; closes the cursor. */
export async function* exportChunks(
  format: ExportFormat,
  cursor: PointCursor,
  columns: readonly string[],
  onPoints: (n: number) => void,
): AsyncGenerator<string> {
  try {
    if (format === 'csv') {
      const index = new Map(columns.map((name, i) => [name, i]))
      yield `${['ts', ...columns].map(csvField).join(',')}\r\n`
      const cells: string[] = new Array(columns.length)
      const put = (name: string, value: unknown) => {
        const i = index.get(name)
        // A column first seen after the header was written (impossible under the export's snapshot) is left out.
        if (i !== undefined) cells[i] = csvField(cellText(value))
      }
      for (let batch = await cursor.next(); batch.length > 0; batch = await cursor.next()) {
        let chunk = ''
        for (const text of batch) {
          const point = JSON.parse(text) as { ts: number; val: unknown }
          cells.fill('')
          walkLeaves(point.val, '', put)
          chunk += `${point.ts}${cells.length > 0 ? ',' : ''}${cells.join(',')}\r\n`
        }
        onPoints(batch.length)
        yield chunk
      }
      return
    }
    const json = format === 'json'
    let first = true
    if (json) yield '['
    for (let batch = await cursor.next(); batch.length > 0; batch = await cursor.next()) {
      onPoints(batch.length)
      // Stored texts are already `{"ts":…,"val":…}`: joined, never parsed.
      if (json) yield (first ? '' : ',') + batch.join(',')
      else yield `${batch.join('\n')}\n`
      first = false
    }
    if (json) yield ']'
  } finally {
    await cursor.close().catch(() => {})
  }
}
