import { pack, unpack } from 'msgpackr'
import { ActorError, defineBehavior } from '../../src/index.js'
import type { BackendConfig } from '../../src/config/index.js'
import type { CheckedOp, PageQuery, Row, SortKey, TableBackend } from './table/backend.js'
import { checkRow, checkValue, checkWhere, columnOf, keyColumns } from './table/rows.js'
import { MAX_PAGE, MAX_VALUE_BYTES, tableProtocol, type OrderBy, type RowPage, type TableMessage, type TableSpec, type WriteOp } from './protocol.js'

export interface TableStoreArgs {
  readonly name: string
  readonly config: Extract<BackendConfig, { type: 'sql_lmdb' | 'sql_postgres' }>
}

interface TableStoreState {
  readonly name: string
  readonly backend: TableBackend
  readonly tables: Map<string, TableSpec>
}

const DEFAULT_PAGE = 100

/**
 * One table backend as an actor. It knows every table's columns, types, primary key and
 * indexes, and checks each row and query against them before the backend sees it, so bad input
 * is refused with `bad_row` or `unknown_table` and nothing partial is written. fetchAll pages
 * with keyset cursors: a page starts strictly after the last row of the previous one in the
 * query's order, which always ends with the primary key, so no row is skipped or repeated.
 */
export const tableStore = defineBehavior(import.meta.url, 'tableStore', {
  protocol: tableProtocol,
  maxConcurrent: 256,
  async init(args: TableStoreArgs): Promise<TableStoreState> {
    const backend = await openBackend(args)
    const tables = new Map((await backend.loadTables()).map(spec => [spec.name, spec]))
    return { name: args.name, backend, tables }
  },
  async receive(state, msg: TableMessage) {
    switch (msg.type) {
      case 'createTable':
        checkSpec(msg.table)
        // An actor that starts creates its tables each time: one it knows unchanged costs no commit.
        if (sameSpec(state.tables.get(msg.table.name), msg.table)) return null
        await state.backend.createTable(msg.table)
        state.tables.set(msg.table.name, msg.table)
        return null
      case 'insert':
      case 'upsert':
      case 'update':
      case 'delete':
      case 'put': {
        const [count] = await state.backend.apply([checkOp(state, msg)])
        return count
      }
      case 'putMany': {
        const checked: CheckedOp[] = []
        checkPutMany(state, msg, checked)
        return (await state.backend.apply(checked)).reduce((sum, count) => sum + count, 0)
      }
      case 'transaction': {
        // A putMany is one op of the message and a run of rows for the backend: its count is their sum.
        const spans: number[] = []
        const checked: CheckedOp[] = []
        for (const op of msg.ops) {
          const before = checked.length
          if (op.type === 'putMany') checkPutMany(state, op, checked)
          else checked.push(checkOp(state, op))
          spans.push(checked.length - before)
        }
        const counts = await state.backend.apply(checked, msg.durable === true)
        if (spans.every(span => span === 1)) return counts
        let at = 0
        return spans.map(span => {
          let sum = 0
          for (const end = at + span; at < end; at++) sum += counts[at] ?? 0
          return sum
        })
      }
      case 'trim': {
        const table = tableOf(state, msg.table)
        const first = table.primaryKey[0]!
        if (msg.before !== undefined && !['integer', 'real', 'timestamp'].includes(table.columns[first]!.type)) {
          throw new ActorError('bad_row', `table '${table.name}': trim by 'before' needs a numeric first primary key column, and '${first}' is ${table.columns[first]!.type}`)
        }
        return state.backend.trim({ table, before: msg.before, keep: msg.keep, limit: msg.limit ?? 1000 })
      }
      case 'fetchOne': {
        const table = tableOf(state, msg.table)
        return (await state.backend.fetchOne(table, checkWhere(table, msg.where))) ?? null
      }
      case 'fetchAll':
        return fetchAll(state, msg)
    }
  },
  async stop(state) {
    await state.backend.close()
  },
})

