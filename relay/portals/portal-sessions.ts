/**
 * Portal sessions: a one-time signed link opens a session, the session is an HttpOnly cookie on the portal's
 * origin. Only token hashes are stored (LevelDB), so a leaked data dir does not leak live sessions.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { KeyValueTable } from '../store/level-store.ts'
import type { PortalSession } from './schemas.ts'

interface StoredSession extends PortalSession {
  token_hash: string
}

interface Ticket {
  sessionId: string
  token: string
  expires: number
}

const hash = (token: string) => createHash('sha256').update(token).digest('base64url')
const random = (bytes: number) => randomBytes(bytes).toString('base64url')

/** Fields a new session is opened with. */
export type SessionRequest = Omit<PortalSession, 'id' | 'created_ts' | 'expires_ts'>

export class PortalSessions {
  readonly #table: KeyValueTable<StoredSession>
  readonly #byToken = new Map<string, StoredSession>()
  readonly #tickets = new Map<string, Ticket>()
  readonly #linkTtlMs: number
  #sweeper?: NodeJS.Timeout

  private constructor(table: KeyValueTable<StoredSession>, linkTtlSec: number) {
    this.#table = table
    this.#linkTtlMs = linkTtlSec * 1000
  }

  /** Loads live sessions from the table and drops expired ones. */
  static async open(table: KeyValueTable<StoredSession>, linkTtlSec: number): Promise<PortalSessions> {
    const sessions = new PortalSessions(table, linkTtlSec)
    const now = Date.now()
    for (const s of await table.values()) {
      if (s.expires_ts > now) sessions.#byToken.set(s.token_hash, s)
      else await table.del(s.id)
    }
    sessions.#sweeper = setInterval(() => void sessions.#sweep(), 60_000)
    sessions.#sweeper.unref()
    return sessions
  }

  /** Opens a session that lasts `ttlSec`; returns it with the one-time ticket its link carries. */
  async create(req: SessionRequest, ttlSec: number): Promise<{ session: PortalSession; ticket: string }> {
    const now = Date.now()
    const token = random(32)
    const session: PortalSession = {
      ...req,
      id: random(12),
      created_ts: now,
      expires_ts: now + ttlSec * 1000,
    }
    const stored = { ...session, token_hash: hash(token) }
    await this.#table.put(session.id, stored)
    this.#byToken.set(stored.token_hash, stored)
    const ticket = random(32)
    this.#tickets.set(ticket, { sessionId: session.id, token, expires: now + this.#linkTtlMs })
    return { session, ticket }
  }

  /** Spends a ticket for portal `label`: the session cookie value and its session, or why not. */
  redeem(ticket: string, label: string): { token: string; session: PortalSession } | { error: string } {
    const t = this.#tickets.get(ticket)
    this.#tickets.delete(ticket)
    if (!t) return { error: 'This portal link was already used or is not valid.' }
    if (t.expires <= Date.now()) return { error: 'This portal link has expired.' }
    const session = this.#byToken.get(hash(t.token))
    if (!session || session.label !== label)
      return { error: 'This portal link is not valid for this portal.' }
    return { token: t.token, session }
  }

  /** The live session a cookie value names for portal `label`, or why there is none. */
  verify(token: string | undefined, label: string): PortalSession | { error: string } {
    if (!token) return { error: 'You have no session for this portal.' }
    const session = this.#byToken.get(hash(token))
    if (!session || session.label !== label) return { error: 'Your portal session is not valid.' }
    if (session.expires_ts <= Date.now()) return { error: 'Your portal session has expired.' }
    return session
  }

  /** Live sessions matching every given field. */
  list(filter: Partial<Pick<PortalSession, 'user' | 'proxy' | 'device'>>): PortalSession[] {
    const now = Date.now()
    return [...this.#byToken.values()]
      .filter((s) => s.expires_ts > now && matches(s, filter))
      .map(({ token_hash: _, ...s }) => s)
  }

  /** Revokes the sessions matching `filter` (and `id`, when given); returns how many. */
  async revoke(filter: Partial<Pick<PortalSession, 'id' | 'user' | 'proxy' | 'device'>>): Promise<number> {
    let n = 0
    for (const [key, s] of this.#byToken) {
      if (!matches(s, filter)) continue
      this.#byToken.delete(key)
      await this.#table.del(s.id)
      n++
    }
    for (const [ticket, t] of this.#tickets) if (!this.#hasSession(t.sessionId)) this.#tickets.delete(ticket)
    return n
  }

  #hasSession(id: string): boolean {
    for (const s of this.#byToken.values()) if (s.id === id) return true
    return false
  }

  async #sweep(): Promise<void> {
    const now = Date.now()
    for (const [ticket, t] of this.#tickets) if (t.expires <= now) this.#tickets.delete(ticket)
    for (const [key, s] of this.#byToken) {
      if (s.expires_ts > now) continue
      this.#byToken.delete(key)
      await this.#table.del(s.id).catch(() => {})
    }
  }

  close(): void {
    clearInterval(this.#sweeper)
  }
}

function matches(s: PortalSession, filter: Partial<Record<string, string>>): boolean {
  return Object.entries(filter).every(([k, v]) => v === undefined || s[k as keyof PortalSession] === v)
}
