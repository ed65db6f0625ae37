import { mkdirSync } from 'node:fs'
import { asBinary, open, type Key as LmdbKey, type RootDatabaseOptionsWithPath } from 'lmdb'
import { ActorError } from '../../../src/index.js'
import type { TableSpec, Where } from '../protocol.js'
import { compareRows, type CheckedOp, type PageQuery, type Row, type SortKey, type TableBackend, type TrimQuery } from './backend.js'

/** Column values are LMDB key parts (ordered-binary also takes null, which lmdb-js's type omits). */
type Key = LmdbKey[]
const SPEC = 'm' // ['m', table] -> spec
const ROW = 'r' // ['r', table, ...primary key] -> row
const INDEX = 'x' // ['x', table, index number, ...indexed values, ...primary key] -> true
/** An index entry's value, msgpack true, encoded once. */
const PRESENT = asBinary(Uint8Array.of(0xc3))

/**
 * sql_lmdb: tables on LMDB with no SQL engine. Rows, index entries and specs share one ordered
 * key space; every write batch runs in one LMDB write transaction, so it lands whole or not at
 * all (a child transaction: see apply). A lookup uses the primary key or the index whose leading
 * columns its `where` names most of. A page walks the primary key or an index in the page's
 * order when one fits (see orderedRange), reading only its own rows; otherwise it scans the
 * matching rows and sorts them in memory.
 */
