// ActorSystem.resizePool: the worker pool grows and shrinks while the system runs.
import t from 'tap'
import type { ActorRef } from '../../src/index.js'
import { journal } from '../fixtures/behaviors.js'
import { ledger, type LedgerMessage } from '../fixtures/restart-behaviors.js'
import { startSystem } from '../fixtures/system.js'

type Ledger = ActorRef<LedgerMessage>

const poolThreads = async (system: Awaited<ReturnType<typeof startSystem>>): Promise<number[]> =>
  (await system.inspect()).threads.filter(thread => thread.kind === 'pool').map(thread => thread.thread)

t.test('the pool grows: new threads take new actors at once', async t => {
  const system = await startSystem(t, { workers: 1 })
  t.equal((await poolThreads(system)).length, 1)
  await system.resizePool(3)
  const threads = await poolThreads(system)
  t.equal(threads.length, 3, 'three pool threads')
  const refs: Ledger[] = []
  for (let i = 0; i < 6; i++) refs.push(await system.spawn(ledger, { placement: 'pool' }))
  for (const ref of refs) t.equal(await ref.ask({ type: 'add', n: 1 }), 1)
  const placed = (await system.inspect()).threads.filter(thread => thread.kind === 'pool' && thread.actors > 0).length
  t.equal(placed, 3, 'the new actors spread over all three')
})

t.test('the pool shrinks: actors on the retired threads restart on those that stay, behind the same refs', async t => {
  const system = await startSystem(t, { workers: 3 })
  const entries: string[] = []
  const log = await system.spawn(journal, { placement: 'main', args: { entries } })
  const sup = await system.supervise({
    strategy: 'one_for_one',
    children: ['a', 'b', 'c', 'd', 'e', 'f'].map(id => ({ id, behavior: ledger, placement: 'pool' as const, args: { label: id, notify: log } })),
  })
  const refs = ['a', 'b', 'c', 'd', 'e', 'f'].map(id => sup.child<LedgerMessage>(id))
  for (const ref of refs) await ref.ask({ type: 'add', n: 10 })
  const slow = refs.map(ref => ref.ask({ type: 'slow', ms: 100 }))
  await system.resizePool(1)
  t.same(await Promise.all(slow), refs.map(() => 'slow done'), 'asks in flight during the shrink were answered')
  const threads = await poolThreads(system)
  t.equal(threads.length, 1, 'one pool thread left')
  const totals = await Promise.all(refs.map(ref => ref.ask<number>({ type: 'total' })))
  const moved = totals.filter(total => total === 0).length
  t.ok(moved >= 4, `${moved} actors were restarted onto the thread that stays (a fresh total); the rest kept theirs`)
  t.equal(entries.filter(entry => entry.endsWith(':restart')).length, moved, 'each moved actor stopped with reason restart')
  t.same((await system.inspect()).threads.filter(thread => thread.kind === 'pool').map(thread => thread.actors), [6], 'every actor is on the one thread')
  await t.rejects(system.resizePool(0), TypeError)
})
