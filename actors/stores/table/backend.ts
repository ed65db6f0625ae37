import { compareUtf8 } from '../byte-order.js'
import type { TableSpec, Where, WriteOp } from '../protocol.js'

export type Row = Record<string, unknown>

/** One column of a page order, its direction settled. */
export interface SortKey {
  readonly column: string
  readonly direction: 'asc' | 'desc'
}

/** A page query after the store actor has checked it: `order` always ends with the primary key. */
export interface PageQuery {
  readonly table: TableSpec
  readonly where: Where
  readonly order: readonly SortKey[]
  /** The sort values of the last row of the previous page; rows strictly after it. */
  readonly after: readonly unknown[] | undefined
  readonly limit: number
}

/**
 * A write the store actor has checked. `encoded` is the row's stored bytes when the backend
 * encodes rows (see encodeRow) or when its producer did (a `put`). For a `put`, `packed` is true
 * and `op` is an insert or upsert whose `row` holds only the key columns (primary key and
 * indexed): the whole row is `encoded`, as msgpack, for the backend to store as it is (or to
 * decode, if it stores columns).
 */
export interface CheckedOp {
  readonly op: Exclude<WriteOp, { type: 'put' | 'putMany' }>
  readonly table: TableSpec
  readonly encoded?: Uint8Array
  readonly packed?: boolean
}

/** Which of a table's oldest rows a trim removes (see the `trim` message). */
export interface TrimQuery {
  readonly table: TableSpec
  readonly before?: number | undefined
  readonly keep?: number | undefined
  readonly limit: number
}

/**
 * What a table backend implements. The store actor above it checks every row and query
 * against the table's spec first, so a backend sees only well-formed input.
 */
export interface TableBackend {
  /** Specs of the tables created on this backend before, so a restarted actor knows them. */
  loadTables(): Promise<TableSpec[]>
  createTable(spec: TableSpec): Promise<void>
  /**
   * All the ops in one transaction; each op's count of rows written. Throws (writes nothing) on
   * any failure. Resolves once committed; with `durable`, once the commit is on disk.
   */
  apply(ops: readonly CheckedOp[], durable?: boolean): Promise<number[]>
  /** Removes the oldest rows a trim names, in one transaction; how many it removed. */
  trim(query: TrimQuery): Promise<number>
  /**
   * A backend that stores whole rows as msgpack gives its encoding here. The store actor then
   * checks the size of these bytes, not of an encoding of its own, and passes them to apply
   * with the insert or upsert, so the row is encoded once.
   */
  encodeRow?(row: Row): Uint8Array
  fetchOne(table: TableSpec, where: Where): Promise<Row | undefined>
  fetchPage(query: PageQuery): Promise<Row[]>
  close(): Promise<void>
}

/** Compares rows' sort values in a page order, strings in the stores' byte order. */
export function compareRows(order: readonly SortKey[], a: readonly unknown[], b: readonly unknown[]): number {
  for (let i = 0; i < order.length; i++) {
    const x = a[i]
    const y = b[i]
    const c = typeof x === 'string' && typeof y === 'string' ? compareUtf8(x, y) : x === y ? 0 : (x as number) < (y as number) ? -1 : 1
    if (c !== 0) return order[i]!.direction === 'desc' ? -c : c
  }
  return 0
}