export function openLmdbTables(path: string, mapSizeMb: number): TableBackend {
  mkdirSync(path, { recursive: true })
  // Rows a producer encoded (a `put`) are plain msgpack maps: read them back as objects, as
  // lmdb-js's own record encoding reads back, not as Maps.
  // noSubdir: always a directory, as the config documents it (lmdb-js takes a path with a dot for a file).
  const db = open<unknown, Key>({ path, noSubdir: false, mapSize: mapSizeMb * 1024 * 1024, compression: false, encoder: { mapsAsObjects: true } } as RootDatabaseOptionsWithPath)
  // lmdb-js's own msgpack encoder, which its typings leave off the database.
  const encoder = (db as unknown as { encoder: { encode(value: unknown): Uint8Array } }).encoder

  const pkOf = (table: TableSpec, row: Row): Key => table.primaryKey.map(column => row[column] as LmdbKey)
  const rowKey = (table: TableSpec, row: Row): Key => [ROW, table.name, ...pkOf(table, row)]
  const indexKeys = (table: TableSpec, row: Row): Key[] =>
    (table.indexes ?? []).map((columns, i) => [INDEX, table.name, i, ...columns.map(column => (row[column] ?? null) as LmdbKey), ...pkOf(table, row)])

  /** `encoded`: the row as encodeRow made it, when the caller has it. */
  const putRow = (table: TableSpec, row: Row, encoded?: Uint8Array): void => {
    void db.put(rowKey(table, row), encoded === undefined ? row : asBinary(encoded))
    for (const key of indexKeys(table, row)) void db.put(key, PRESENT)
  }
  const removeRow = (table: TableSpec, row: Row): void => {
    void db.remove(rowKey(table, row))
    for (const key of indexKeys(table, row)) void db.remove(key)
  }

  /**
   * Rewrites a row whose primary key stays (an update cannot change it), touching only the
   * index entries whose values changed: an update of a lease's expiry leaves every index alone.
   */
  const updateRow = (table: TableSpec, old: Row, row: Row): void => {
    void db.put(rowKey(table, row), row)
    const before = indexKeys(table, old)
    const after = indexKeys(table, row)
    after.forEach((key, i) => {
      if (sameList(key, before[i]!)) return
      void db.remove(before[i]!)
      void db.put(key, PRESENT)
    })
  }

  const matches = (row: Row, where: Where): boolean => Object.entries(where).every(([column, value]) => (row[column] ?? null) === (value ?? null))

  /** Rows matching `where`, through the primary key, the best index, or a scan. */
  function* matching(table: TableSpec, where: Where): Generator<Row> {
    if (table.primaryKey.every(column => column in where && where[column] !== null)) {
      const row = db.get([ROW, table.name, ...table.primaryKey.map(column => where[column] as LmdbKey)]) as Row | undefined
      if (row !== undefined && matches(row, where)) yield row
      return
    }
    let best: { index: number; prefix: Key } | undefined
    ;(table.indexes ?? []).forEach((columns, index) => {
      const prefix: Key = []
      for (const column of columns) {
        if (!(column in where)) break
        prefix.push((where[column] ?? null) as LmdbKey)
      }
      if (prefix.length > 0 && (best === undefined || prefix.length > best.prefix.length)) best = { index, prefix }
    })
    if (best !== undefined) {
      const start: Key = [INDEX, table.name, best.index, ...best.prefix]
      const width = (table.indexes![best.index]!).length
      for (const { key } of db.getRange({ start })) {
        if (!startsWith(key as Key, start)) break
        const row = db.get([ROW, table.name, ...(key as Key).slice(3 + width)]) as Row | undefined
        if (row !== undefined && matches(row, where)) yield row
      }
      return
    }
    const start: Key = [ROW, table.name]
    for (const { key, value } of db.getRange({ start })) {
      if (!startsWith(key as Key, start)) break
      if (matches(value as Row, where)) yield value as Row
    }
  }

  /**
   * lmdb-js's async transactions under way. A synchronous one is begun only when there are none:
   * it would wait for the write lock that an async one holds while it waits for this thread to
   * run its callback.
   */
  let asyncTransactions = 0
  const inAsyncTransaction = async <T>(callback: () => T): Promise<T> => {
    asyncTransactions++
    try {
      return await db.transaction(callback)
    } finally {
      asyncTransactions--
    }
  }

  const applyOne = ({ op, table, encoded }: CheckedOp): number => {
    switch (op.type) {
      case 'insert': {
        if (db.doesExist(rowKey(table, op.row))) {
          throw new ActorError('conflict', `table '${table.name}': a row with primary key ${JSON.stringify(pkOf(table, op.row))} already exists`)
        }
        putRow(table, op.row, encoded)
        return 1
      }
      case 'upsert': {
        // An upsert usually brings a new key (the inference store's): doesExist answers that
        // without decoding, and only an existing row is read, for its index entries.
        const key = rowKey(table, op.row)
        const old = db.doesExist(key) ? (db.get(key) as Row) : undefined
        if (old !== undefined) removeRow(table, old)
        putRow(table, op.row, encoded)
        return 1
      }
      case 'update': {
        const rows = [...matching(table, op.where)]
        for (const row of rows) updateRow(table, row, { ...row, ...op.values })
        return rows.length
      }
      case 'delete': {
        const rows = [...matching(table, op.where)]
        for (const row of rows) removeRow(table, row)
        return rows.length
      }
    }
  }

  return {
    loadTables: async () => {
      const specs: TableSpec[] = []
      for (const { key, value } of db.getRange({ start: [SPEC] })) {
        if ((key as Key)[0] !== SPEC) break
        specs.push(value as TableSpec)
      }
      return specs
    },
    createTable: async spec => {
      await inAsyncTransaction(() =>
        db.childTransaction(() => {
        const old = db.get([SPEC, spec.name]) as TableSpec | undefined
        void db.put([SPEC, spec.name], spec)
        if (old === undefined) return
        const rekeyed = !sameList(old.primaryKey, spec.primaryKey)
        if (!rekeyed && JSON.stringify(old.indexes ?? []) === JSON.stringify(spec.indexes ?? [])) return
        if (rekeyed) {
          // The primary key changed: every row moves to its key under the new one, its bytes as
          // they are. Every index entry ends with the key, so all are rebuilt below.
          const moves: Array<{ from: Key; to: Key; bytes: Uint8Array }> = []
          for (const { key, value } of db.getRange({ start: [ROW, spec.name] })) {
            if (!startsWith(key as Key, [ROW, spec.name])) break
            moves.push({ from: key as Key, to: rowKey(spec, value as Row), bytes: Buffer.from(db.getBinary(key as Key)!) })
          }
          const keys = new Set(moves.map(move => JSON.stringify(move.to)))
          if (keys.size < moves.length) throw new ActorError('conflict', `table '${spec.name}': rows would share a primary key under (${spec.primaryKey.join(', ')}); the table keeps its old key`)
          for (const { from } of moves) void db.remove(from)
          for (const { to, bytes } of moves) void db.put(to, asBinary(bytes))
        }
        // The indexes or the key changed: rebuild every entry of this table's indexes.
        for (const { key } of db.getRange({ start: [INDEX, spec.name] })) {
          if ((key as Key)[0] !== INDEX || (key as Key)[1] !== spec.name) break
          void db.remove(key as Key)
        }
        for (const row of matching(spec, {})) for (const key of indexKeys(spec, row)) void db.put(key, PRESENT)
        }),
      )
    },
    // A durable batch with no other transaction under way commits here, synchronously: the
    // thread waits out the fsync (a few hundred µs), which lmdb-js's async writer would spend in
    // two hand-offs between this thread and its own besides (measured in npm run bench:
    // wf_http_run_p50_ms, wf_run_tput). A failing callback aborts the whole transaction.
    //
    // Otherwise lmdb-js's async transaction() shares one commit with other writes and keeps what
    // a failing callback wrote before it threw; a child transaction inside it is what rolls
    // back. It resolves once committed; the fsync of that commit follows (overlappingSync), and
    // `flushed` resolves once it is done.
    apply: async (ops, durable) => {
      if (durable === true && asyncTransactions === 0) {
        const counts = db.transactionSync(() => ops.map(applyOne))
        await db.flushed
        return counts
      }
      const counts = await inAsyncTransaction(() => db.childTransaction(() => ops.map(applyOne)))
      if (durable === true) await db.flushed
      return counts
    },
    trim: async ({ table, before, keep, limit }: TrimQuery) => {
      const start: Key = [ROW, table.name]
      // The newest `keep` rows stay: the one just older than them, and every row before it, go.
      const newestGone = keep === undefined ? undefined : ([...db.getKeys({ start: [ROW, table.name, ABOVE_ALL], reverse: true, offset: keep, limit: 1 })][0] as Key | undefined)
      let beyondKeep = newestGone !== undefined && startsWith(newestGone, start)
      const victims: Key[] = []
      for (const key of db.getKeys({ start, limit }) as Iterable<Key>) {
        if (!startsWith(key, start)) break
        const old = before !== undefined && (key[2] as number) < before
        if (!old && !beyondKeep) break
        victims.push(key)
        if (beyondKeep && sameList(key, newestGone!)) beyondKeep = false
      }
      if (victims.length === 0) return 0
      return await inAsyncTransaction(() => {
        let removed = 0
        for (const key of victims) {
          const row = db.get(key) as Row | undefined
          if (row === undefined) continue
          removeRow(table, row)
          removed++
        }
        return removed
      })
    },
    // A copy (Buffer.from; a Buffer's slice is a view): the encoder hands back a view of its own
    // buffer, which lmdb-js encodes its writes into and may reset to reuse.
    encodeRow: row => Buffer.from(encoder.encode(row)),
    fetchOne: async (table, where) => matching(table, where).next().value ?? undefined,
    fetchPage: async ({ table, where, order, after, limit }: PageQuery) => {
      const range = orderedRange(table, where, order)
      if (range !== undefined) {
        // Walk the keys in the page's order from just after `after`: the page costs its own rows.
        // The key after the prefix holds the suffix columns: bound ones from `where`, the others
        // from `after`, which holds the page order's values.
        const valueAfter = (column: string): LmdbKey => (where[column] !== undefined ? where[column] : after![order.findIndex(o => o.column === column)]) as LmdbKey
        const from: Key | undefined = after === undefined ? undefined : [...range.prefix, ...range.suffix.map(valueAfter)]
        const reverse = range.direction === 'desc'
        const rows: Row[] = []
        for (const { key, value } of db.getRange(reverse ? { start: from ?? [...range.prefix, ABOVE_ALL], reverse } : { start: from ?? range.prefix })) {
          if (!startsWith(key as Key, range.prefix)) break
          if (from !== undefined && sameList(key as Key, from)) continue
          const row = range.index === undefined ? (value as Row) : (db.get([ROW, table.name, ...(key as Key).slice(-table.primaryKey.length)]) as Row | undefined)
          if (row === undefined || !matches(row, where)) continue
          rows.push(row)
          if (rows.length >= limit) break
        }
        return rows
      }
      // No index serves this order: scan the matching rows and sort them.
      const sortValues = (row: Row): unknown[] => order.map(o => row[o.column])
      const rows = [...matching(table, where)].filter(row => after === undefined || compareRows(order, sortValues(row), after) > 0)
      rows.sort((a, b) => compareRows(order, sortValues(a), sortValues(b)))
      return rows.slice(0, limit)
    },
    close: async () => {
      await db.flushed
      await db.close()
    },
  }
}

