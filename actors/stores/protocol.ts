import { z } from 'zod'
import { ActorError } from '../../src/index.js'

/**
 * The store actors' protocols. One actor serves one configured backend; every store that
 * references the backend passes its `namespace` (key-value) or its table names (table) in
 * each message. Values are any msgpack-encodable data.
 */

export const MAX_KEY_BYTES = 512
export const MAX_VALUE_BYTES = 16 * 1024 * 1024
export const MAX_PAGE = 1000

const namespace = z.string().min(1)
const key = z.string().min(1)
const ttlMs = z.number().int().positive().optional()
/**
 * Reply with the stored msgpack bytes instead of decoded values: for `get`, the value's bytes
 * (null when missing); for `getMany`, one msgpack array of the values (nil for missing ones),
 * made by concatenating what is stored. The values then cross threads as one copy of bytes and
 * are decoded once, by the caller, with one unpack (KvClient does this).
 */
const packed = z.boolean().optional()

export const kvProtocol = z.discriminatedUnion('type', [
  z.object({ type: z.literal('get'), namespace, key, packed }),
  z.object({ type: z.literal('getMany'), namespace, keys: z.array(key), packed }),
  z.object({ type: z.literal('set'), namespace, key, value: z.unknown(), ttlMs }),
  /** Every entry is checked before any is written: one bad entry refuses the lot, writing nothing. */
  z.object({ type: z.literal('setMany'), namespace, entries: z.array(z.object({ key, value: z.unknown(), ttlMs })) }),
  /**
   * setMany with the values already msgpack-encoded by the caller: `bytes` holds them back to
   * back, value i ending at `ends[i]`; `ttlMs[i]` is 0 for no expiry. The store checks keys and
   * sizes, not the encoding: it writes the bytes as they are and a packed read returns them so.
   * KvClient sends its batched sets this way, so a value is encoded once, on the caller's thread.
   */
  z.object({
    type: z.literal('setManyPacked'),
    namespace,
    keys: z.array(key),
    bytes: z.custom<Uint8Array>(value => value instanceof Uint8Array, 'must be a Uint8Array'),
    ends: z.array(z.number().int().nonnegative()),
    ttlMs: z.array(z.number().int().nonnegative()).optional(),
  }),
  z.object({ type: z.literal('delete'), namespace, key }),
  /** Keys starting with `prefix`, in byte order, `limit` at a time; pass back `cursor` for the next page. */
  z.object({ type: z.literal('scan'), namespace, prefix: z.string().optional(), limit: z.number().int().min(1).max(MAX_PAGE).optional(), cursor: z.string().optional() }),
])
export type KvMessage = z.infer<typeof kvProtocol>

/** Throws `invalid_key` unless `namespace` is a non-empty string without NUL (backends use NUL to end it). */
export function checkNamespace(namespace: string): void {
  if (typeof namespace !== 'string' || namespace.length === 0 || namespace.includes('\u0000')) {
    throw new ActorError('invalid_key', `a namespace must be a non-empty string without NUL, got ${JSON.stringify(namespace)}`)
  }
}

/** Throws `invalid_key` unless `key` is a non-empty string that fits beside its namespace. */
export function checkKey(namespace: string, key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw new ActorError('invalid_key', 'a key must be a non-empty string')
  // A UTF-16 code unit is at most 3 UTF-8 bytes: short keys need no byte count.
  if ((key.length + namespace.length) * 3 > MAX_KEY_BYTES && Buffer.byteLength(key) + Buffer.byteLength(namespace) > MAX_KEY_BYTES) {
    throw new ActorError('invalid_key', `key '${key.slice(0, 40)}…' and its namespace exceed ${MAX_KEY_BYTES} bytes`)
  }
}

export interface KvPage {
  readonly items: Array<{ key: string; value: unknown }>
  /** Pass to the next scan; null when this was the last page. */
  readonly cursor: string | null
}

export const COLUMN_TYPES = ['text', 'integer', 'real', 'boolean', 'json', 'timestamp'] as const
export type ColumnType = (typeof COLUMN_TYPES)[number]

const identifier = z.string().regex(/^[a-z_][a-z0-9_]*$/, 'must be a lowercase SQL identifier')
export const columnSpec = z.object({ type: z.enum(COLUMN_TYPES), nullable: z.boolean().optional() })
export type ColumnSpec = z.infer<typeof columnSpec>

export const tableSpec = z.object({
  name: identifier,
  columns: z.record(identifier, columnSpec),
  primaryKey: z.array(identifier).min(1),
  indexes: z.array(z.array(identifier).min(1)).optional(),
})
export type TableSpec = z.infer<typeof tableSpec>

