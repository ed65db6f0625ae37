import pg from 'pg'
import { ActorError } from '../../../src/index.js'
import { openPostgresPool, postgresFailure, quoteIdent, type PostgresConnection } from '../postgres.js'
import type { ColumnType, TableSpec, Where, WriteOp } from '../protocol.js'
import type { PageQuery, Row, TableBackend } from './backend.js'

/** Text sorts COLLATE "C" (byte order), the order every other backend pages in. */
const SQL_TYPES: Record<ColumnType, string> = {
  text: 'text COLLATE "C"',
  integer: 'bigint',
  real: 'double precision',
  boolean: 'boolean',
  json: 'jsonb',
  timestamp: 'bigint',
}
const CATALOG = 'troupe_tables'

/** bigint columns come back as numbers: integer and timestamp columns hold safe integers. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format ?? 'text')) as typeof pg.types.getTypeParser,
}

/**
 * sql_postgres: every declared column is a real column of its SQL type, with the primary key
 * and indexes Postgres enforces and uses. Table specs live in a troupe_tables catalog so a
 * restarted actor knows them. A batch of writes is one transaction.
 */
export async function openPostgresTables(name: string, connection: PostgresConnection): Promise<TableBackend> {
  const pool = await openPostgresPool('sql_postgres', name, connection, types)
  const failed = (what: string) => postgresFailure('sql_postgres', name, what)
  await pool.query(`CREATE TABLE IF NOT EXISTS ${CATALOG} (name text PRIMARY KEY, spec jsonb NOT NULL)`).catch(failed('CREATE TABLE'))

  const param = (table: TableSpec, column: string, value: unknown): unknown =>
    value !== null && value !== undefined && table.columns[column]?.type === 'json' ? JSON.stringify(value) : value

  /** `col = $n AND …` (IS NULL for null), appending to params. */
  const whereSql = (table: TableSpec, where: Where, params: unknown[]): string => {
    const parts = Object.entries(where).map(([column, value]) => {
      if (value === null || value === undefined) return `${quoteIdent(column)} IS NULL`
      params.push(param(table, column, value))
      return `${quoteIdent(column)} = $${params.length}`
    })
    return parts.length === 0 ? 'TRUE' : parts.join(' AND ')
  }

  const runOne = async (client: pg.PoolClient, op: WriteOp, table: TableSpec): Promise<number> => {
    const t = quoteIdent(table.name)
    switch (op.type) {
      case 'insert':
      case 'upsert': {
        const columns = Object.keys(op.row)
        const params = columns.map(column => param(table, column, op.row[column]))
        const values = columns.map((_, i) => `$${i + 1}`).join(', ')
        let sql = `INSERT INTO ${t} (${columns.map(quoteIdent).join(', ')}) VALUES (${values})`
        if (op.type === 'upsert') {
          const rest = columns.filter(column => !table.primaryKey.includes(column))
          const conflict = `ON CONFLICT (${table.primaryKey.map(quoteIdent).join(', ')})`
          sql += rest.length === 0 ? ` ${conflict} DO NOTHING` : ` ${conflict} DO UPDATE SET ${rest.map(c => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`).join(', ')}`
        }
        return (await client.query(sql, params)).rowCount ?? 0
      }
      case 'update': {
        const params: unknown[] = []
        const sets = Object.entries(op.values).map(([column, value]) => {
          params.push(param(table, column, value))
          return `${quoteIdent(column)} = $${params.length}`
        })
        if (sets.length === 0) return (await client.query(`SELECT count(*)::int AS n FROM ${t} WHERE ${whereSql(table, op.where, params)}`, params)).rows[0].n as number
        return (await client.query(`UPDATE ${t} SET ${sets.join(', ')} WHERE ${whereSql(table, op.where, params)}`, params)).rowCount ?? 0
      }
      case 'delete': {
        const params: unknown[] = []
        return (await client.query(`DELETE FROM ${t} WHERE ${whereSql(table, op.where, params)}`, params)).rowCount ?? 0
      }
    }
  }

  const inTransaction = async <T>(what: string, body: (client: pg.PoolClient) => Promise<T>): Promise<T> => {
    const client = await pool.connect().catch(failed('connect'))
    try {
      await client.query('BEGIN')
      const result = await body(client)
      await client.query('COMMIT')
      return result
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined)
      if ((error as { code?: string }).code === '23505') throw new ActorError('conflict', `sql_postgres backend '${name}': ${(error as Error).message}`)
      return failed(what)(error)
    } finally {
      client.release()
    }
  }

  return {
    loadTables: async () => (await pool.query(`SELECT spec FROM ${CATALOG}`).catch(failed('SELECT'))).rows.map(row => row.spec as TableSpec),
    createTable: spec =>
      inTransaction('CREATE TABLE', async client => {
        const t = quoteIdent(spec.name)
        const columns = Object.entries(spec.columns).map(([column, c]) => `${quoteIdent(column)} ${SQL_TYPES[c.type]}${c.nullable ? '' : ' NOT NULL'}`)
        await client.query(`CREATE TABLE IF NOT EXISTS ${t} (${columns.join(', ')}, PRIMARY KEY (${spec.primaryKey.map(quoteIdent).join(', ')}))`)
        for (const [column, c] of Object.entries(spec.columns)) {
          await client.query(`ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS ${quoteIdent(column)} ${SQL_TYPES[c.type]}`)
        }
        for (const index of spec.indexes ?? []) {
          await client.query(`CREATE INDEX IF NOT EXISTS ${quoteIdent(`${spec.name}_by_${index.join('_')}`)} ON ${t} (${index.map(quoteIdent).join(', ')})`)
        }
        await client.query(`INSERT INTO ${CATALOG} (name, spec) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec`, [spec.name, JSON.stringify(spec)])
      }),
    apply: ops =>
      inTransaction('write', async client => {
        const counts: number[] = []
        for (const { op, table } of ops) counts.push(await runOne(client, op, table))
        return counts
      }),
    fetchOne: async (table, where) => {
      const params: unknown[] = []
      const result = await pool.query(`SELECT * FROM ${quoteIdent(table.name)} WHERE ${whereSql(table, where, params)} LIMIT 1`, params).catch(failed('SELECT'))
      return result.rows[0] as Row | undefined
    },
    fetchPage: async ({ table, where, order, after, limit }: PageQuery) => {
      const params: unknown[] = []
      let sql = `SELECT * FROM ${quoteIdent(table.name)} WHERE ${whereSql(table, where, params)}`
      if (after !== undefined) {
        // Strictly after the cursor in a mixed-direction order: the first differing column decides.
        const branches = order.map((o, i) => {
          const equal = order.slice(0, i).map((p, j) => {
            params.push(after[j])
            return `${quoteIdent(p.column)} = $${params.length}`
          })
          params.push(after[i])
          return `(${[...equal, `${quoteIdent(o.column)} ${o.direction === 'desc' ? '<' : '>'} $${params.length}`].join(' AND ')})`
        })
        sql += ` AND (${branches.join(' OR ')})`
      }
      params.push(limit)
      sql += ` ORDER BY ${order.map(o => `${quoteIdent(o.column)} ${o.direction.toUpperCase()}`).join(', ')} LIMIT $${params.length}`
      return (await pool.query(sql, params).catch(failed('SELECT'))).rows as Row[]
    },
    close: () => pool.end(),
  }
}
