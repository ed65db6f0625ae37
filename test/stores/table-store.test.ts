import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import t, { type Test } from 'tap'
import type { ActorRef } from '../../src/index.js'
import { tableStore, type TableStoreArgs } from '../../actors/stores/table-store.js'
import type { RowPage, TableMessage, TableSpec, WriteOp } from '../../actors/stores/protocol.js'
import { POSTGRES, unreachable } from '../fixtures/servers.js'
import { startSystem } from '../fixtures/system.js'

const lmdbDir = mkdtempSync(join(tmpdir(), 'troupe-sql-'))
t.teardown(() => rmSync(lmdbDir, { recursive: true, force: true }))
const postgresSkip = await unreachable('Postgres', 5432)

// The LMDB path has a dot in its last name: it is still the environment's directory, not a file.
const backends: Array<{ label: string; args: TableStoreArgs; skip: string | undefined }> = [
  { label: 'sql_lmdb', args: { name: 'lmdb', config: { type: 'sql_lmdb', path: join(lmdbDir, 'data.lmdb'), map_size_mb: 256 } }, skip: undefined },
  { label: 'sql_postgres', args: { name: 'pg', config: { type: 'sql_postgres', ...POSTGRES } }, skip: postgresSkip },
]

let tables = 0
const created: string[] = []
const freshTable = (): string => {
  const name = `t_${process.pid}_${Date.now() % 1e6}_${++tables}`
  created.push(name)
  return name
}

if (postgresSkip === undefined) {
  t.teardown(async () => {
    const client = new pg.Client({ host: POSTGRES.host, port: POSTGRES.port, database: POSTGRES.db, user: POSTGRES.user })
    await client.connect()
    for (const name of created) await client.query(`DROP TABLE IF EXISTS "${name}"`)
    await client.query('DELETE FROM troupe_tables WHERE name = ANY($1)', [created]).catch(() => undefined)
    await client.end()
  })
}

const messages = (name: string): TableSpec => ({
  name,
  columns: {
    id: { type: 'text' },
    conversation: { type: 'text' },
    created: { type: 'timestamp' },
    score: { type: 'real', nullable: true },
    pinned: { type: 'boolean' },
    body: { type: 'json' },
    tokens: { type: 'integer', nullable: true },
  },
  primaryKey: ['id'],
  indexes: [['conversation', 'created']],
})

const row = (i: number, conversation = 'c1') => ({
  id: `m${String(i).padStart(3, '0')}`,
  conversation,
  created: 1_700_000_000_000 + (i % 5) * 1000, // ties on purpose: the primary key breaks them
  score: i % 3 === 0 ? null : i / 4,
  pinned: i % 2 === 0,
  body: { role: 'user', content: `hello ${i}`, parts: [i, 'é'] },
  tokens: i,
})

type PageQueryCase = { where?: Record<string, unknown>; orderBy: Array<{ column: string; direction: 'asc' | 'desc' }> }

/**
 * Pages through each query three rows at a time, by afterRow, and checks what comes back against
 * a full sort of `rows`. The queries order by columns that leave no ties.
 */
async function checkPages(
  t: Test,
  store: ActorRef<TableMessage>,
  table: string,
  rows: ReadonlyArray<Record<string, unknown>>,
  queries: readonly PageQueryCase[],
  idOf: (row: Record<string, unknown>) => string,
): Promise<void> {
  const sign = (direction: 'asc' | 'desc') => (direction === 'asc' ? 1 : -1)
  for (const query of queries) {
    const expected = rows
      .filter(r => Object.entries(query.where ?? {}).every(([column, value]) => r[column] === value))
      .sort((a, b) => {
        for (const { column, direction } of query.orderBy) {
          const x = a[column] as string | number
          const y = b[column] as string | number
          if (x !== y) return (x < y ? -1 : 1) * sign(direction)
        }
        return 0
      })
      .map(idOf)
    const seen: string[] = []
    let after: Record<string, unknown> | undefined
    for (let pages = 0; pages < 30; pages++) {
      const page: RowPage = await store.ask({ type: 'fetchAll', table, ...query, limit: 3, ...(after ? { afterRow: after } : {}) })
      seen.push(...page.rows.map(idOf))
      if (page.cursor === null) break
      after = page.rows.at(-1)
    }
    t.same(seen, expected, JSON.stringify(query))
  }
}

