import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ActorError, defineBehavior, type ActorRef, type ActorSystem } from '../../src/index.js'
import { unpack } from 'msgpackr'
import { inferenceStore, type CompletionList, type InferenceSettings, type InferenceStats, type InferenceStoreMessage } from '../../actors/stores/inference-store.js'
import { tableStore } from '../../actors/stores/table-store.js'
import type { TableMessage, WriteOp } from '../../actors/stores/protocol.js'
import { startSystem } from '../fixtures/system.js'

const dir = mkdtempSync(join(tmpdir(), 'troupe-inference-store-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

type Stats = InferenceStats

const completion = (id: string) => ({ id, object: 'chat.completion', created: 1_700_000_000, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: `answer ${id}` }, finish_reason: 'stop' }] })
const record = (store: ActorRef<InferenceStoreMessage>, id: string): Promise<unknown> =>
  store.ask({ type: 'record', completion: completion(id), messages: [{ role: 'user', content: `question ${id}` }] }, { timeoutMs: Infinity })

/**
 * A table store the test steers: it keeps upserted rows in memory, refuses rows whose id is in
 * `refuse` (bad_row, as a real store does for a bad value), fails the next `unavailable` writes
 * with backend_unavailable, and holds every write while `gate` is set. Lists come back empty:
 * the tests use them only to wait until every acknowledged record is written.
 */
interface FakeTable {
  readonly rows: Map<string, Record<string, unknown>>
  readonly refuse: Set<string>
  unavailable: number
  gate: Promise<void> | undefined
  writes: number
}

const fakeTable = defineBehavior(import.meta.url, 'fakeTable', {
  init: (fake: FakeTable) => fake,
  async receive(fake, msg: TableMessage) {
    if (msg.type === 'createTable') return null
    if (msg.type === 'fetchAll') return { rows: [], cursor: null } // a list is only a barrier here
    if (msg.type !== 'upsert' && msg.type !== 'transaction') throw new ActorError('bad_message', `the fake table does not serve ${msg.type}`)
    fake.writes++
    await fake.gate
    if (fake.unavailable > 0) {
      fake.unavailable--
      throw new ActorError('backend_unavailable', 'the fake backend is down')
    }
    const ops: WriteOp[] = msg.type === 'transaction' ? msg.ops : [msg]
    // The records come as puts: the row's bytes, as the inference store encoded them.
    const rows = ops.flatMap(op => {
      if (op.type === 'put') return [unpack(op.bytes) as Record<string, unknown>]
      if (op.type !== 'putMany') return []
      return op.ends.map((end, i) => unpack(op.bytes.subarray(i === 0 ? 0 : op.ends[i - 1], end)) as Record<string, unknown>)
    })
    for (const row of rows) if (fake.refuse.has(row['id'] as string)) throw new ActorError('bad_row', `row ${row['id']} is refused`)
    for (const row of rows) fake.rows.set(row['id'] as string, row)
    return ops.map(() => 1)
  },
})

const SETTINGS: InferenceSettings = { maxQueue: 10_000, writers: 4, writeMode: 'async', retention: undefined }

async function withFake(system: ActorSystem, fake: FakeTable, settings: Partial<InferenceSettings> = {}): Promise<ActorRef<InferenceStoreMessage>> {
  const table = await system.spawn(fakeTable, { placement: 'main', args: fake })
  return system.spawn(inferenceStore, { placement: 'main', args: { store: table as ActorRef<TableMessage>, table: 'inference', settings: { ...SETTINGS, ...settings } } })
}

/** A promise and the function that settles it (Promise.withResolvers is Node 22). */
function gate(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void
  const promise = new Promise<void>(settle => (resolve = settle))
  return { promise, resolve }
}

// One system for the file: a system per test cost a worker's start-up each.
const system = await startSystem(t, { workers: 1 })

const newFake = (): FakeTable => ({ rows: new Map(), refuse: new Set(), unavailable: 0, gate: undefined, writes: 0 })

