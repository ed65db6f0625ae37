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
  const out: Row = {}
  for (const [column, value] of Object.entries(row)) {
    const spec = columnOf(table, column, 'row')
    out[column] = checkValue(table, column, spec, value)
  }
  if (complete) {
    for (const [column, spec] of Object.entries(table.columns)) {
      if (column in out) continue
      if (!spec.nullable) throw new ActorError('bad_row', `table '${table.name}': row is missing required column '${column}'`)
      out[column] = null
    }
  }
  let encoded: Uint8Array
  try {
    encoded = encode(out)
  } catch (error) {
    throw new ActorError('unencodable_value', `table '${table.name}': row cannot be encoded: ${(error as Error).message}`)
  }
  if (encoded.byteLength > MAX_VALUE_BYTES) throw new ActorError('value_too_large', `table '${table.name}': row is ${encoded.byteLength} bytes, more than ${MAX_VALUE_BYTES}`)
  return { row: out, encoded }
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
  const checked = checkRow(table, row, true, encodeOwn)
  const key: Row = {}
  for (const column of keyColumns(table)) key[column] = checked.row[column]
  return { type: 'put', table: table.name, mode, key, bytes: Uint8Array.prototype.slice.call(checked.encoded) }
}