/** Equality on every named column. */
export type Where = Record<string, unknown>
export interface OrderBy {
  readonly column: string
  readonly direction?: 'asc' | 'desc' | undefined
}

const where = z.record(z.string(), z.unknown())
const row = z.record(z.string(), z.unknown())

const bytes = z.custom<Uint8Array>(value => value instanceof Uint8Array, 'must be a Uint8Array')

export const writeOp = z.discriminatedUnion('type', [
  z.object({ type: z.literal('insert'), table: identifier, row }),
  z.object({ type: z.literal('upsert'), table: identifier, row }),
  z.object({ type: z.literal('update'), table: identifier, where, values: row }),
  z.object({ type: z.literal('delete'), table: identifier, where }),
  /**
   * An insert or upsert of a row its producer already checked and encoded (putOp in
   * table/rows.ts): `bytes` is the whole row as msgpack, `key` its primary key and indexed
   * columns. The store checks the key columns and the size, and writes the bytes as they are:
   * the row is encoded once, on the thread that made it, and never decoded on the way in.
   */
  z.object({ type: z.literal('put'), table: identifier, mode: z.enum(['insert', 'upsert']), key: row, bytes }),
  /**
   * Puts of many rows of one table, as one op: the rows' bytes back to back (row i ends at
   * `ends[i]`), and their key columns (`columns`, in that order) flattened row after row into
   * `keys`. The batched writer sends consecutive puts so: one buffer and two flat lists cross
   * the threads instead of an object per row. Its count is the number of rows written.
   */
  z.object({
    type: z.literal('putMany'),
    table: identifier,
    mode: z.enum(['insert', 'upsert']),
    columns: z.array(z.string()),
    keys: z.array(z.unknown()),
    bytes,
    ends: z.array(z.number().int().nonnegative()),
  }),
])
export type WriteOp = z.infer<typeof writeOp>

export const tableProtocol = z.discriminatedUnion('type', [
  z.object({ type: z.literal('createTable'), table: tableSpec }),
  ...writeOp.options,
  z.object({ type: z.literal('fetchOne'), table: identifier, where }),
  z.object({
    type: z.literal('fetchAll'),
    table: identifier,
    where: where.optional(),
    orderBy: z.array(z.object({ column: z.string(), direction: z.enum(['asc', 'desc']).optional() })).optional(),
    limit: z.number().int().min(1).max(MAX_PAGE).optional(),
    cursor: z.string().optional(),
    /** Instead of a cursor: start strictly after this row (an earlier page's, or one fetched by id). */
    afterRow: row.optional(),
  }),
  /**
   * All or nothing: every op applies, or none does. Replies with each op's count of rows once
   * the transaction is committed (visible to every reader, and in the operating system's hands,
   * so a crash of this process cannot lose it); with `durable`, only once it is also on disk
   * (fsynced), so that power loss cannot either.
   */
  z.object({ type: z.literal('transaction'), ops: z.array(writeOp).min(1), durable: z.boolean().optional() }),
  /**
   * Removes a table's oldest rows, in primary key order: those whose first primary key column is
   * below `before`, and those older than the newest `keep`. At most `limit` rows (default 1000)
   * in one transaction; replies with the number removed, so a caller trims a large backlog in
   * several calls without holding the store for long.
   */
  z.object({
    type: z.literal('trim'),
    table: identifier,
    before: z.number().optional(),
    keep: z.number().int().nonnegative().optional(),
    limit: z.number().int().min(1).max(10_000).optional(),
  }),
])
export type TableMessage = z.infer<typeof tableProtocol>

export interface RowPage {
  readonly rows: Array<Record<string, unknown>>
  readonly cursor: string | null
}

/** Codes store actors reject messages with (each is in docs/errors.md). */
export const STORE_ERROR_CODES = {
  invalid_key: 'a key is empty, too long, or not a string',
  value_too_large: `a value encodes to more than ${MAX_VALUE_BYTES} bytes`,
  unencodable_value: 'a value cannot be encoded as msgpack',
  unknown_table: 'the table was never created on this backend',
  bad_row: "a row has a column the table does not declare, a value of the wrong type, or misses a required column",
  conflict: 'an insert whose primary key already exists',
  bad_cursor: 'a pagination cursor that this query did not produce',
  backend_unavailable: 'the backend server could not be reached or failed the operation',
  not_found: 'no stored record (chat completion, conversation, item) with that id',
} as const
