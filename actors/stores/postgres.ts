import pg from 'pg'
import { ActorError } from '../../src/index.js'

export interface PostgresConnection {
  readonly url?: string | undefined
  readonly host: string
  readonly port: number
  readonly db: string
  readonly user: string
  readonly password?: string | undefined
  readonly pool_size: number
}

const CONNECT_TIMEOUT_MS = 3000

/** A connection pool for one Postgres backend, checked at once so a bad server fails the start. */
export async function openPostgresPool(kind: string, name: string, connection: PostgresConnection, types?: pg.CustomTypesConfig): Promise<pg.Pool> {
  const pool = new pg.Pool({
    ...(connection.url !== undefined
      ? { connectionString: connection.url }
      : { host: connection.host, port: connection.port, database: connection.db, user: connection.user, password: connection.password }),
    max: connection.pool_size,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    ...(types === undefined ? {} : { types }),
  })
  pool.on('error', () => {}) // an idle client's error is reported by the next query that needs it
  try {
    await pool.query('select 1')
  } catch (error) {
    await pool.end().catch(() => undefined)
    const where = connection.url !== undefined ? 'its url' : `${connection.host}:${connection.port}/${connection.db}`
    throw new ActorError('backend_unavailable', `${kind} backend '${name}' cannot reach ${where}: ${(error as Error).message}`)
  }
  return pool
}

/** Wraps a failed query as backend_unavailable, naming the backend; typed errors pass through. */
export function postgresFailure(kind: string, name: string, what: string): (error: unknown) => never {
  return error => {
    if (error instanceof ActorError) throw error
    throw new ActorError('backend_unavailable', `${kind} backend '${name}': ${what} failed: ${(error as Error).message}`)
  }
}

export function quoteIdent(identifier: string): string {
  return `"${identifier.replaceAll('"', '""')}"`
}
