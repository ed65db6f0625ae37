import { Packr } from 'msgpackr'
import { ActorError } from '../../../src/index.js'
import { MAX_VALUE_BYTES, type ColumnSpec, type TableSpec, type Where, type WriteOp } from '../protocol.js'
import type { Row } from './backend.js'

/**
 * Rows checked against their table's spec: by the table store for the rows it is sent, and by
 * a producer for the rows it encodes itself (encodeRow), so that the bytes a `put` carries were
 * checked as carefully as any row the store checks.
 */

export function columnOf(table: TableSpec, column: string, where: string): ColumnSpec {
  const spec = table.columns[column]
  if (spec === undefined) throw new ActorError('bad_row', `table '${table.name}' has no column '${column}' (in ${where})`)
  return spec
}

/**
 * A complete row (every column, nullable ones defaulting to null), or the named subset for an
 * update, with its encoding, whose size is checked.
 */
export function checkRow(table: TableSpec, row: Row, complete: boolean, encode: (row: Row) => Uint8Array): { row: Row; encoded: Uint8Array } {
  const out = checkedCopy(table, row, complete)
  return { row: out, encoded: encodeChecked(table, out, encode) }
}

/** The row's values checked (undefined made null), and for a complete row nulls for the nullable columns it lacks. */
function checkedCopy(table: TableSpec, row: Row, complete: boolean): Row {
  const out: Row = {}
  for (const column in row) {
    if (!Object.hasOwn(row, column)) continue
    out[column] = checkValue(table, column, columnOf(table, column, 'row'), row[column])
  }
  if (!complete) return out
  for (const [column, spec] of columnsOf(table)) {
    if (column in out) continue
    if (!spec.nullable) throw new ActorError('bad_row', `table '${table.name}': row is missing required column '${column}'`)
    out[column] = null
  }
  return out
}

function encodeChecked(table: TableSpec, row: Row, encode: (row: Row) => Uint8Array): Uint8Array {
  let encoded: Uint8Array
  try {
    encoded = encode(row)
  } catch (error) {
    throw new ActorError('unencodable_value', `table '${table.name}': row cannot be encoded: ${(error as Error).message}`)
  }
  if (encoded.byteLength > MAX_VALUE_BYTES) throw new ActorError('value_too_large', `table '${table.name}': row is ${encoded.byteLength} bytes, more than ${MAX_VALUE_BYTES}`)
  return encoded
}

export function checkWhere(table: TableSpec, where: Where): Where {
  for (const [column, value] of Object.entries(where)) checkValue(table, column, columnOf(table, column, 'where'), value, true)
  return where
}

export function checkValue(table: TableSpec, column: string, spec: ColumnSpec, value: unknown, inWhere = false): unknown {
  if (value === null || value === undefined) {
    if (!spec.nullable && !inWhere) throw new ActorError('bad_row', `table '${table.name}': column '${column}' cannot be null`)
    return null
  }
  const ok = (() => {
    switch (spec.type) {
      case 'text':
        return typeof value === 'string'
      case 'integer':
      case 'timestamp':
        return Number.isSafeInteger(value)
      case 'real':
        return typeof value === 'number' && Number.isFinite(value)
      case 'boolean':
        return typeof value === 'boolean'
      case 'json':
        return true
    }
  })()
  if (!ok) throw new ActorError('bad_row', `table '${table.name}': column '${column}' is ${spec.type}, got ${JSON.stringify(value)?.slice(0, 40) ?? typeof value}`)
  return value
}

/**
 * The columns a table's keys are made of: its primary key, then each indexed column the key
 * does not hold. A `put` carries these, and only these, beside the row's bytes.
 */
export function keyColumns(table: TableSpec): readonly string[] {
  let columns = KEY_COLUMNS.get(table)
  if (columns === undefined) {
    columns = [...new Set([...table.primaryKey, ...(table.indexes ?? []).flat()])]
    KEY_COLUMNS.set(table, columns)
  }
  return columns
}
const KEY_COLUMNS = new WeakMap<TableSpec, readonly string[]>()

function columnsOf(table: TableSpec): ReadonlyArray<readonly [string, ColumnSpec]> {
  let columns = COLUMNS.get(table)
  if (columns === undefined) {
    columns = Object.entries(table.columns)
    COLUMNS.set(table, columns)
  }
  return columns
}
const COLUMNS = new WeakMap<TableSpec, ReadonlyArray<readonly [string, ColumnSpec]>>()

/**
 * Plain msgpack (no record extension), which every backend decodes: LMDB's own encoder reads
 * it back as it reads the rows it encoded itself.
 */
const packr = new Packr({ useRecords: false })
const encodeOwn = (row: Row): Uint8Array => packr.pack(row)

/**
 * A producer's `put` of a row: checked against the table's spec (bad_row, value_too_large,
 * unencodable_value, thrown here, on the producer's thread) and encoded once. The bytes are a
 * copy of their own: msgpackr packs into a scratch buffer it reuses.
 */
export function putOp(table: TableSpec, row: Row, mode: 'insert' | 'upsert'): Extract<WriteOp, { type: 'put' }> {
  // As checkRow, but a complete row, as producers make them, is encoded as it is, not copied:
  // this runs for every record written.
  let columns = 0
  let exact = true
  for (const column in row) {
    if (!Object.hasOwn(row, column)) continue
    const value = row[column]
    exact &&= checkValue(table, column, columnOf(table, column, 'row'), value) === value
    columns++
  }
  let full = row
  if (!exact || columns < columnsOf(table).length) full = checkedCopy(table, row, true)
  const encoded = encodeChecked(table, full, encodeOwn)
  const key: Row = {}
  for (const column of keyColumns(table)) key[column] = full[column]
  return { type: 'put', table: table.name, mode, key, bytes: Uint8Array.prototype.slice.call(encoded) }
}
