import { setTimeout as delay } from 'node:timers/promises'
import pg from 'pg'
import t from 'tap'
import type { ActorSystem } from '../../src/index.js'
import { kvStore } from '../../actors/stores/kv-store.js'
import { tableStore } from '../../actors/stores/table-store.js'
import type { RunInfo, WorkflowStats } from '../../actors/workflows/protocol.js'
import { newRunRow, RunStore, type RunRow } from '../../actors/workflows/run-store.js'
import { eventually } from '../fixtures/eventually.js'
import { POSTGRES, unreachable } from '../fixtures/servers.js'
import { startSystem } from '../fixtures/system.js'
import { allEvents, spawnWorkflow, startRun, type Stores } from '../fixtures/workflow-actor.js'
import { waitsForHuman } from '../fixtures/workflows.js'

/**
 * Two owners, as two nodes would be, on one Postgres runs table: each an actor system with its
 * own sql_postgres store actor (its own connection pool) and workflow actor. Leases are short so
 * that lapsing and scanning happen within the test.
 */

const postgresSkip = await unreachable('Postgres', 5432)
const LEASE_MS = 1500

let tables = 0
const created: string[] = []
/** A fresh runs table per test; it and the three tables named after it are dropped after the file. */
const freshTable = (): string => {
  const name = `wf_runs_${process.pid}_${Date.now() % 1e6}_${++tables}`
  created.push(name, `${name}_events`, `${name}_journal`, `${name}_inbox`)
  return name
}

/** A node: its own system, a sql_postgres runs store and an in-memory sessions store. */
async function startNode(t: Parameters<typeof startSystem>[0]): Promise<{ system: ActorSystem; stores: Stores }> {
  const system = await startSystem(t, { workers: 1 })
  const runs = await system.spawn(tableStore, { placement: 'pool', args: { name: 'runs', config: { type: 'sql_postgres', ...POSTGRES } } })
  const sessions = await system.spawn(kvStore, { placement: 'pool', args: { name: 'sessions', config: { type: 'kv_memory' } } })
  return { system, stores: { runs, sessions } }
}

const skip = postgresSkip ?? false
// Two nodes, shared by the tests (each test has its own table): a system start costs seconds.
const [a, b] = postgresSkip === undefined ? await Promise.all([startNode(t), startNode(t)]) : []

if (postgresSkip === undefined) {
  t.teardown(async () => {
    // The nodes first (shutdown is idempotent), so that no pool still writes to what is dropped.
    await Promise.all([a!.system.shutdown(), b!.system.shutdown()])
    const client = new pg.Client({ host: POSTGRES.host, port: POSTGRES.port, database: POSTGRES.db, user: POSTGRES.user })
    await client.connect()
    for (const name of created) await client.query(`DROP TABLE IF EXISTS "${name}"`)
    await client.query('DELETE FROM troupe_tables WHERE name = ANY($1)', [created])
    await client.end()
  })
}

/**
 * A fresh runs table as each node sees it, through its own store actor. Each store actor learns a
 * table by creating it (idempotent), as each node's workflow actor does at start.
 */
async function sharedTable(): Promise<{ table: string; storeA: RunStore; storeB: RunStore }> {
  const table = freshTable()
  const storeA = new RunStore(a!.stores.runs, table)
  const storeB = new RunStore(b!.stores.runs, table)
  await storeA.create()
  await storeB.create()
  return { table, storeA, storeB }
}

