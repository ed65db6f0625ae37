import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import t, { type Test } from 'tap'
import { ActorError, type ActorRef } from '../../src/index.js'
import { BatchWriter, type BatchWriterOptions, type Write } from '../../actors/stores/batch-writer.js'
import { tableStore } from '../../actors/stores/table-store.js'
import { putOp } from '../../actors/stores/table/rows.js'
import type { RowPage, TableMessage, TableSpec, WriteOp } from '../../actors/stores/protocol.js'
import { latch, newFakeTable, settledState, spawnFakeTable, type FakeTable } from '../fixtures/write-path.js'
import { startSystem } from '../fixtures/system.js'

/**
 * BatchWriter, the shared write path: bounded, batched, all-or-nothing per write, retrying what
 * the store fails for now and isolating what it refuses. A property test runs random writes,
 * groups and flushes against a real sql_lmdb table store on the pool and against the steerable
 * fake (which adds holds and transient failures); the tests after it pin each rule alone.
 */

const dir = mkdtempSync(join(tmpdir(), 'troupe-batch-writer-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

const system = await startSystem(t, { workers: 1 })
const lmdb = (await system.spawn(tableStore, { placement: 'pool', args: { name: 'sql', config: { type: 'sql_lmdb', path: dir, map_size_mb: 256 } } })) as ActorRef<TableMessage>

const spec = (name: string): TableSpec => ({ name, columns: { id: { type: 'text' }, value: { type: 'integer' }, note: { type: 'text', nullable: true } }, primaryKey: ['id'] })

/** A write op of each kind the write path carries; `bad` adds a column the table lacks, which the store refuses with bad_row. */
type OpKind = 'put-upsert' | 'put-insert' | 'upsert' | 'insert'
function opFor(table: TableSpec, kind: OpKind, row: { id: string; value: number; note: string | null }, bad: boolean): WriteOp {
  if (bad) return { type: 'upsert', table: table.name, row: { ...row, unknown_column: 1 } }
  switch (kind) {
    case 'put-upsert':
      return putOp(table, row, 'upsert')
    case 'put-insert':
      return putOp(table, row, 'insert')
    case 'upsert':
    case 'insert':
      return { type: kind, table: table.name, row }
  }
}

const upsert = (id: string, value = 1): WriteOp => ({ type: 'upsert', table: 'fake', row: { id, value } })

async function readAll(store: ActorRef<TableMessage>, table: string): Promise<Map<string, Record<string, unknown>>> {
  const rows = new Map<string, Record<string, unknown>>()
  let cursor: string | null = null
  do {
    const page: RowPage = await store.ask<RowPage>({ type: 'fetchAll', table, limit: 1000, ...(cursor === null ? {} : { cursor }) })
    for (const row of page.rows) rows.set(row['id'] as string, row)
    cursor = page.cursor
  } while (cursor !== null)
  return rows
}

const codeOf = (error: unknown): string => (error instanceof ActorError ? error.code : `not an ActorError: ${String(error)}`)

// ---- the property -----------------------------------------------------------------------------

type Action =
  | { kind: 'write'; rows: Array<{ op: OpKind; value: number; note: string | null; bad: boolean }>; group: boolean; durable: boolean; waits: boolean }
  | { kind: 'flush' }
  | { kind: 'yield'; turn: 'microtask' | 'immediate' | 'timer' }
  /** Fake store only: hold every write from now until a release. */
  | { kind: 'hold' }
  | { kind: 'release' }
  /** Fake store only: the next `count` writes fail with a transient code. */
  | { kind: 'fail'; count: number; code: 'backend_unavailable' | 'restarting' | 'timeout' }

const rowArb = fc.record({
  op: fc.constantFrom<OpKind>('put-upsert', 'put-insert', 'upsert', 'insert'),
  value: fc.integer({ min: -1e9, max: 1e9 }),
  note: fc.option(fc.string({ maxLength: 12 }), { nil: null }),
  bad: fc.integer({ min: 0, max: 9 }).map(n => n === 0), // one row in ten
})
const writeArb = fc.record({
  kind: fc.constant('write' as const),
  rows: fc.array(rowArb, { minLength: 1, maxLength: 4 }),
  group: fc.boolean(),
  durable: fc.boolean(),
  waits: fc.boolean(),
})
const commonActions = [
  { weight: 12, arbitrary: writeArb as fc.Arbitrary<Action> },
  { weight: 2, arbitrary: fc.constant<Action>({ kind: 'flush' }) },
  { weight: 3, arbitrary: fc.constantFrom<Action>({ kind: 'yield', turn: 'microtask' }, { kind: 'yield', turn: 'immediate' }, { kind: 'yield', turn: 'timer' }) },
]
const realActions = fc.array(fc.oneof(...commonActions), { minLength: 1, maxLength: 40, size: 'max' })
const fakeActions = fc.array(
  fc.oneof(
    ...commonActions,
    { weight: 1, arbitrary: fc.constant<Action>({ kind: 'hold' }) },
    { weight: 1, arbitrary: fc.constant<Action>({ kind: 'release' }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('fail' as const), count: fc.integer({ min: 1, max: 2 }), code: fc.constantFrom('backend_unavailable' as const, 'restarting' as const, 'timeout' as const) }) },
  ),
  { minLength: 1, maxLength: 40, size: 'max' },
)
const limitsArb = fc.record({
  maxQueue: fc.integer({ min: 1, max: 12 }),
  writers: fc.integer({ min: 1, max: 3 }),
  maxBatch: fc.integer({ min: 1, max: 8 }),
  lingerMs: fc.integer({ min: 0, max: 5 }),
})

/** What the runs exercised, so that a property that passes is seen not to pass vacuously. */
interface Tally {
  runs: number
  committed: number
  refusedRoom: number
  refusedRow: number
  /** Runs in which the writes queued or in flight reached maxQueue. */
  full: number
}
const newTally = (): Tally => ({ runs: 0, committed: 0, refusedRoom: 0, refusedRow: 0, full: 0 })

interface WriteRecord {
  readonly index: number
  readonly ids: readonly string[]
  readonly rows: ReadonlyArray<{ id: string; value: number; note: string | null }>
  readonly bad: boolean
  readonly waits: boolean
  queuedError?: unknown
  outcome?: { count: number } | { error: unknown }
}

/**
 * Runs `actions` through a writer on `store` and returns what broke, empty when nothing did.
 * The bound is observed through the writes' own promises: a write counts from the callback
 * of its `queued` until the callback of its `done`. The writer admits and finishes a write by
 * settling those promises, and their callbacks run in the order they were settled, so the count
 * the callbacks keep is, after each one, the count of writes queued or in flight.
 */
async function runWrites(
  store: ActorRef<TableMessage>,
  table: TableSpec,
  limits: Pick<BatchWriterOptions, 'maxQueue' | 'writers' | 'maxBatch' | 'lingerMs'>,
  actions: readonly Action[],
  read: () => Promise<Map<string, Record<string, unknown>>>,
  tally: Tally,
  fake?: FakeTable,
): Promise<string[]> {
  const broken: string[] = []
  const writer = new BatchWriter(store, limits)
  const records: WriteRecord[] = []
  const flushes: Array<Promise<void>> = []
  let unfinished = 0
  let peak = 0
  let held: ReturnType<typeof latch> | undefined
  const release = (): void => {
    held?.open()
    held = undefined
    if (fake !== undefined) fake.hold = undefined
  }
  const checkStats = (): void => {
    const stats = writer.stats()
    if (stats.queued > limits.maxQueue) broken.push(`stats.queued ${stats.queued} > maxQueue ${limits.maxQueue}`)
    if (stats.inFlight > limits.writers) broken.push(`stats.inFlight ${stats.inFlight} > writers ${limits.writers}`)
  }
  for (const action of actions) {
    checkStats()
    switch (action.kind) {
      case 'write': {
        const index = records.length
        const rows = action.rows.map((row, i) => ({ id: `w${index}-${i}`, value: row.value, note: row.note }))
        const ops = action.rows.map((row, i) => opFor(table, row.op, rows[i]!, row.bad))
        const record: WriteRecord = { index, ids: rows.map(row => row.id), rows, bad: action.rows.some(row => row.bad), waits: action.waits }
        // The fake refuses by id what the real store refuses for the column it lacks.
        action.rows.forEach((row, i) => row.bad && fake?.refuse.add(rows[i]!.id))
        records.push(record)
        // A group of one is still a group; a single op goes bare.
        const write: Write = writer.write(action.group || ops.length > 1 ? ops : ops[0]!, { durable: action.durable, waitMs: action.waits ? 30_000 : 0 })
        let admitted = false
        write.queued.then(
          () => {
            admitted = true
            peak = Math.max(peak, ++unfinished)
          },
          error => (record.queuedError = error),
        )
        write.done.then(
          count => {
            if (admitted) unfinished--
            record.outcome = { count }
          },
          error => {
            if (admitted) unfinished--
            record.outcome = { error }
          },
        )
        break
      }
      case 'flush': {
        const before = records.slice()
        flushes.push(
          writer.flush().then(() => {
            const open = before.filter(record => record.outcome === undefined).map(record => record.index)
            if (open.length > 0) broken.push(`a flush resolved before earlier writes ${open.join(', ')} were done`)
          }),
        )
        break
      }
      case 'yield':
        if (action.turn === 'microtask') await Promise.resolve()
        else if (action.turn === 'immediate') await new Promise(resolve => setImmediate(resolve))
        else await new Promise(resolve => setTimeout(resolve, 2))
        break
      case 'hold':
        if (fake !== undefined && held === undefined) {
          const gate = latch()
          held = gate
          fake.hold = () => gate.promise
        }
        break
      case 'release':
        release()
        break
      case 'fail':
        if (fake !== undefined) fake.failures = { count: action.count, code: action.code }
        break
    }
  }
  checkStats()
  release()
  await writer.flush()
  await Promise.all(flushes)
  tally.runs++
  if (peak === limits.maxQueue) tally.full++
  if (peak > limits.maxQueue) broken.push(`${peak} writes were queued or in flight at once, more than maxQueue ${limits.maxQueue}`)

  const stored = await read()
  const expected = new Set<string>()
  let committed = 0
  for (const record of records) {
    const { outcome } = record
    if (outcome === undefined) {
      broken.push(`write ${record.index} never settled after the final flush`)
      continue
    }
    if ('count' in outcome) {
      committed++
      tally.committed++
      if (record.bad) broken.push(`write ${record.index} holds a row the store refuses, yet resolved`)
      if (outcome.count !== record.ids.length) broken.push(`write ${record.index} of ${record.ids.length} ops resolved with count ${outcome.count}`)
      for (const row of record.rows) {
        expected.add(row.id)
        const got = stored.get(row.id)
        if (got === undefined) broken.push(`write ${record.index} resolved, but its row ${row.id} is not in the table`)
        else if (got['value'] !== row.value || got['note'] !== row.note) broken.push(`row ${row.id} holds ${JSON.stringify(got)}, not ${JSON.stringify(row)}`)
      }
    } else {
      const code = codeOf(outcome.error)
      if (code === 'backpressure') tally.refusedRoom++
      else if (code === 'bad_row') tally.refusedRow++
      if (code === 'backpressure') {
        // Refused room: only a write that may not wait, and before it was queued.
        if (record.waits) broken.push(`write ${record.index} was refused room though it could wait for it`)
        if (codeOf(record.queuedError) !== 'backpressure') broken.push(`write ${record.index} was refused room, yet its queued promise did not reject with backpressure`)
      } else if (!record.bad || code !== 'bad_row') {
        broken.push(`write ${record.index}${record.bad ? ' (with a bad row)' : ''} failed with ${code}`)
      }
      for (const id of record.ids) if (stored.has(id)) broken.push(`write ${record.index} failed, yet its row ${id} is in the table (a group is all or nothing)`)
    }
  }
  for (const id of stored.keys()) if (!expected.has(id)) broken.push(`row ${id} is in the table, but no write that resolved holds it`)
  const stats = writer.stats()
  if (stats.written !== committed) broken.push(`stats.written ${stats.written}, but ${committed} writes resolved`)
  if (stats.queued !== 0 || stats.waiting !== 0 || stats.inFlight !== 0) broken.push(`after the final flush: ${JSON.stringify(stats)}`)
  return broken
}

t.test('property: every write that resolves is stored with its value, a group lands whole or not at all, counts add up, and the queue bound holds (sql_lmdb on the pool)', async t => {
  let run = 0
  const tally = newTally()
  const details = await fc.check(
    fc.asyncProperty(limitsArb, realActions, async (limits, actions) => {
      const table = spec(`bw_${++run}`)
      await lmdb.ask({ type: 'createTable', table })
      const broken = await runWrites(lmdb, table, limits, actions, () => readAll(lmdb, table.name), tally)
      if (broken.length > 0) throw new Error(broken.join('\n'))
    }),
    { numRuns: 100 },
  )
  heldEveryRun(t, details, tally)
})

/** Every run of a property held, and the runs did what the property is about: stored, refused for room and for a bad row, filled the queue. */
function heldEveryRun<T>(t: Test, details: fc.RunDetails<T>, tally: ReturnType<typeof newTally>): void {
  t.notOk(details.failed, details.failed ? `${fc.defaultReportMessage(details)}\n${String(details.errorInstance)}` : 'every run held')
  t.comment(JSON.stringify(tally))
  t.ok(tally.committed > 0 && tally.refusedRoom > 0 && tally.refusedRow > 0 && tally.full > 0, 'the runs stored writes, refused some for room and some for a bad row, and filled the queue')
}

t.test('property: the same, against a store that holds writes and fails some for a while (the fake)', async t => {
  const tally = newTally()
  const details = await fc.check(
    fc.asyncProperty(limitsArb, fakeActions, async (limits, actions) => {
      const fake = newFakeTable()
      const store = await spawnFakeTable(system, fake)
      try {
        const broken = await runWrites(store, spec('fake'), limits, actions, async () => fake.rows, tally, fake)
        if (broken.length > 0) throw new Error(broken.join('\n'))
      } finally {
        await system.stop(store)
      }
    }),
    { numRuns: 60 },
  )
  heldEveryRun(t, details, tally)
})

// ---- each rule alone, on the fake -------------------------------------------------------------

t.test('a full queue refuses a write with backpressure at once; a write that may wait is admitted once room frees, in arrival order', async t => {
  const fake = newFakeTable()
  const gate = latch()
  fake.hold = () => gate.promise
  const writer = new BatchWriter(await spawnFakeTable(system, fake), { maxQueue: 3, writers: 1 })
  const first = ['a', 'b', 'c'].map(id => writer.write(upsert(id)))
  await Promise.all(first.map(write => write.queued))

  const refused = writer.write(upsert('d'))
  const error = await refused.queued.catch((e: unknown) => e)
  t.ok(error instanceof ActorError, 'a typed ActorError')
  t.equal(codeOf(error), 'backpressure', 'refused at once with backpressure')
  t.equal(codeOf(await refused.done.catch((e: unknown) => e)), 'backpressure', 'its done rejects too')

  const admitted: string[] = []
  const later = ['e', 'f', 'g'].map(id => {
    const write = writer.write(upsert(id), { waitMs: 10_000 })
    void write.queued.then(() => admitted.push(id))
    return write
  })
  const gaveUp = writer.write(upsert('x'), { waitMs: 30 })
  t.equal(codeOf(await gaveUp.queued.catch((e: unknown) => e)), 'backpressure', 'a write whose wait ran out is refused with backpressure')
  const behind = writer.write(upsert('y'))
  t.equal(codeOf(await behind.queued.catch((e: unknown) => e)), 'backpressure', 'a write that may not wait is refused while others wait, even for a moment')
  t.same(admitted, [], 'no room while the store holds the first three')
  t.match(writer.stats(), { waiting: 3 })

  gate.open()
  t.same(await Promise.all([...first, ...later].map(write => write.done)), [1, 1, 1, 1, 1, 1])
  t.same(admitted, ['e', 'f', 'g'], 'admitted in arrival order')
  t.same([...fake.rows.keys()].sort(), ['a', 'b', 'c', 'e', 'f', 'g'], 'the refused writes are not stored')
})

t.test('configure with a larger queue admits waiting writes at once', async t => {
  const fake = newFakeTable()
  const gate = latch()
  fake.hold = () => gate.promise
  const writer = new BatchWriter(await spawnFakeTable(system, fake), { maxQueue: 1, writers: 1 })
  const a = writer.write(upsert('a'))
  const b = writer.write(upsert('b'), { waitMs: 10_000 })
  await a.queued
  t.equal(await settledState(b.queued), 'pending', 'b waits for room')
  writer.configure({ maxQueue: 2, writers: 1 })
  t.equal(await settledState(b.queued), 'fulfilled', 'b is admitted by the larger bound, the store still holding a')
  t.match(writer.stats(), { maxQueue: 2, waiting: 0 })
  gate.open()
  await Promise.all([a.done, b.done])
  t.same([...fake.rows.keys()].sort(), ['a', 'b'])
})

t.test('a write the store refuses (bad_row) fails alone; the rest of its batch lands; a group with a refused row lands not at all', async t => {
  const fake = newFakeTable()
  fake.refuse.add('bad')
  fake.refuse.add('bad-in-group')
  const writer = new BatchWriter(await spawnFakeTable(system, fake), { maxQueue: 100, writers: 1 })
  const writes = {
    a: writer.write(upsert('a')),
    bad: writer.write(upsert('bad')),
    group: writer.write([upsert('g1'), upsert('bad-in-group'), upsert('g2')]),
    b: writer.write(upsert('b')),
    pair: writer.write([upsert('p1'), upsert('p2')]),
  }
  t.equal(codeOf(await writes.bad.done.catch((e: unknown) => e)), 'bad_row', 'the bad write fails with the store’s code')
  t.equal(codeOf(await writes.group.done.catch((e: unknown) => e)), 'bad_row', 'so does the group holding a bad row')
  t.same(await Promise.all([writes.a.done, writes.b.done, writes.pair.done]), [1, 1, 2], 'the others resolve with their counts of rows')
  t.same(fake.transactions[0]?.ids, ['a', 'bad', 'g1', 'bad-in-group', 'g2', 'b', 'p1', 'p2'], 'they were sent as one batch')
  t.same([...fake.rows.keys()].sort(), ['a', 'b', 'p1', 'p2'], 'nothing of the refused group is stored')
  t.equal(writer.stats().written, 3)
})

t.test('transient failures are retried until the write lands', async t => {
  for (const code of ['backend_unavailable', 'restarting', 'timeout', 'crashed']) {
    const fake = newFakeTable()
    fake.failures = { count: 2, code }
    const writer = new BatchWriter(await spawnFakeTable(system, fake), { maxQueue: 100, writers: 2 })
    const counts = await Promise.all([writer.write(upsert('a')).done, writer.write([upsert('b'), upsert('c')]).done])
    t.same(counts, [1, 2], `${code}: both writes land`)
    t.same([...fake.rows.keys()].sort(), ['a', 'b', 'c'])
    t.equal(fake.transactions.length, 3, `${code}: two failed attempts, then the one that landed`)
    t.match(writer.stats(), { failures: 2, written: 2 })
  }
})

t.test('maxAttempts bounds the retries of a transient failure; the writer goes on after it', async t => {
  const fake = newFakeTable()
  fake.failures = { count: 1000, code: 'backend_unavailable' }
  const writer = new BatchWriter(await spawnFakeTable(system, fake), { maxQueue: 100, writers: 1, maxAttempts: 3 })
  const lost = writer.write(upsert('a'))
  t.equal(codeOf(await lost.done.catch((e: unknown) => e)), 'backend_unavailable', 'fails with the last attempt’s code')
  t.equal(fake.transactions.length, 3, 'three attempts, no more')
  fake.failures.count = 0
  t.equal(await writer.write(upsert('b')).done, 1)
  t.same([...fake.rows.keys()], ['b'])
})

t.test('flush waits for the writes made before it, not for later ones', async t => {
  const fake = newFakeTable()
  const gate = latch()
  fake.hold = ids => (ids.includes('later') ? gate.promise : undefined)
  const writer = new BatchWriter(await spawnFakeTable(system, fake), { maxQueue: 100, writers: 2 })
  const early = writer.write(upsert('early'))
  const flushed = writer.flush()
  const later = writer.write(upsert('later'))
  await flushed
  t.equal(await settledState(early.done), 'fulfilled', 'the earlier write is done when the flush resolves')
  t.ok(fake.rows.has('early'))
  t.equal(await settledState(later.done), 'pending', 'the later write, held by the store, did not hold up the flush')
  gate.open()
  t.equal(await later.done, 1)
  await writer.flush()
})

t.test('flush cuts the linger short; without it a lone write lingers', async t => {
  const fake = newFakeTable()
  const writer = new BatchWriter(await spawnFakeTable(system, fake), { maxQueue: 100, writers: 1, lingerMs: 5_000 })
  const write = writer.write(upsert('a'))
  for (let i = 0; i < 5; i++) await new Promise(resolve => setImmediate(resolve))
  t.equal(fake.transactions.length, 0, 'lingering for others to share its commit')
  t.equal(await settledState(write.done), 'pending')
  const started = performance.now()
  await writer.flush()
  t.ok(performance.now() - started < 2_500, 'the flush did not wait out the linger')
  t.equal(await write.done, 1)
  t.ok(fake.rows.has('a'))
  t.equal(fake.transactions[0]?.durable, false, 'a batch of writes not marked durable is not sent durable')
  await writer.close()
})

t.test('close writes everything queued or waiting, then refuses new writes with stopped', async t => {
  const fake = newFakeTable()
  const gate = latch()
  fake.hold = () => gate.promise
  const writer = new BatchWriter(await spawnFakeTable(system, fake), { maxQueue: 2, writers: 1, lingerMs: 5_000 })
  const writes = [writer.write(upsert('a')), writer.write(upsert('b')), writer.write(upsert('c'), { waitMs: 10_000 })]
  const closed = writer.close()
  const refused = writer.write(upsert('d'), { waitMs: 10_000 })
  const error = await refused.queued.catch((e: unknown) => e)
  t.ok(error instanceof ActorError)
  t.equal(codeOf(error), 'stopped', 'a write after close is refused with stopped')
  t.equal(codeOf(await refused.done.catch((e: unknown) => e)), 'stopped')
  t.equal(await settledState(closed), 'pending', 'close waits while the store holds the queued writes')
  gate.open()
  await closed
  t.same(await Promise.all(writes.map(write => write.done)), [1, 1, 1], 'every write queued or waiting at close is written')
  t.same([...fake.rows.keys()].sort(), ['a', 'b', 'c'])
  await writer.close() // a second close resolves
  t.equal(codeOf(await writer.write(upsert('e')).done.catch((e: unknown) => e)), 'stopped')
})

t.test('durable writes made in one turn go in one batch, at once, with any others of that turn', async t => {
  const fake = newFakeTable()
  const writer = new BatchWriter(await spawnFakeTable(system, fake), { maxQueue: 100, writers: 4, lingerMs: 5_000 })
  const writes = [writer.write(upsert('d1'), { durable: true }), writer.write(upsert('n1')), writer.write(upsert('d2'), { durable: true }), writer.write([upsert('g1'), upsert('g2')], { durable: true })]
  t.same(await Promise.all(writes.map(write => write.done)), [1, 1, 1, 2], 'done without waiting out the linger')
  t.same(fake.transactions, [{ ids: ['d1', 'n1', 'd2', 'g1', 'g2'], durable: true }], 'one durable transaction')
})

t.test('writes made in promise continuations of the same turn share its batch', async t => {
  // As a run's row is written, then its first step's journal entry a few awaits later.
  const fake = newFakeTable()
  const writer = new BatchWriter(await spawnFakeTable(system, fake), { maxQueue: 100, writers: 4, lingerMs: 5_000 })
  const first = writer.write(upsert('row'), { durable: true })
  const later = Promise.resolve()
    .then(() => undefined)
    .then(() => writer.write(upsert('journal'), { durable: true }))
  t.same(await Promise.all([first.done, (await later).done]), [1, 1])
  t.same(fake.transactions, [{ ids: ['row', 'journal'], durable: true }], 'one durable transaction')
})

t.test('durable writes that arrive while the writers are busy share the next commit (group commit)', async t => {
  const fake = newFakeTable()
  const gate = latch()
  fake.hold = ids => (ids.includes('first') ? gate.promise : undefined)
  const writer = new BatchWriter(await spawnFakeTable(system, fake), { maxQueue: 100, writers: 1 })
  const first = writer.write(upsert('first'), { durable: true })
  const rest: Write[] = []
  for (let i = 0; i < 5; i++) {
    await new Promise(resolve => setImmediate(resolve)) // each in a turn of its own
    rest.push(writer.write(upsert(`q${i}`), { durable: true }))
  }
  t.equal(fake.transactions.length, 1, 'only the first is sent while the one writer is busy')
  gate.open()
  await Promise.all([first.done, ...rest.map(write => write.done)])
  t.same(
    fake.transactions,
    [
      { ids: ['first'], durable: true },
      { ids: ['q0', 'q1', 'q2', 'q3', 'q4'], durable: true },
    ],
    'the five that waited went in one commit',
  )
})

t.test('close leaves no timer behind to hold the process open', async t => {
  const timers = (): number => process.getActiveResourcesInfo().filter(resource => resource === 'Timeout').length
  for (const durable of [true, false]) {
    const fake = newFakeTable()
    const store = await spawnFakeTable(system, fake)
    const before = timers()
    const writer = new BatchWriter(store, { maxQueue: 10, writers: 1, lingerMs: 5_000 })
    const write = writer.write(upsert('a'), { durable })
    await new Promise(resolve => setImmediate(resolve))
    await writer.close()
    t.equal(await write.done, 1)
    t.equal(timers(), before, `a ${durable ? 'durable' : 'lingering'} write, then close: as many timers as before the writer`)
  }
})