async function openBackend({ name, config }: TableStoreArgs): Promise<TableBackend> {
  switch (config.type) {
    case 'sql_lmdb':
      return (await import('./table/lmdb.js')).openLmdbTables(config.path, config.map_size_mb)
    case 'sql_postgres':
      return (await import('./table/postgres.js')).openPostgresTables(name, config)
  }
}

async function fetchAll(state: TableStoreState, msg: Extract<TableMessage, { type: 'fetchAll' }>): Promise<RowPage> {
  const table = tableOf(state, msg.table)
  const where = checkWhere(table, msg.where ?? {})
  const order = effectiveOrder(table, msg.orderBy ?? [])
  const limit = Math.min(msg.limit ?? DEFAULT_PAGE, MAX_PAGE)
  const after = msg.afterRow !== undefined ? positionOf(table, order, msg.afterRow) : msg.cursor === undefined ? undefined : decodeCursor(msg.cursor, table, order)
  const query: PageQuery = { table, where, order, after, limit: limit + 1 }
  const rows = await state.backend.fetchPage(query)
  const page = rows.slice(0, limit)
  const last = page[page.length - 1]
  return { rows: page, cursor: rows.length > limit && last !== undefined ? encodeCursor(table, order, last) : null }
}

/** The query's order, then the primary key columns it does not already name (ascending). */
function effectiveOrder(table: TableSpec, orderBy: readonly OrderBy[]): SortKey[] {
  const order: SortKey[] = []
  for (const { column, direction } of orderBy) {
    const spec = columnOf(table, column, 'orderBy')
    if (spec.nullable && !table.primaryKey.includes(column)) {
      throw new ActorError('bad_row', `table '${table.name}': cannot page in order of nullable column '${column}'`)
    }
    if (!order.some(o => o.column === column)) order.push({ column, direction: direction ?? 'asc' })
  }
  for (const column of table.primaryKey) if (!order.some(o => o.column === column)) order.push({ column, direction: 'asc' })
  return order
}

/** A row's place in the order, for `afterRow`: it needs every column the order uses. */
function positionOf(table: TableSpec, order: readonly SortKey[], row: Row): unknown[] {
  return order.map(({ column }) => {
    if (!(column in row)) throw new ActorError('bad_cursor', `table '${table.name}': afterRow lacks '${column}', which the order uses`)
    return row[column]
  })
}

function encodeCursor(table: TableSpec, order: readonly SortKey[], row: Row): string {
  return Buffer.from(pack([table.name, order.map(o => `${o.column} ${o.direction}`).join(','), order.map(o => row[o.column])])).toString('base64url')
}

function decodeCursor(cursor: string, table: TableSpec, order: readonly SortKey[]): unknown[] {
  let decoded: unknown
  try {
    decoded = unpack(Buffer.from(cursor, 'base64url'))
  } catch {
    throw new ActorError('bad_cursor', `table '${table.name}': the cursor is not one this store produced`)
  }
  const [name, shape, values] = (Array.isArray(decoded) ? decoded : []) as [unknown, unknown, unknown]
  if (name !== table.name || shape !== order.map(o => `${o.column} ${o.direction}`).join(',') || !Array.isArray(values) || values.length !== order.length) {
    throw new ActorError('bad_cursor', `table '${table.name}': the cursor belongs to a different query`)
  }
  return values
}

// ---- checking input against the table's spec ----------------------------------------------

/** Whether two specs declare the same columns, key and indexes (the order of columns aside). */
function sameSpec(known: TableSpec | undefined, spec: TableSpec): boolean {
  if (known === undefined) return false
  const columns = (s: TableSpec): string => JSON.stringify(Object.entries(s.columns).sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, c]) => [name, c.type, c.nullable === true]))
  return columns(known) === columns(spec) && JSON.stringify(known.primaryKey) === JSON.stringify(spec.primaryKey) && JSON.stringify(known.indexes ?? []) === JSON.stringify(spec.indexes ?? [])
}

