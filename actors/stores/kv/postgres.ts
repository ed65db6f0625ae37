import type pg from 'pg'
import { openPostgresPool, postgresFailure, quoteIdent, type PostgresConnection } from '../postgres.js'
import type { KvBackend, Stored } from './backend.js'

/**
 * kv_postgres: one table of (namespace, key, value bytea, expires_at). Keys are COLLATE "C" so
 * scans run in UTF-8 byte order like every other backend; expired rows are filtered in queries.
 */
export async function openPostgresKv(name: string, connection: PostgresConnection & { table_name: string }): Promise<KvBackend> {
  const pool = await openPostgresPool('kv_postgres', name, connection)
  const table = quoteIdent(connection.table_name)
  const failed = (what: string) => postgresFailure('kv_postgres', name, what)
  await pool
    .query(
      `CREATE TABLE IF NOT EXISTS ${table} (namespace text NOT NULL, key text COLLATE "C" NOT NULL, value bytea NOT NULL, expires_at bigint, PRIMARY KEY (namespace, key))`,
    )
    .catch(failed('CREATE TABLE'))
  const live = 'AND (expires_at IS NULL OR expires_at > $NOW)'
  const query = (sql: string, params: unknown[]): Promise<pg.QueryResult> => pool.query(sql.replace('$NOW', `$${params.length + 1}`), [...params, Date.now()])
  const stored = (row: { value: Buffer; expires_at: string | null }): Stored => ({ bytes: row.value, expiresAt: row.expires_at === null ? 0 : Number(row.expires_at) })
  return {
    get: (namespace, key) =>
      query(`SELECT value, expires_at FROM ${table} WHERE namespace = $1 AND key = $2 ${live}`, [namespace, key]).then(r => (r.rows[0] ? stored(r.rows[0]) : undefined), failed('SELECT')),
    getMany: async (namespace, keys) => {
      const result = await query(`SELECT key, value, expires_at FROM ${table} WHERE namespace = $1 AND key = ANY($2) ${live}`, [namespace, keys]).catch(failed('SELECT'))
      const byKey = new Map(result.rows.map(row => [row.key as string, stored(row)]))
      return keys.map(key => byKey.get(key))
    },
    set: async (namespace, key, bytes, expiresAt) => {
      await pool
        .query(
          `INSERT INTO ${table} (namespace, key, value, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at`,
          [namespace, key, Buffer.from(bytes), expiresAt === 0 ? null : expiresAt],
        )
        .catch(failed('INSERT'))
    },
    delete: async (namespace, key) => {
      const result = await query(`DELETE FROM ${table} WHERE namespace = $1 AND key = $2 ${live}`, [namespace, key]).catch(failed('DELETE'))
      return (result.rowCount ?? 0) > 0
    },
    scan: async (namespace, prefix, after, limit) => {
      const result = await query(
        `SELECT key, value, expires_at FROM ${table} WHERE namespace = $1 AND key > $2 AND starts_with(key, $3) ${live} ORDER BY key LIMIT $4`,
        [namespace, after ?? '', prefix, limit],
      ).catch(failed('SELECT'))
      return result.rows.map(row => ({ key: row.key as string, stored: stored(row) }))
    },
    close: () => pool.end(),
  }
}