/**
 * A key part above every value a column holds: ordered-binary writes a Uint8Array as its raw
 * bytes, and no string or number encoding starts with 0xff.
 */
const ABOVE_ALL = Uint8Array.of(0xff)

/**
 * Where a page can be read in its order straight off the keys. A key layout serves when, past
 * its leading columns bound by `where` (the prefix), its remaining columns, less any other bound
 * ones, are the page order's columns less the bound ones, all in one direction: a column bound
 * by equality is constant across the page, so it neither orders it nor breaks the walk. The
 * layouts are the primary key and each index (its columns, then the primary key's). The columns
 * walked must be non-nullable, so that the key order is the order compareRows sorts by. The
 * layout binding most `where` columns wins; undefined when none serves.
 */
function orderedRange(
  table: TableSpec,
  where: Where,
  order: readonly SortKey[],
): { prefix: Key; suffix: string[]; index: number | undefined; direction: 'asc' | 'desc' } | undefined {
  const bound = (column: string): boolean => where[column] !== undefined
  const free = order.filter(o => !bound(o.column))
  const direction = free[0]?.direction ?? 'asc'
  if (free.some(o => o.direction !== direction)) return undefined
  const columns = free.map(o => o.column)
  const layouts: Array<{ start: Key; parts: string[]; index: number | undefined }> = [
    { start: [ROW, table.name], parts: [...table.primaryKey], index: undefined },
    ...(table.indexes ?? []).map((indexColumns, index) => ({ start: [INDEX, table.name, index] as Key, parts: [...indexColumns, ...table.primaryKey], index })),
  ]
  let best: { prefix: Key; suffix: string[]; index: number | undefined; direction: 'asc' | 'desc'; leading: number } | undefined
  for (const { start, parts, index } of layouts) {
    let leading = 0
    while (leading < parts.length && bound(parts[leading]!)) leading++
    const suffix = parts.slice(leading)
    const walked = suffix.filter(column => !bound(column))
    if (!sameList(columns, walked)) continue
    if (walked.some(column => table.columns[column]?.nullable === true)) continue
    if (best !== undefined && best.leading >= leading) continue
    best = { prefix: [...start, ...parts.slice(0, leading).map(column => (where[column] ?? null) as LmdbKey)], suffix, index, direction, leading }
  }
  return best
}

/** Whether two lists (column names, key parts) hold the same items in the same order. */
function sameList(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((item, i) => item === b[i])
}

function startsWith(key: Key, prefix: Key): boolean {
  return prefix.every((part, i) => key[i] === part)
}
