import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import pg from 'pg'
import t, { type Test } from 'tap'
import type { ActorRef } from '../../src/index.js'
import { tableStore, type TableStoreArgs } from '../../actors/stores/table-store.js'
import type { RowPage, TableMessage, TableSpec, WriteOp } from '../../actors/stores/protocol.js'
import { putOp } from '../../actors/stores/table/rows.js'
import { POSTGRES, unreachable } from '../fixtures/servers.js'
import { startSystem } from '../fixtures/system.js'

type Row = Record<string, unknown>

const skip = await unreachable('Postgres', 5432)
const args: TableStoreArgs = { name: 'pg', config: { type: 'sql_postgres', ...POSTGRES } }

let tables = 0
const created: string[] = []
const freshTable = (): string => {
  const name = `tp_${process.pid}_${Date.now() % 1e6}_${++tables}`
  created.push(name)
  return name
}

if (skip === undefined) {
  t.teardown(async () => {
    const client = new pg.Client({ host: POSTGRES.host, port: POSTGRES.port, database: POSTGRES.db, user: POSTGRES.user })
    await client.connect()
    for (const name of created) await client.query(`DROP TABLE IF EXISTS "${name}"`)
    await client.query('DELETE FROM troupe_tables WHERE name = ANY($1)', [created])
    await client.end()
  })
}

/** A column of every type, nullable ones included. */
const everyType = (name: string): TableSpec => ({
  name,
  columns: {
    id: { type: 'text' },
    at: { type: 'timestamp' },
    n: { type: 'integer' },
    score: { type: 'real' },
    flag: { type: 'boolean' },
    body: { type: 'json' },
    note: { type: 'text', nullable: true },
    extra: { type: 'json', nullable: true },
    tokens: { type: 'integer', nullable: true },
  },
  primaryKey: ['id'],
})

const everyTypeRow = (i: number): Row => ({
  id: `r${String(i).padStart(4, '0')}`,
  at: 1_700_000_000_000 + i,
  n: [0, 2 ** 53 - 1, -(2 ** 53 - 1), 7][i % 4],
  score: [0.1, -1e300, 1.5, 0][i % 4],
  flag: i % 2 === 0,
  body: [{ role: 'user', parts: [i, 'é', null, { nested: true }] }, 'just text', [1, 2.5, 'x'], 42][i % 4],
  note: i % 3 === 0 ? null : `note ${i} 😀`,
  extra: i % 2 === 0 ? null : { i },
  tokens: i % 5 === 0 ? null : i,
})

/** Events keyed by time, then id: the order trims go in. */
const events = (name: string): TableSpec => ({
  name,
  columns: { at: { type: 'timestamp' }, id: { type: 'text' }, body: { type: 'json' } },
  primaryKey: ['at', 'id'],
})

/** Two events (ids a and b) at each time 1…10, written newest first so that no order is incidental. */
const eventOps = (spec: TableSpec): WriteOp[] =>
  Array.from({ length: 20 }, (_, i) => {
    const at = 10 - Math.floor(i / 2)
    return putOp(spec, { at, id: i % 2 ? 'a' : 'b', body: { at } }, 'insert')
  })

/**
 * A TCP proxy in front of Postgres that counts the round trips its clients start: a simple
 * query ('Q'), or a Sync ('S'), which ends each extended-protocol query (Parse, Bind, Execute).
 * Its clients must not ask for TLS: their first message is the startup message.
 */