t.test('records written together share one write: a burst of 1000 takes a handful of transactions', async t => {
  const table = await system.spawn(tableStore, { placement: 'pool', args: { name: 'sql', config: { type: 'sql_lmdb', path: join(dir, 'burst'), map_size_mb: 64 } } })
  const store = await system.spawn(inferenceStore, { placement: 'main', args: { store: table, table: 'inference', settings: SETTINGS } })
  const ids = Array.from({ length: 1000 }, (_, i) => `chatcmpl-${String(i).padStart(4, '0')}`)
  await Promise.all(ids.map(id => record(store, id)))
  // A read waits for every record acknowledged before it.
  const page = await store.ask<CompletionList>({ type: 'list', order: 'asc', limit: 100 })
  t.same(page.data.map(c => c.id), ids.slice(0, 100), 'in arrival order, all written')
  const stats = await store.ask<Stats>({ type: 'stats' })
  t.equal(stats.written, 1000)
  t.ok(stats.batches <= 20, `1000 records took ${stats.batches} writes`)
  t.equal(stats.failures, 0)
})

t.test('a row the store refuses is lost alone, loudly; the rest of its batch lands', async t => {
  const fake = newFake()
  fake.refuse.add('bad')
  const store = await withFake(system, fake, { writers: 1 })
  const release = gate()
  fake.gate = release.promise // hold the first write so the rest batch up behind it
  const ids = ['a', 'b', 'bad', 'c', 'd']
  await Promise.all(ids.map(id => record(store, id)))
  release.resolve()
  fake.gate = undefined
  await store.ask({ type: 'list' }) // waits until every record is written or given up
  t.same([...fake.rows.keys()].sort(), ['a', 'b', 'c', 'd'])
  const stats = await store.ask<Stats>({ type: 'stats' })
  t.equal(stats.written, 4)
  t.ok(stats.failures >= 2, 'the batch failed, then the bad row on its own')
})

t.test('a store that is down is retried: no acknowledged record is lost', async t => {
  const fake = newFake()
  fake.unavailable = 2
  const store = await withFake(system, fake)
  await Promise.all(['x', 'y', 'z'].map(id => record(store, id)))
  await store.ask({ type: 'list' })
  t.same([...fake.rows.keys()].sort(), ['x', 'y', 'z'])
  t.equal((await store.ask<Stats>({ type: 'stats' })).failures, 2)
})

t.test('a full queue holds the acknowledgement until there is room; nothing is dropped', async t => {
  const fake = newFake()
  const release = gate()
  fake.gate = release.promise
  const store = await withFake(system, fake, { maxQueue: 2, writers: 1 })
  // A full queue is written at once: the writer takes the first two and is held, and they
  // count against the bound until written, so the third must wait.
  const early = await Promise.all(['1', '2'].map(id => record(store, id)))
  t.equal(early.length, 2, 'two records acknowledged')
  let thirdDone = false
  const third = record(store, '3').then(() => (thirdDone = true))
  await new Promise(resolve => setTimeout(resolve, 50))
  t.notOk(thirdDone, 'the third record waits while the queue is full')
  t.match(await store.ask<Stats>({ type: 'stats' }), { queued: 0, waiting: 1, inFlight: 1 })
  release.resolve()
  fake.gate = undefined
  await third
  await store.ask({ type: 'list' })
  t.same([...fake.rows.keys()].sort(), ['1', '2', '3'])
})

t.test('records wait a moment to share a commit, but never for a read', async t => {
  const fake = newFake()
  const store = await withFake(system, fake, { writers: 4 })
  for (const id of ['a', 'b', 'c']) await record(store, id)
  t.equal(fake.writes, 0, 'three records one after another: nothing written yet')
  await store.ask({ type: 'list' }) // a read does not wait out the linger
  t.equal(fake.writes, 1, 'the read had all three written in one write')
  t.same([...fake.rows.keys()].sort(), ['a', 'b', 'c'])
  await record(store, 'd')
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(fake.writes, 2, 'a lone record is written once it has lingered')
  t.ok(fake.rows.has('d'))
})

t.test('stopping drains the queue into the store before the actor ends', async t => {
  const fake = newFake()
  const release = gate()
  fake.gate = release.promise
  const store = await withFake(system, fake, { writers: 2 })
  await Promise.all(['p', 'q', 'r', 's'].map(id => record(store, id)))
  const stopped = system.stop(store)
  setTimeout(() => release.resolve(), 20)
  await stopped
  t.same([...fake.rows.keys()].sort(), ['p', 'q', 'r', 's'])
})
