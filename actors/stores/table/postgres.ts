import { unpack } from 'msgpackr'
import pg from 'pg'
import { ActorError } from '../../../src/index.js'
import { openPostgresPool, postgresFailure, quoteIdent, type PostgresConnection } from '../postgres.js'
import type { ColumnType, TableSpec, Where, WriteOp } from '../protocol.js'
import type { CheckedOp, PageQuery, Row, TableBackend, TrimQuery } from './backend.js'

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
/** The protocol counts a statement's bind parameters in 16 bits. */
const MAX_PARAMS = 65_535

/** bigint columns come back as numbers: integer and timestamp columns hold safe integers. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format ?? 'text')) as typeof pg.types.getTypeParser,
}

/** One SQL statement of a write batch, and how its result gives each of its ops' counts. */
interface Statement {
  readonly sql: string
  readonly params: unknown[]
  readonly counts: (result: pg.QueryResult) => number[]
}

/**
 * Consecutive inserts (or upserts) of one table with the same columns, written by one
 * multi-row INSERT. Each primary key appears once: Postgres refuses an upsert that touches a
 * row twice in one statement.
 */
interface RowGroup {
  readonly type: 'insert' | 'upsert'
  readonly table: TableSpec
  readonly columns: readonly string[]
  readonly rows: Row[]
  readonly keys: Set<string>
}

/** An update or a delete, a statement of its own. */
interface Change {
  readonly op: Extract<WriteOp, { type: 'update' | 'delete' }>
  readonly table: TableSpec
}

/**
 * sql_postgres: every declared column is a real column of its SQL type, with the primary key
 * and indexes Postgres enforces and uses. Table specs live in a troupe_tables catalog so a
 * restarted actor knows them. A batch of writes is one transaction, its inserts and upserts
 * written a group of rows per statement, and a batch that comes to one statement is one round
 * trip.
 */