async function roundTripCounter(t: Test): Promise<{ port: number; roundTrips(): number }> {
  let roundTrips = 0
  const sockets = new Set<Socket>()
  const server = createServer(client => {
    const upstream = connect({ host: POSTGRES.host, port: POSTGRES.port })
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      socket.on('error', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    upstream.pipe(client)
    client.on('end', () => upstream.end())
    let pending = Buffer.alloc(0)
    let started = false
    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk])
      for (;;) {
        if (pending.length < (started ? 5 : 4)) break
        // The startup message has no type byte; every later one has, before its length.
        const size = started ? 1 + pending.readInt32BE(1) : pending.readInt32BE(0)
        if (pending.length < size) break
        if (started && (pending[0] === 0x51 || pending[0] === 0x53)) roundTrips++
        started = true
        pending = pending.subarray(size)
      }
      upstream.write(chunk)
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    server.close()
  })
  return { port: (server.address() as AddressInfo).port, roundTrips: () => roundTrips }
}

t.test('sql_postgres writes packed rows in batches, trims, and moves a table to a new key', { skip: skip ?? false }, async t => {
  const system = await startSystem(t)
  const store: ActorRef<TableMessage> = await system.spawn(tableStore, { placement: 'pool', args })
  const allRows = async (table: string, from = store): Promise<Row[]> => (await from.ask<RowPage>({ type: 'fetchAll', table, limit: 1000 })).rows

  await t.test('packed puts round-trip every column type exactly', async t => {
    const table = freshTable()
    const spec = everyType(table)
    await store.ask({ type: 'createTable', table: spec })
    const rows = Array.from({ length: 12 }, (_, i) => everyTypeRow(i))
    t.strictSame(await store.ask({ type: 'transaction', ops: rows.map(row => putOp(spec, row, 'insert')) }), rows.map(() => 1))
    for (const row of rows) t.strictSame(await store.ask({ type: 'fetchOne', table, where: { id: row['id'] } }), row, row['id'] as string)
    t.strictSame(await allRows(table), rows, 'fetchAll, in primary key order')

    const replaced: Row = { ...everyTypeRow(1), body: { replaced: true }, note: null, tokens: 99 }
    t.equal(await store.ask(putOp(spec, replaced, 'upsert')), 1)
    t.strictSame(await store.ask({ type: 'fetchOne', table, where: { id: replaced['id'] } }), replaced, 'an upsert put replaces the row')
  })

  await t.test('a batch of 200 puts is one round trip; a batch of several statements is one transaction', async t => {
    const proxy = await roundTripCounter(t)
    const counted: ActorRef<TableMessage> = await system.spawn(tableStore, { placement: 'pool', args: { name: 'pg-counted', config: { type: 'sql_postgres', ...POSTGRES, port: proxy.port } } })
    const table = freshTable()
    const spec = everyType(table)
    await counted.ask({ type: 'createTable', table: spec })
    const rows = Array.from({ length: 200 }, (_, i) => everyTypeRow(i))

    let before = proxy.roundTrips()
    t.strictSame(await counted.ask({ type: 'transaction', ops: rows.map(row => putOp(spec, row, 'insert')) }), rows.map(() => 1))
    t.equal(proxy.roundTrips() - before, 1, 'one INSERT, no BEGIN or COMMIT')
    t.strictSame(await allRows(table, counted), rows)

    before = proxy.roundTrips()
    const ops: WriteOp[] = [
      ...rows.map(row => putOp(spec, { ...row, tokens: 1 }, 'upsert')),
      { type: 'update', table, where: { flag: true }, values: { note: 'even' } },
    ]
    t.strictSame(await counted.ask({ type: 'transaction', ops }), [...rows.map(() => 1), 100])
    t.equal(proxy.roundTrips() - before, 4, 'BEGIN, one upsert of 200 rows, the update, COMMIT')
    t.strictSame(await allRows(table, counted), rows.map(row => ({ ...row, tokens: 1, note: row['flag'] ? 'even' : row['note'] })))
  })

  await t.test('a batch beyond the bind parameter limit is split into statements', async t => {
    const table = freshTable()
    const spec = everyType(table)
    await store.ask({ type: 'createTable', table: spec })
    // 9 columns a row: 10,000 rows need 90,000 parameters, more than the 65,535 one statement takes.
    const ops = Array.from({ length: 10_000 }, (_, i) => putOp(spec, everyTypeRow(i), 'insert'))
    t.equal((await store.ask<number[]>({ type: 'transaction', ops })).length, 10_000)
    const last = await store.ask<RowPage>({ type: 'fetchAll', table, orderBy: [{ column: 'id', direction: 'desc' }], limit: 1 })
    t.strictSame(last.rows, [everyTypeRow(9_999)])
  })

  await t.test('a mixed batch with one bad op writes nothing', async t => {
    const table = freshTable()
    const spec = everyType(table)
    await store.ask({ type: 'createTable', table: spec })
    const [r0, r1, r2, r3, r4] = Array.from({ length: 5 }, (_, i) => everyTypeRow(i)) as [Row, Row, Row, Row, Row]
    await store.ask({ type: 'transaction', ops: [putOp(spec, r0, 'insert'), putOp(spec, r1, 'insert')] })

    const good: WriteOp[] = [
      putOp(spec, r2, 'insert'),
      putOp(spec, r3, 'insert'),
      { type: 'update', table, where: { id: r0['id'] }, values: { tokens: 500 } },
      { type: 'delete', table, where: { id: r1['id'] } },
    ]
    await t.rejects(store.ask({ type: 'transaction', ops: [...good, putOp(spec, r0, 'insert')] }), { code: 'conflict' }, 'a taken key, after the rest')
    await t.rejects(store.ask({ type: 'transaction', ops: [putOp(spec, r4, 'insert'), putOp(spec, r1, 'insert')] }), { code: 'conflict' }, 'a taken key within one INSERT')
    t.strictSame(await allRows(table), [r0, r1], 'neither batch wrote anything')

    t.strictSame(await store.ask({ type: 'transaction', ops: good }), [1, 1, 1, 1])
    t.strictSame(await allRows(table), [{ ...r0, tokens: 500 }, r2, r3])
  })

  await t.test('upserts of one key in one batch apply in order, the last winning', async t => {
    const table = freshTable()
    const spec = everyType(table)
    await store.ask({ type: 'createTable', table: spec })
    const [a, b] = [everyTypeRow(0), everyTypeRow(1)]
    const ops: WriteOp[] = [
      putOp(spec, { ...a, tokens: 1 }, 'upsert'),
      putOp(spec, b, 'upsert'),
      putOp(spec, { ...a, tokens: 2 }, 'upsert'),
      { type: 'upsert', table, row: { ...a, tokens: 3 } },
      putOp(spec, { ...a, tokens: 4, note: 'last' }, 'upsert'),
    ]
    t.strictSame(await store.ask({ type: 'transaction', ops }), [1, 1, 1, 1, 1])
    t.strictSame(await allRows(table), [{ ...a, tokens: 4, note: 'last' }, b])

    // A row that is all key has nothing to update: an upsert of one that exists writes nothing, and counts 0.
    const pairs = freshTable()
    const pairSpec: TableSpec = { name: pairs, columns: { x: { type: 'text' }, y: { type: 'integer' } }, primaryKey: ['x', 'y'] }
    await store.ask({ type: 'createTable', table: pairSpec })
    const pair = (x: string, y: number): WriteOp => putOp(pairSpec, { x, y }, 'upsert')
    t.strictSame(await store.ask({ type: 'transaction', ops: [pair('p', 1), pair('p', 1), pair('q', 2)] }), [1, 0, 1])
    t.strictSame(await store.ask({ type: 'transaction', ops: [pair('q', 2), pair('r', 3)] }), [0, 1])
    t.strictSame(await allRows(pairs), [{ x: 'p', y: 1 }, { x: 'q', y: 2 }, { x: 'r', y: 3 }])
  })

  await t.test('trim removes the oldest rows in primary key order', async t => {
    const table = freshTable()
    const spec = events(table)
    await store.ask({ type: 'createTable', table: spec })
    await store.ask({ type: 'transaction', ops: eventOps(spec) })
    const left = async (): Promise<string[]> => (await allRows(table)).map(row => `${row['at']}${row['id']}`)

    t.equal(await store.ask({ type: 'trim', table, before: 3.5 }), 6, 'before: times 1, 2 and 3 go')
    t.equal((await left())[0], '4a')
    t.equal(await store.ask({ type: 'trim', table, keep: 10 }), 4, 'keep: the newest 10 stay')
    t.equal((await left())[0], '6a')
    t.equal(await store.ask({ type: 'trim', table, keep: 10 }), 0, 'none beyond the newest 10')
    t.equal(await store.ask({ type: 'trim', table, before: 7, keep: 5 }), 5, 'both, keep reaching further')
    t.strictSame(await left(), ['8b', '9a', '9b', '10a', '10b'])
    t.equal(await store.ask({ type: 'trim', table, before: 10, keep: 4 }), 3, 'both, before reaching further')
    t.strictSame(await left(), ['10a', '10b'])
    t.equal(await store.ask({ type: 'trim', table, keep: 0 }), 2, 'keep 0: every row goes')

    await store.ask({ type: 'transaction', ops: eventOps(spec) })
    t.equal(await store.ask({ type: 'trim', table, before: 5, limit: 3 }), 3)
    t.strictSame((await left()).slice(0, 2), ['2b', '3a'], 'the limit cuts within one time, by id')
    t.equal(await store.ask({ type: 'trim', table, before: 5, limit: 3 }), 3)
    t.equal(await store.ask({ type: 'trim', table, before: 5, limit: 3 }), 2)
    t.equal(await store.ask({ type: 'trim', table, before: 5, limit: 3 }), 0)
    t.equal((await left())[0], '5a')
    t.equal(await store.ask({ type: 'trim', table, keep: 1, limit: 4 }), 4)
    t.equal(await store.ask({ type: 'trim', table }), 0, 'neither before nor keep: nothing goes')
    t.equal((await left()).length, 8)
  })

  await t.test('a table created again with another primary key moves to it, keeping its rows', async t => {
    const table = freshTable()
    const byId: TableSpec = { name: table, columns: { conversation: { type: 'text' }, seq: { type: 'integer' }, id: { type: 'text' } }, primaryKey: ['id'] }
    const bySeq: TableSpec = { ...byId, primaryKey: ['conversation', 'seq'] }
    await store.ask({ type: 'createTable', table: byId })
    const rows = [
      { conversation: 'c1', seq: 1, id: 'x' },
      { conversation: 'c1', seq: 2, id: 'y' },
      { conversation: 'c2', seq: 1, id: 'z' },
    ]
    await store.ask({ type: 'transaction', ops: rows.map(row => putOp(byId, row, 'insert')) })

    t.equal(await store.ask({ type: 'createTable', table: bySeq }), null)
    t.strictSame(await allRows(table), rows, 'the rows stay, in the new key order')
    t.equal(await store.ask({ type: 'insert', table, row: { conversation: 'c3', seq: 1, id: 'x' } }), 1, 'an id may repeat now')
    await t.rejects(store.ask({ type: 'insert', table, row: { conversation: 'c1', seq: 2, id: 'w' } }), { code: 'conflict' }, 'the new key is enforced')
    t.equal(await store.ask({ type: 'upsert', table, row: { conversation: 'c1', seq: 2, id: 'w' } }), 1)
    t.strictSame(await store.ask({ type: 'fetchOne', table, where: { conversation: 'c1', seq: 2 } }), { conversation: 'c1', seq: 2, id: 'w' })

    await t.rejects(store.ask({ type: 'createTable', table: byId }), { code: 'conflict' }, "rows that would share a key refuse the move (id 'x' is twice)")
    await t.rejects(store.ask({ type: 'insert', table, row: { conversation: 'c1', seq: 1, id: 'v' } }), { code: 'conflict' }, 'and the table keeps its key')
  })
})
