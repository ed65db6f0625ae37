import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ActorError, type ActorRef } from '../../src/index.js'
import { inferenceStore, type CompletionList, type InferenceSettings, type InferenceStats, type InferenceStoreMessage, type StoredCompletion } from '../../actors/stores/inference-store.js'
import { tableStore } from '../../actors/stores/table-store.js'
import type { TableMessage, TableSpec } from '../../actors/stores/protocol.js'
import { eventually } from '../fixtures/eventually.js'
import { latch, newFakeTable, settledState, spawnFakeTable } from '../fixtures/write-path.js'
import { startSystem } from '../fixtures/system.js'

/**
 * The inference store's retention (by count and by age, live through `configure`), the move of
 * a table from the old primary key (id) to (recorded, id), and what `write_mode: sync` makes a
 * record's acknowledgement wait for. On sql_lmdb, except where a gated fake shows the wait.
 */

const dir = mkdtempSync(join(tmpdir(), 'troupe-inference-retention-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

const system = await startSystem(t, { workers: 1 })
const sql = (await system.spawn(tableStore, { placement: 'pool', args: { name: 'sql', config: { type: 'sql_lmdb', path: dir, map_size_mb: 256 } } })) as ActorRef<TableMessage>

const SETTINGS: InferenceSettings = { maxQueue: 10_000, writers: 4, writeMode: 'async', retention: undefined }
const HOUR_MS = 3_600_000

/**
 * An inference store on `table`. Retention runs once as it starts (awaited here: a trim asked
 * while a pass runs answers with that pass), then only when a test asks (trim) or configures it.
 */
async function startInference(table: string, settings: Partial<InferenceSettings> = {}, store: ActorRef<TableMessage> = sql): Promise<ActorRef<InferenceStoreMessage>> {
  const inference = await system.spawn(inferenceStore, { placement: 'main', args: { store, table, settings: { ...SETTINGS, ...settings }, retentionIntervalMs: HOUR_MS } })
  await inference.ask({ type: 'trim' })
  return inference
}

const completionOf = (id: string, model = 'm') => ({ id, object: 'chat.completion', created: 1_700_000_000, model, choices: [{ index: 0, message: { role: 'assistant', content: `answer ${id}` }, finish_reason: 'stop' }] })
const record = (store: ActorRef<InferenceStoreMessage>, id: string, model = 'm'): Promise<unknown> =>
  store.ask({ type: 'record', completion: completionOf(id, model), messages: [{ role: 'user', content: `question ${id}` }] }, { timeoutMs: Infinity })

/** Every stored completion, oldest first, paged 7 at a time through `after`. */
async function listAll(store: ActorRef<InferenceStoreMessage>, query: { model?: string; order?: 'asc' | 'desc' } = {}): Promise<StoredCompletion[]> {
  const all: StoredCompletion[] = []
  let after: string | undefined
  for (;;) {
    const page = await store.ask<CompletionList>({ type: 'list', order: query.order ?? 'asc', limit: 7, ...(query.model === undefined ? {} : { model: query.model }), ...(after === undefined ? {} : { after }) })
    all.push(...page.data)
    if (!page.has_more) return all
    after = page.last_id ?? undefined
  }
}
const idsOf = (completions: readonly StoredCompletion[]): string[] => completions.map(c => c.id)
const ids = (prefix: string, count: number): string[] => Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(2, '0')}`)
const stats = (store: ActorRef<InferenceStoreMessage>): Promise<InferenceStats> => store.ask<InferenceStats>({ type: 'stats' })
const codeOf = (error: unknown): string => (error instanceof ActorError ? error.code : `not an ActorError: ${String(error)}`)

t.test('max_count: a retention pass removes the oldest records beyond the count; the newest are listed intact', async t => {
  const store = await startInference('by_count', { retention: { maxCount: 5 } })
  const recorded = ids('count-', 12)
  for (const id of recorded) await record(store, id)
  t.equal((await listAll(store)).length, 12, 'all twelve are written before the pass')
  t.equal(await store.ask({ type: 'trim' }), 7, 'the pass reports the seven it removed')
  const kept = await listAll(store)
  t.same(idsOf(kept), recorded.slice(7), 'the five newest stay, in order')
  t.same(kept[4], { ...completionOf('count-11'), input_messages: [{ role: 'user', content: 'question count-11' }] }, 'each kept record intact')
  t.same(idsOf(await listAll(store, { order: 'desc' })), recorded.slice(7).reverse())
  t.equal(codeOf(await store.ask({ type: 'get', id: 'count-00' }).catch((e: unknown) => e)), 'not_found', 'a removed record is gone')
  t.match(await store.ask({ type: 'get', id: 'count-07' }), { id: 'count-07' })
  t.equal(await store.ask({ type: 'trim' }), 0, 'a second pass finds nothing to remove')
  t.match(await stats(store), { removed: 7, retention: { maxCount: 5 } })
})

t.test('max_age: a retention pass removes the records older than the age, oldest first; the younger are listed intact', async t => {
  const store = await startInference('by_age')
  // Records of hours ago, as they would be had the store written them then.
  const now = Date.now()
  for (const hours of [3, 2, 1]) {
    const id = `aged-${hours}h`
    const row = { recorded: (now - hours * HOUR_MS) * 1000, id, created: 1_700_000_000, model: 'm', completion: completionOf(id), input_messages: [{ role: 'user', content: `question ${id}` }] }
    await sql.ask({ type: 'upsert', table: 'by_age', row })
  }
  const fresh = ids('fresh-', 3)
  for (const id of fresh) await record(store, id)
  t.same(idsOf(await listAll(store)), ['aged-3h', 'aged-2h', 'aged-1h', ...fresh], 'listed by when recorded')

  await store.ask({ type: 'configure', settings: { ...SETTINGS, retention: { maxAgeMs: 1.5 * HOUR_MS } } })
  await store.ask({ type: 'trim' })
  t.same(idsOf(await listAll(store)), ['aged-1h', ...fresh], 'the two older than 90 minutes are gone')
  t.match(await store.ask({ type: 'get', id: 'aged-1h' }), { id: 'aged-1h', input_messages: [{ content: 'question aged-1h' }] })
  t.match(await stats(store), { removed: 2, retention: { maxAgeMs: 1.5 * HOUR_MS } })

  await store.ask({ type: 'configure', settings: { ...SETTINGS, retention: { maxAgeMs: 1.5 * HOUR_MS, maxCount: 2 } } })
  await store.ask({ type: 'trim' })
  t.same(idsOf(await listAll(store)), fresh.slice(1), 'age and count together: what either removes is gone')
  t.equal((await stats(store)).removed, 4)
})

t.test('configure applies new retention live: the pass it starts trims without being asked; unset, nothing is removed', async t => {
  const store = await startInference('live')
  const recorded = ids('live-', 10)
  for (const id of recorded) await record(store, id)
  t.equal((await listAll(store)).length, 10)

  await store.ask({ type: 'configure', settings: { ...SETTINGS, retention: { maxCount: 4 } } })
  await eventually(async () => (await listAll(store)).length === 4, 'the pass that configure started')
  t.same(idsOf(await listAll(store)), recorded.slice(6))
  await store.ask({ type: 'configure', settings: { ...SETTINGS, retention: { maxCount: 2 } } })
  await eventually(async () => (await listAll(store)).length === 2, 'the pass for the smaller count')
  t.same(idsOf(await listAll(store)), recorded.slice(8))

  await store.ask({ type: 'configure', settings: { ...SETTINGS, retention: undefined } })
  const more = ids('more-', 3)
  for (const id of more) await record(store, id)
  await listAll(store)
  t.equal(await store.ask({ type: 'trim' }), 0, 'retention unset: nothing is removed')
  t.same(idsOf(await listAll(store)), [...recorded.slice(8), ...more])
  t.match(await stats(store), { removed: 8, retention: null })
})

t.test('a trim asked while no retention is set removes nothing, and later passes still run', async t => {
  const store = await startInference('trim_unset')
  const recorded = ids('unset-', 6)
  for (const id of recorded) await record(store, id)
  t.equal(await store.ask({ type: 'trim' }), 0, 'no retention: the pass removes nothing')
  await store.ask({ type: 'configure', settings: { ...SETTINGS, retention: { maxCount: 2 } } })
  t.equal(await store.ask({ type: 'trim' }), 4, 'with retention configured, a pass removes the four oldest')
  t.same(idsOf(await listAll(store)), recorded.slice(4))
})

t.test('a table keyed by id (the old spec) is re-keyed to (recorded, id) when the store starts on it: every old row is listed and fetched', async t => {
  const table = 'legacy'
  const oldSpec: TableSpec = {
    name: table,
    columns: { id: { type: 'text' }, recorded: { type: 'integer' }, created: { type: 'integer' }, model: { type: 'text' }, completion: { type: 'json' }, input_messages: { type: 'json' } },
    primaryKey: ['id'],
    indexes: [['recorded'], ['model', 'recorded']],
  }
  await sql.ask({ type: 'createTable', table: oldSpec })
  // Ids whose order is not the order recorded, so that a list in id order would show it.
  const count = 25
  const old = Array.from({ length: count }, (_, i) => {
    const id = `chatcmpl-${String((i * 7) % count).padStart(2, '0')}-${i}`
    const model = i % 2 === 0 ? 'even' : 'odd'
    return { id, recorded: 1_700_000_000_000_000 + i * 1000, created: 1_700_000_000 + i, model, completion: completionOf(id, model), input_messages: [{ role: 'user', content: `question ${id}` }] }
  })
  await sql.ask({ type: 'transaction', ops: old.map(row => ({ type: 'upsert' as const, table, row })) })

  const store = await startInference(table)
  const listed = await listAll(store)
  t.same(idsOf(listed), old.map(row => row.id), 'every old row, in the order recorded')
  t.same(listed, old.map(row => ({ ...row.completion, input_messages: row.input_messages })), 'each intact')
  t.same(idsOf(await listAll(store, { order: 'desc' })), old.map(row => row.id).reverse())
  t.same(idsOf(await listAll(store, { model: 'odd' })), old.filter(row => row.model === 'odd').map(row => row.id), 'the model index was rebuilt')
  const missing: string[] = []
  for (const row of old) {
    const got = await store.ask<StoredCompletion>({ type: 'get', id: row.id }).catch(() => undefined)
    if (got?.id !== row.id || got.model !== row.model) missing.push(row.id)
  }
  t.same(missing, [], 'each old row is fetched by its id')

  await record(store, 'chatcmpl-new')
  t.same(idsOf(await listAll(store)).slice(-2), [old[count - 1]!.id, 'chatcmpl-new'], 'a new record lists after the old ones')

  // A restart on the moved table finds the new key: nothing moves twice, nothing is lost.
  await system.stop(store)
  const again = await startInference(table)
  t.same(idsOf(await listAll(again)), [...old.map(row => row.id), 'chatcmpl-new'])
  t.match(await again.ask({ type: 'get', id: old[3]!.id }), { id: old[3]!.id })
})

t.test("write_mode sync: a record's ask resolves only once its row is in the table; async: once queued", async t => {
  const fake = newFakeTable()
  const gate = latch()
  fake.hold = () => gate.promise
  const table = await spawnFakeTable(system, fake)

  const sync = await startInference('fake', { writeMode: 'sync' }, table)
  const asked = record(sync, 'held')
  await eventually(() => fake.held === 1, 'the write to reach the table')
  t.equal(await settledState(asked), 'pending', 'the ask waits while the table holds the write')
  t.notOk(fake.rows.has('held'))
  gate.open()
  await asked
  t.ok(fake.rows.has('held'), 'resolved with the row in the table')
  t.same(fake.transactions[0], { ids: ['held'], durable: true }, 'written durable')
  t.match(await stats(sync), { writeMode: 'sync' })
  await system.stop(sync)

  // async, then sync by configure, on one store
  const second = latch()
  fake.hold = () => second.promise
  const store = await startInference('fake', {}, table)
  await record(store, 'quick')
  t.notOk(fake.rows.has('quick'), 'async: acknowledged before it is written')
  await store.ask({ type: 'configure', settings: { ...SETTINGS, writeMode: 'sync' } })
  const waiting = record(store, 'waits')
  await eventually(() => fake.transactions.some(tx => tx.ids.includes('waits')), 'the sync write to reach the table')
  t.equal(await settledState(waiting), 'pending', 'sync, by configure: the ask waits for the write')
  second.open()
  await waiting
  t.ok(fake.rows.has('waits') && fake.rows.has('quick'))
  t.match(await stats(store), { writeMode: 'sync' })
})