export async function openPostgresTables(name: string, connection: PostgresConnection): Promise<TableBackend> {
  const pool = await openPostgresPool('sql_postgres', name, connection, types)
  const failed = (what: string) => postgresFailure('sql_postgres', name, what)
  /** A unique violation is the caller's conflict; any other failure, the backend's. */
  const writeFailed = (what: string) => (error: unknown): never => {
    if ((error as { code?: string }).code === '23505') throw new ActorError('conflict', `sql_postgres backend '${name}': ${(error as Error).message}`)
    return failed(what)(error)
  }
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

  const insertStatement = ({ type, table, columns, rows }: RowGroup): Statement => {
    const params: unknown[] = []
    const tuples = rows.map(row => `(${columns.map(column => `$${params.push(param(table, column, row[column]))}`).join(', ')})`)
    const insert = `INSERT INTO ${quoteIdent(table.name)} (${columns.map(quoteIdent).join(', ')}) VALUES ${tuples.join(', ')}`
    // Every row of a statement that succeeds is written: inserted, or an existing one updated.
    const each = (): number[] => rows.map(() => 1)
    if (type === 'insert') return { sql: insert, params, counts: each }
    const pk = table.primaryKey.map(quoteIdent).join(', ')
    const rest = columns.filter(column => !table.primaryKey.includes(column))
    if (rest.length > 0) {
      return { sql: `${insert} ON CONFLICT (${pk}) DO UPDATE SET ${rest.map(c => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`).join(', ')}`, params, counts: each }
    }
    // The row is all key: one that exists is left alone and counts 0. RETURNING names the rows
    // inserted, which maps back to the ops because a group holds each key once.
    return {
      sql: `${insert} ON CONFLICT (${pk}) DO NOTHING RETURNING ${pk}`,
      params,
      counts: result => {
        const inserted = new Set(result.rows.map(row => keyOf(table, row)))
        return rows.map(row => (inserted.has(keyOf(table, row)) ? 1 : 0))
      },
    }
  }

  const changeStatement = ({ op, table }: Change): Statement => {
    const t = quoteIdent(table.name)
    const params: unknown[] = []
    const rowCount = (result: pg.QueryResult): number[] => [result.rowCount ?? 0]
    if (op.type === 'delete') return { sql: `DELETE FROM ${t} WHERE ${whereSql(table, op.where, params)}`, params, counts: rowCount }
    const sets = Object.entries(op.values).map(([column, value]) => `${quoteIdent(column)} = $${params.push(param(table, column, value))}`)
    if (sets.length === 0) return { sql: `SELECT count(*)::int AS n FROM ${t} WHERE ${whereSql(table, op.where, params)}`, params, counts: result => [result.rows[0].n as number] }
    return { sql: `UPDATE ${t} SET ${sets.join(', ')} WHERE ${whereSql(table, op.where, params)}`, params, counts: rowCount }
  }

  /** The batch as statements, in op order, each insert or upsert joining the group before it when it can. */
  const statementsOf = (ops: readonly CheckedOp[]): Statement[] => {
    const steps: Array<RowGroup | Change> = []
    for (const checked of ops) {
      const { op, table } = checked
      if (op.type === 'update' || op.type === 'delete') {
        steps.push({ op, table })
        continue
      }
      const row = checked.packed === true ? (unpack(checked.encoded!) as Row) : op.row
      const columns = Object.keys(table.columns).filter(column => column in row)
      const key = keyOf(table, row)
      const last = steps.at(-1)
      const joins =
        last !== undefined &&
        'rows' in last &&
        last.type === op.type &&
        last.table === table &&
        sameColumns(last.columns, columns) &&
        !last.keys.has(key) &&
        (last.rows.length + 1) * columns.length <= MAX_PARAMS
      const group = joins ? last : { type: op.type, table, columns, rows: [], keys: new Set<string>() }
      if (!joins) steps.push(group)
      group.rows.push(row)
      group.keys.add(key)
    }
    return steps.map(step => ('rows' in step ? insertStatement(step) : changeStatement(step)))
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
      return writeFailed(what)(error)
    } finally {
      client.release()
    }
  }

  return {
    loadTables: async () => (await pool.query(`SELECT spec FROM ${CATALOG}`).catch(failed('SELECT'))).rows.map(row => row.spec as TableSpec),
    createTable: spec =>
      inTransaction('CREATE TABLE', async client => {
        const t = quoteIdent(spec.name)
        const pk = spec.primaryKey.map(quoteIdent).join(', ')
        const known = (await client.query(`SELECT spec FROM ${CATALOG} WHERE name = $1`, [spec.name])).rows[0]?.spec as TableSpec | undefined
        const columns = Object.entries(spec.columns).map(([column, c]) => `${quoteIdent(column)} ${SQL_TYPES[c.type]}${c.nullable ? '' : ' NOT NULL'}`)
        await client.query(`CREATE TABLE IF NOT EXISTS ${t} (${columns.join(', ')}, PRIMARY KEY (${pk}))`)
        for (const [column, c] of Object.entries(spec.columns)) {
          await client.query(`ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS ${quoteIdent(column)} ${SQL_TYPES[c.type]}`)
        }
        if (known !== undefined && !sameColumns(known.primaryKey, spec.primaryKey)) {
          // The table moves to its new key, rows and all. ADD PRIMARY KEY makes the key's columns
          // NOT NULL, and fails (conflict) if two rows share a key under the new one.
          const { rows } = await client.query(`SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'`, [t])
          const drops = rows.map(row => `DROP CONSTRAINT ${quoteIdent(row.conname as string)}, `).join('')
          await client.query(`ALTER TABLE ${t} ${drops}ADD PRIMARY KEY (${pk})`)
        }
        for (const index of spec.indexes ?? []) {
          await client.query(`CREATE INDEX IF NOT EXISTS ${quoteIdent(`${spec.name}_by_${index.join('_')}`)} ON ${t} (${index.map(quoteIdent).join(', ')})`)
        }
        await client.query(`INSERT INTO ${CATALOG} (name, spec) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec`, [spec.name, JSON.stringify(spec)])
      }),
    // `durable` asks for nothing more: a Postgres commit returns once its WAL is flushed to disk
    // (synchronous_commit, on by default; a server that turns it off has chosen otherwise).
    apply: async ops => {
      const statements = statementsOf(ops)
      const [only] = statements
      // One statement is atomic on its own: without BEGIN and COMMIT the batch is one round trip.
      if (statements.length === 1 && only !== undefined) return only.counts(await pool.query(only.sql, only.params).catch(writeFailed('write')))
      return inTransaction('write', async client => {
        const counts: number[] = []
        for (const { sql, params, counts: countsOf } of statements) counts.push(...countsOf(await client.query(sql, params)))
        return counts
      })
    },
    trim: async ({ table, before, keep, limit }: TrimQuery) => {
      const t = quoteIdent(table.name)
      const pk = table.primaryKey.map(quoteIdent).join(', ')
      const first = table.primaryKey[0]!
      const params: unknown[] = [limit]
      const oldest = (condition: string): string => `(SELECT ${pk} FROM ${t} WHERE ${condition} ORDER BY ${pk} LIMIT $1)`
      const arms: string[] = []
      // `before` bounds a numeric first key column; on any other no row is below a number (as on sql_lmdb).
      const firstType = table.columns[first]?.type
      if (before !== undefined && (firstType === 'real' || firstType === 'integer' || firstType === 'timestamp')) {
        arms.push(oldest(`${quoteIdent(first)} < $${params.push(firstType === 'real' ? before : integerBound(before))}`))
      }
      if (keep !== undefined) {
        // Rows up to the newest beyond the `keep` newest; none when there are no more than `keep`.
        const newestFirst = table.primaryKey.map(column => `${quoteIdent(column)} DESC`).join(', ')
        arms.push(oldest(`(${pk}) <= (SELECT ${pk} FROM ${t} ORDER BY ${newestFirst} OFFSET $${params.push(keep)} LIMIT 1)`))
      }
      if (arms.length === 0) return 0
      // Each arm is a prefix of the key order read off the primary key index, at most `limit`
      // rows long, so the oldest `limit` of their union are the oldest of the rows that go.
      const sql = `DELETE FROM ${t} WHERE (${pk}) IN (SELECT ${pk} FROM (${arms.join(' UNION ')}) AS oldest ORDER BY ${pk} LIMIT $1)`
      return (await pool.query(sql, params).catch(failed('DELETE'))).rowCount ?? 0
    },
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

/** A row's primary key as one string, to tell keys apart (key columns are never json). */
function keyOf(table: TableSpec, row: Row): string {
  return JSON.stringify(table.primaryKey.map(column => row[column]))
}

function sameColumns(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((column, i) => column === b[i])
}

/**
 * For an integer column, `column < before` as a bigint parameter: the same rows are below
 * ceil(before), and a column's safe integers all lie within ±2^53, so clamping keeps the
 * parameter in bigint range without changing which rows it selects.
 */
function integerBound(before: number): number {
  return Math.min(Math.max(Math.ceil(before), -(2 ** 53)), 2 ** 53)
}