for (const backend of backends) {
  t.test(`${backend.label} honours the table contract`, { skip: backend.skip ?? false }, async t => {
    const system = await startSystem(t)
    let store: ActorRef<TableMessage> = await system.spawn(tableStore, { placement: 'pool', args: backend.args })

    await t.test('rows round-trip with every column type, nulls included', async t => {
      const table = freshTable()
      t.equal(await store.ask({ type: 'createTable', table: messages(table) }), null)
      t.equal(await store.ask({ type: 'insert', table, row: row(3) }), 1)
      t.same(await store.ask({ type: 'fetchOne', table, where: { id: 'm003' } }), row(3))
      t.equal(await store.ask({ type: 'fetchOne', table, where: { id: 'nope' } }), null)
      const partial = { id: 'm900', conversation: 'c9', created: 5, pinned: true, body: [1, 2] }
      await store.ask({ type: 'insert', table, row: partial })
      t.same(await store.ask({ type: 'fetchOne', table, where: { id: 'm900' } }), { ...partial, score: null, tokens: null }, 'missing nullable columns are null')
      t.same(await store.ask({ type: 'fetchOne', table, where: { conversation: 'c9', score: null } }), { ...partial, score: null, tokens: null }, 'where on null')
    })

    await t.test('insert refuses a taken key; upsert replaces; update and delete count rows', async t => {
      const table = freshTable()
      await store.ask({ type: 'createTable', table: messages(table) })
      for (let i = 0; i < 6; i++) await store.ask({ type: 'insert', table, row: row(i, i < 4 ? 'a' : 'b') })
      await t.rejects(store.ask({ type: 'insert', table, row: row(1) }), { code: 'conflict' })
      t.equal(await store.ask({ type: 'upsert', table, row: { ...row(1, 'a'), tokens: 99 } }), 1)
      t.equal(((await store.ask({ type: 'fetchOne', table, where: { id: 'm001' } })) as { tokens: number }).tokens, 99)
      t.equal(await store.ask({ type: 'update', table, where: { conversation: 'a' }, values: { pinned: true } }), 4)
      t.equal(await store.ask({ type: 'update', table, where: { conversation: 'none' }, values: { pinned: true } }), 0)
      t.equal(await store.ask({ type: 'delete', table, where: { conversation: 'b' } }), 2)
      const left = await store.ask<RowPage>({ type: 'fetchAll', table })
      t.same(left.rows.map(r => [r['id'], r['pinned']]), [['m000', true], ['m001', true], ['m002', true], ['m003', true]])
    })

    await t.test('fetchAll pages with a cursor through a filtered, ordered result, missing and repeating nothing', async t => {
      const table = freshTable()
      await store.ask({ type: 'createTable', table: messages(table) })
      await store.ask({ type: 'transaction', ops: Array.from({ length: 23 }, (_, i) => ({ type: 'insert' as const, table, row: row(i, i % 4 === 0 ? 'other' : 'c1') })) })
      const expected = Array.from({ length: 23 }, (_, i) => row(i, i % 4 === 0 ? 'other' : 'c1'))
        .filter(r => r.conversation === 'c1')
        .sort((a, b) => b.created - a.created || (a.id < b.id ? -1 : 1))
        .map(r => r.id)
      const seen: unknown[] = []
      let cursor: string | undefined
      do {
        const page: RowPage = await store.ask({ type: 'fetchAll', table, where: { conversation: 'c1' }, orderBy: [{ column: 'created', direction: 'desc' }], limit: 4, ...(cursor ? { cursor } : {}) })
        t.ok(page.rows.length <= 4)
        seen.push(...page.rows.map(r => r['id']))
        cursor = page.cursor ?? undefined
      } while (cursor !== undefined)
      t.same(seen, expected)
      const first = await store.ask<RowPage>({ type: 'fetchAll', table, limit: 2 })
      t.same(first.rows.map(r => r['id']), ['m000', 'm001'], 'the default order is the primary key')
      await t.rejects(store.ask({ type: 'fetchAll', table, orderBy: [{ column: 'created' }], cursor: first.cursor! }), { code: 'bad_cursor' })
      await t.rejects(store.ask({ type: 'fetchAll', table, cursor: 'garbage' }), { code: 'bad_cursor' })
      await t.rejects(store.ask({ type: 'fetchAll', table, orderBy: [{ column: 'score' }] }), { code: 'bad_row', message: /nullable/ })
    })

    await t.test('pages in every order an index or the primary key serves come out as a full sort would have them', async t => {
      const table = freshTable()
      await store.ask({ type: 'createTable', table: { ...messages(table), indexes: [['conversation', 'created'], ['created']] } })
      const rows = Array.from({ length: 31 }, (_, i) => row(i, i % 3 === 0 ? 'other' : 'c1'))
      await store.ask({ type: 'transaction', ops: rows.map(r => ({ type: 'insert' as const, table, row: r })) })
      const queries: PageQueryCase[] = [
        { orderBy: [{ column: 'id', direction: 'asc' }] },
        { orderBy: [{ column: 'id', direction: 'desc' }] },
        { orderBy: [{ column: 'created', direction: 'asc' }, { column: 'id', direction: 'asc' }] },
        { orderBy: [{ column: 'created', direction: 'desc' }, { column: 'id', direction: 'desc' }] },
        { where: { conversation: 'c1' }, orderBy: [{ column: 'created', direction: 'asc' }, { column: 'id', direction: 'asc' }] },
        { where: { conversation: 'c1' }, orderBy: [{ column: 'created', direction: 'desc' }, { column: 'id', direction: 'desc' }] },
        { where: { conversation: 'c1', pinned: true }, orderBy: [{ column: 'created', direction: 'desc' }, { column: 'id', direction: 'desc' }] },
        { where: { conversation: 'nobody' }, orderBy: [{ column: 'created', direction: 'desc' }, { column: 'id', direction: 'desc' }] },
      ]
      await checkPages(t, store, table, rows, queries, r => r['id'] as string)

      // A key whose leading column the filter binds: conversation items by sequence number.
      const items = freshTable()
      await store.ask({
        type: 'createTable',
        table: { name: items, columns: { conversation: { type: 'text' }, seq: { type: 'integer' }, id: { type: 'text' } }, primaryKey: ['conversation', 'seq'], indexes: [['conversation', 'id']] },
      })
      const itemRows = Array.from({ length: 25 }, (_, i) => ({ conversation: `c${i % 3}`, seq: 100 - i, id: `item${(i * 7) % 25}` }))
      await store.ask({ type: 'transaction', ops: itemRows.map(r => ({ type: 'insert' as const, table: items, row: r })) })
      await checkPages(t, store, items, itemRows, [
        { where: { conversation: 'c1' }, orderBy: [{ column: 'seq', direction: 'desc' }] },
        { where: { conversation: 'c1' }, orderBy: [{ column: 'seq', direction: 'asc' }] },
        { where: { conversation: 'c2' }, orderBy: [{ column: 'id', direction: 'asc' }] },
        { where: { conversation: 'c2' }, orderBy: [{ column: 'id', direction: 'desc' }] },
        { where: { conversation: 'c0', id: 'item0' }, orderBy: [{ column: 'seq', direction: 'desc' }] },
        { orderBy: [{ column: 'seq', direction: 'desc' }] },
      ], r => `${r['conversation']}/${r['seq']}`)
    })

    // A durable transaction commits on its own path on LMDB (synchronously, when no other is
    // under way): both paths must roll back alike.
    for (const durable of [false, true]) {
      await t.test(`a transaction is all or nothing${durable ? ' (durable)' : ''}`, async t => {
        const table = freshTable()
        await store.ask({ type: 'createTable', table: messages(table) })
        await store.ask({ type: 'insert', table, row: row(1) })
        await t.rejects(
          store.ask({ type: 'transaction', durable, ops: [{ type: 'insert', table, row: row(2) }, { type: 'update', table, where: { id: 'm001' }, values: { tokens: 7 } }, { type: 'insert', table, row: row(1) }] }),
          { code: 'conflict' },
        )
        t.equal(await store.ask({ type: 'fetchOne', table, where: { id: 'm002' } }), null, 'the first insert was rolled back')
        t.equal(((await store.ask({ type: 'fetchOne', table, where: { id: 'm001' } })) as { tokens: number }).tokens, 1, 'and the update')
        t.same(await store.ask({ type: 'transaction', durable, ops: [{ type: 'insert', table, row: row(2) }, { type: 'delete', table, where: { id: 'm001' } }] }), [1, 1])
        t.same(await store.ask({ type: 'fetchOne', table, where: { id: 'm002' } }), row(2), 'a committed transaction reads back')
      })
    }

    await t.test('durable and lingering transactions sent at once all land, each whole', async t => {
      const table = freshTable()
      await store.ask({ type: 'createTable', table: messages(table) })
      const sent = Array.from({ length: 12 }, (_, i) =>
        store.ask({ type: 'transaction', durable: i % 3 === 0, ops: [{ type: 'insert', table, row: row(2 * i + 1) }, { type: 'insert', table, row: row(2 * i + 2) }] }),
      )
      t.same(await Promise.all(sent), sent.map(() => [1, 1]))
      const page = await store.ask<RowPage>({ type: 'fetchAll', table, limit: 100 })
      t.equal(page.rows.length, 24, 'every row of every transaction')
    })

    await t.test('rows written in one transaction with updates between them come back as written', async t => {
      // sql_lmdb writes an insert's row as the bytes its size check encoded, while an update's
      // merged row is encoded inside the transaction: neither may disturb the other.
      const table = freshTable()
      await store.ask({ type: 'createTable', table: messages(table) })
      for (let i = 0; i < 4; i++) await store.ask({ type: 'insert', table, row: row(i) })
      const ops: WriteOp[] = []
      for (let i = 10; i < 40; i++) {
        ops.push({ type: i % 2 ? 'insert' : 'upsert', table, row: row(i, 'c') })
        ops.push({ type: 'update', table, where: { id: `m00${i % 4}` }, values: { tokens: 1000 + i, body: { long: 'x'.repeat(200 + i) } } })
      }
      t.same(await store.ask({ type: 'transaction', ops }), ops.map(() => 1))
      for (let i = 10; i < 40; i++) t.same(await store.ask({ type: 'fetchOne', table, where: { id: `m0${i}` } }), row(i, 'c'), `m0${i}`)
      for (let i = 0; i < 4; i++) {
        const last = 36 + i // the last update of m00<i>
        t.same(await store.ask({ type: 'fetchOne', table, where: { id: `m00${i}` } }), { ...row(i), tokens: 1000 + last, body: { long: 'x'.repeat(200 + last) } }, `m00${i}`)
      }
    })

    await t.test('bad input is refused with a typed error naming the table, and writes nothing', async t => {
      const table = freshTable()
      await store.ask({ type: 'createTable', table: messages(table) })
      await t.rejects(store.ask({ type: 'insert', table: 'never_created', row: row(1) }), { code: 'unknown_table', message: /never_created/ })
      await t.rejects(store.ask({ type: 'insert', table, row: { ...row(1), colour: 'red' } }), { code: 'bad_row', message: new RegExp(`${table}.*colour`) })
      await t.rejects(store.ask({ type: 'insert', table, row: { ...row(1), tokens: 'many' } }), { code: 'bad_row', message: /column 'tokens' is integer/ })
      await t.rejects(store.ask({ type: 'insert', table, row: { ...row(1), created: 1.5 } }), { code: 'bad_row' })
      const { conversation: _dropped, ...missing } = row(1)
      await t.rejects(store.ask({ type: 'insert', table, row: missing }), { code: 'bad_row', message: /missing required column 'conversation'/ })
      await t.rejects(store.ask({ type: 'update', table, where: { id: 'm001' }, values: { id: 'other' } }), { code: 'bad_row', message: /primary key/ })
      await t.rejects(store.ask({ type: 'fetchAll', table, where: { nope: 1 } }), { code: 'bad_row' })
      await t.rejects(store.ask({ type: 'createTable', table: { ...messages(freshTable()), primaryKey: ['ghost'] } }), { code: 'bad_row' })
      await t.rejects(store.ask({ type: 'insert', table, row: { ...row(1), body: 'x'.repeat(17 * 1024 * 1024) } }), { code: 'value_too_large', message: new RegExp(table) })
      t.same((await store.ask<RowPage>({ type: 'fetchAll', table })).rows, [], 'nothing was written')
    })

    await t.test('tables and acknowledged rows survive the actor restarting', async t => {
      const table = freshTable()
      await store.ask({ type: 'createTable', table: messages(table) })
      await store.ask({ type: 'insert', table, row: row(7) })
      await system.stop(store)
      store = await system.spawn(tableStore, { placement: 'pool', args: backend.args })
      t.same(await store.ask({ type: 'fetchOne', table, where: { id: 'm007' } }), row(7))
    })
  })
}

t.test('sql_postgres that cannot be reached fails the start with backend_unavailable', async t => {
  const system = await startSystem(t)
  await t.rejects(system.spawn(tableStore, { placement: 'pool', args: { name: 'records', config: { type: 'sql_postgres', ...POSTGRES, port: 1 } } }), {
    code: 'backend_unavailable',
    message: /sql_postgres backend 'records'/,
  })
})