function tableOf(state: TableStoreState, name: string): TableSpec {
  const table = state.tables.get(name)
  if (table === undefined) throw new ActorError('unknown_table', `backend '${state.name}' has no table '${name}' (createTable it first)`)
  return table
}

function checkSpec(spec: TableSpec): void {
  for (const column of [...spec.primaryKey, ...(spec.indexes ?? []).flat()]) {
    if (spec.columns[column] === undefined) throw new ActorError('bad_row', `table '${spec.name}': key or index column '${column}' is not declared`)
  }
  for (const column of spec.primaryKey) {
    if (spec.columns[column]!.nullable) throw new ActorError('bad_row', `table '${spec.name}': primary key column '${column}' cannot be nullable`)
    if (spec.columns[column]!.type === 'json') throw new ActorError('bad_row', `table '${spec.name}': primary key column '${column}' cannot be json`)
  }
}

/** Each row of a putMany as its own checked put, its bytes a view of the op's buffer. */
function checkPutMany(state: TableStoreState, op: Extract<WriteOp, { type: 'putMany' }>, into: CheckedOp[]): void {
  const table = tableOf(state, op.table)
  const width = op.columns.length
  const needed = keyColumns(table)
  if (needed.some(column => !op.columns.includes(column))) throw new ActorError('bad_row', `table '${table.name}': putMany must carry the key columns ${needed.join(', ')}`)
  if (op.keys.length !== width * op.ends.length) throw new ActorError('bad_row', `table '${table.name}': putMany has ${op.keys.length} key values for ${op.ends.length} rows of ${width} columns`)
  const specs = op.columns.map(column => columnOf(table, column, 'key'))
  let start = 0
  for (let i = 0; i < op.ends.length; i++) {
    const end = op.ends[i]!
    if (end < start || end > op.bytes.byteLength) throw new ActorError('bad_row', `table '${table.name}': putMany row ${i} ends at ${end}, outside its bytes`)
    if (end - start > MAX_VALUE_BYTES) throw new ActorError('value_too_large', `table '${table.name}': row is ${end - start} bytes, more than ${MAX_VALUE_BYTES}`)
    const key: Row = {}
    for (let c = 0; c < width; c++) key[op.columns[c]!] = checkValue(table, op.columns[c]!, specs[c]!, op.keys[i * width + c])
    into.push({ op: { type: op.mode, table: op.table, row: key }, table, encoded: op.bytes.subarray(start, end), packed: true })
    start = end
  }
}

function checkOp(state: TableStoreState, op: Exclude<WriteOp, { type: 'putMany' }>): CheckedOp {
  const table = tableOf(state, op.table)
  const encode = state.backend.encodeRow ?? pack
  switch (op.type) {
    case 'insert':
    case 'upsert': {
      const { row, encoded } = checkRow(table, op.row, true, encode)
      return { op: { ...op, row }, table, ...(state.backend.encodeRow === undefined ? {} : { encoded }) }
    }
    case 'update': {
      const { row: values } = checkRow(table, op.values, false, encode)
      for (const column of table.primaryKey) {
        if (column in values) throw new ActorError('bad_row', `table '${table.name}': update cannot change primary key column '${column}'`)
      }
      return { op: { ...op, where: checkWhere(table, op.where), values }, table }
    }
    case 'delete':
      return { op: { ...op, where: checkWhere(table, op.where) }, table }
    case 'put': {
      // The producer checked the whole row (putOp); the store checks what it builds keys from.
      for (const column of keyColumns(table)) checkValue(table, column, columnOf(table, column, 'key'), op.key[column])
      if (op.bytes.byteLength > MAX_VALUE_BYTES) throw new ActorError('value_too_large', `table '${table.name}': row is ${op.bytes.byteLength} bytes, more than ${MAX_VALUE_BYTES}`)
      return { op: { type: op.mode, table: op.table, row: op.key }, table, encoded: op.bytes, packed: true }
    }
  }
}

