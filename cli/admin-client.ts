/** Small REST client for the admin subcommands: `--relay` and `--token` (or TETHER_RELAY / TETHER_TOKEN). */
import { type Command, Option } from 'commander'

export interface AdminOptions {
  relay: string
  token?: string
}

/** Adds the shared `--relay` and `--token` options to an admin subcommand. */
export function withAdminOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--relay <url>', 'relay base URL').env('TETHER_RELAY_URL').default('http://127.0.0.1:8080'),
    )
    .addOption(new Option('--token <token>', 'access token (tether login)').env('TETHER_TOKEN'))
}

/** The user a token belongs to (its `usr` claim), read without verifying: only to pick a default. */
export function tokenUser(token: string | undefined): string | undefined {
  try {
    const payload = JSON.parse(Buffer.from(token?.split('.')[1] ?? '', 'base64url').toString()) as {
      usr?: unknown
    }
    return typeof payload.usr === 'string' ? payload.usr : undefined
  } catch {
    return undefined
  }
}

/** Calls the relay API; throws an Error carrying the API's error message. */
export async function api<T = unknown>(
  opts: AdminOptions,
  method: string,
  path: string,
  body?: unknown,
): Promise<T> {
  const base = opts.relay
    .replace(/^ws/, 'http')
    .replace(/\/iotmp\/?$/, '')
    .replace(/\/$/, '')
  const headers: Record<string, string> = {}
  if (opts.token) headers.authorization = `Bearer ${opts.token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  let res: Response
  try {
    res = await fetch(`${base}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  } catch (err) {
    throw new Error(
      `cannot reach the relay at ${base}: ${(err as Error & { cause?: Error }).cause?.message ?? err}`,
    )
  }
  const text = await res.text()
  const json = text ? JSON.parse(text) : undefined
  if (!res.ok) throw new Error(`${res.status} ${json?.error?.message ?? res.statusText}`)
  return json as T
}

/** Prints rows as an aligned table. */
export function printTable(rows: Array<Record<string, unknown>>, columns: string[]): void {
  const cells = rows.map((row) => columns.map((c) => String(row[c] ?? '')))
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)))
  const line = (values: string[]) =>
    values
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd()
  process.stdout.write(`${line(columns.map((c) => c.toUpperCase()))}\n`)
  for (const r of cells) process.stdout.write(`${line(r)}\n`)
}