t.test('two owners on one Postgres runs table: a live lease is left alone; a lapsed one is claimed, resumed and completed by the other', { skip }, async t => {
  const { table, storeA, storeB } = await sharedTable()
  const row = async (runId: string): Promise<RunRow> => (await storeB.getRun(runId))!

  const refA = await spawnWorkflow(a!.system, a!.stores, waitsForHuman, { owner: 'owner-a', leaseMs: LEASE_MS, table })
  const { run } = await startRun(refA, { prefix: 'approve?' })
  await eventually(async () => (await storeA.journalOf(run.runId)).some(entry => entry.kind === 'wait'), 'the run to wait on owner A')
  const seenBeforeB = await row(run.runId)
  t.match(seenBeforeB, { lease_owner: 'owner-a', lease_epoch: 1, status: 'running' })

  // B's start-up scan runs at once, its periodic one every LEASE_MS: nothing is observable
  // when B rightly does nothing, so the test lets two periodic scans pass.
  const refB = await spawnWorkflow(b!.system, b!.stores, waitsForHuman, { owner: 'owner-b', leaseMs: LEASE_MS, table })
  await delay(2 * LEASE_MS + LEASE_MS / 2)
  const held = await row(run.runId)
  t.match(held, { lease_owner: 'owner-a', lease_epoch: 1, attempt: 1 }, 'B did not claim a run whose lease A renews')
  t.ok(held.lease_expires > seenBeforeB.lease_expires, 'A renewed its lease meanwhile')
  t.equal((await refB.ask<WorkflowStats>({ type: 'stats' })).resumed, 0)
  t.match(await refA.ask<RunInfo>({ type: 'get', runId: run.runId }), { status: 'running' }, 'A still runs it')

  // Stopping A's actor suspends the run: still running, under A's last lease, which nobody renews.
  await a!.system.stop(refA)
  const abandoned = await row(run.runId)
  t.match(abandoned, { status: 'running', lease_owner: 'owner-a', lease_epoch: 1 })

  await eventually(async () => (await row(run.runId)).lease_owner === 'owner-b', 'B to claim the lapsed run', 4 * LEASE_MS + 10_000)
  const claimed = await row(run.runId)
  t.match(claimed, { status: 'running', lease_epoch: 2, attempt: 2 })
  t.ok(claimed.updated_at >= abandoned.lease_expires, `B claimed only once the lease lapsed (${claimed.updated_at - abandoned.lease_expires} ms after)`)

  t.equal(await storeA.claim(seenBeforeB, 'owner-a', LEASE_MS), undefined, 'a claim from a row read before B claimed finds the epoch moved on')
  t.match(await row(run.runId), { lease_owner: 'owner-b', lease_epoch: 2 }, 'and changes nothing')

  await eventually(async () => (await refB.ask<WorkflowStats>({ type: 'stats' })).resumed === 1, 'B to resume the run')
  t.same(await refB.ask({ type: 'send', runId: run.runId, event: { type: 'HumanResponseEvent', value: { response: 'approved' } } }), { status: 'sent' })
  const done = await refB.ask<RunInfo>({ type: 'wait', runId: run.runId }, { timeoutMs: 30_000 })
  t.match(done, { status: 'completed', result: { response: 'approved' } })
  const events = await allEvents(refB, run.runId)
  t.same(events.map(event => [event.seq, event.type]), [[0, 'InputRequiredEvent'], [1, 'StopEvent']], 'the resumed run asked once')
  t.match(await row(run.runId), { status: 'completed', lease_owner: null, lease_epoch: 2 })
})

t.test('claiming is a compare-and-set on owner, epoch and expiry: of two owners claiming from the same read, exactly one wins', { skip }, async t => {
  const { storeA, storeB } = await sharedTable()
  const now = Date.now()
  const lapsed = newRunRow({ runId: 'run-contended', workflow: 'waitsForHuman', sessionId: 'session-contended', startEvent: {}, initialState: '', owner: 'owner-gone', epoch: 3, leaseMs: -1, deadline: null, at: now })
  t.equal(await storeA.insertRun(lapsed), true)
  for (let round = 0; round < 5; round++) {
    const seen = (await storeA.getRun(lapsed.run_id))!
    const [byA, byB] = await Promise.all([storeA.claim(seen, 'owner-a', LEASE_MS), storeB.claim(seen, 'owner-b', LEASE_MS)])
    const winners = [byA, byB].filter(epoch => epoch !== undefined)
    t.same(winners, [seen.lease_epoch + 1], `round ${round}: one claim wins, with the next epoch`)
    t.match(await storeB.getRun(lapsed.run_id), { lease_owner: byA === undefined ? 'owner-b' : 'owner-a', lease_epoch: seen.lease_epoch + 1 })
  }
})

t.test(
  'a claim from a row read before the holder renewed its lease is refused: the lease it saw lapse is live again',
  { skip },
  async t => {
    const { table, storeA, storeB } = await sharedTable()
    const refA = await spawnWorkflow(a!.system, a!.stores, waitsForHuman, { owner: 'owner-a', leaseMs: LEASE_MS, table })
    t.teardown(() => a!.system.stop(refA))
    const { run } = await startRun(refA, {})
    await eventually(async () => (await storeA.journalOf(run.runId)).some(entry => entry.kind === 'wait'), 'the run to wait on owner A')
    const seen = (await storeB.getRun(run.runId))!
    await eventually(async () => (await storeB.getRun(run.runId))!.lease_expires > seen.lease_expires, 'A to renew its lease')
    t.equal(await storeB.claim(seen, 'owner-b', LEASE_MS), undefined, 'the claim finds the lease changed since it was read')
    t.match(await storeB.getRun(run.runId), { lease_owner: 'owner-a', lease_epoch: 1 }, 'A still holds it')
  },
)
