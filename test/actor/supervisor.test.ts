import { once } from 'node:events'
import t from 'tap'
import type { ActorRef, Supervisor } from '../../src/index.js'
import { journal, probe, type ProbeMessage } from '../fixtures/behaviors.js'
import { whenRunning } from '../fixtures/eventually.js'
import { startSystem } from '../fixtures/system.js'

const incarnation = (ref: ActorRef<ProbeMessage>): Promise<number> => whenRunning(() => ref.ask<number>({ type: 'incarnation' }))
const crash = (ref: ActorRef<ProbeMessage>): Promise<unknown> => ref.ask({ type: 'throw', message: 'injected' }).catch(error => error)

/** Crashes child `victim` and reports, per child, whether it came back as a new incarnation. */
async function restartedAfterCrash(sup: Supervisor, ids: string[], victim: string, restarts: number): Promise<Record<string, boolean>> {
  const refs = ids.map(id => sup.child<ProbeMessage>(id))
  const before = await Promise.all(refs.map(incarnation))
  const done = waitForRestarts(sup, restarts)
  await crash(sup.child<ProbeMessage>(victim))
  await done
  const after = await Promise.all(refs.map(incarnation))
  return Object.fromEntries(ids.map((id, i) => [id, before[i] !== after[i]]))
}

async function waitForRestarts(sup: Supervisor, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await once(sup, 'restarted')
}

const three = (strategy: 'one_for_one' | 'one_for_all' | 'rest_for_one') => ({
  strategy,
  children: ['a', 'b', 'c'].map(id => ({ id, behavior: probe, placement: 'pool' as const })),
})

t.test('one_for_one restarts only the child that crashed', async t => {
  const system = await startSystem(t)
  const sup = await system.supervise(three('one_for_one'))
  t.same(await restartedAfterCrash(sup, ['a', 'b', 'c'], 'b', 1), { a: false, b: true, c: false })
})

t.test('one_for_all restarts every child', async t => {
  const system = await startSystem(t)
  const sup = await system.supervise(three('one_for_all'))
  t.same(await restartedAfterCrash(sup, ['a', 'b', 'c'], 'b', 3), { a: true, b: true, c: true })
})

t.test('rest_for_one restarts the child and those started after it', async t => {
  const system = await startSystem(t)
  const sup = await system.supervise(three('rest_for_one'))
  t.same(await restartedAfterCrash(sup, ['a', 'b', 'c'], 'b', 2), { a: false, b: true, c: true })
})

t.test('refs stay valid across restarts, and restarts are counted', async t => {
  const system = await startSystem(t)
  const sup = await system.supervise(three('one_for_one'))
  const ref = sup.child<ProbeMessage>('a')
  for (let i = 0; i < 2; i++) {
    const restarted = once(sup, 'restarted')
    await crash(ref)
    await restarted
  }
  t.equal(await whenRunning(() => ref.ask({ type: 'echo', value: 'same ref' })), 'same ref')
  const snapshot = await system.inspect()
  const node = snapshot.root.children.find(n => n.kind === 'supervisor')
  t.match(node, { children: [{ id: 'a', restarts: 2 }, { id: 'b', restarts: 0 }, { id: 'c', restarts: 0 }] })
})

t.test('restart types: permanent, transient and temporary', async t => {
  const system = await startSystem(t)
  const sup = await system.supervise({
    strategy: 'one_for_one',
    children: [
      { id: 'perm', behavior: probe, restart: 'permanent' },
      { id: 'trans', behavior: probe, restart: 'transient' },
      { id: 'temp', behavior: probe, restart: 'temporary' },
      { id: 'trans2', behavior: probe, restart: 'transient' },
    ],
  })
  const [perm, trans, temp, trans2] = ['perm', 'trans', 'temp', 'trans2'].map(id => sup.child<ProbeMessage>(id)) as [
    ActorRef<ProbeMessage>,
    ActorRef<ProbeMessage>,
    ActorRef<ProbeMessage>,
    ActorRef<ProbeMessage>,
  ]

  let restarted = once(sup, 'restarted')
  t.equal(await perm.ask({ type: 'stop-self' }), 'stopping')
  t.same(await restarted, ['perm'], 'a permanent child that stops itself is restarted')

  t.equal(await trans.ask({ type: 'stop-self' }), 'stopping')
  restarted = once(sup, 'restarted')
  await crash(trans2)
  t.same(await restarted, ['trans2'], 'a transient child that crashes is restarted')
  await t.rejects(whenRunning(() => trans.ask({ type: 'echo', value: 1 })), { code: 'no_such_actor' }, 'a transient child that stops itself is not')

  await crash(temp)
  await t.rejects(whenRunning(() => temp.ask({ type: 'echo', value: 1 })), { code: 'no_such_actor' }, 'a temporary child is never restarted')
  t.equal(await whenRunning(() => perm.ask({ type: 'echo', value: 'alive' })), 'alive')
})

t.test('a supervisor that exceeds its intensity stops its children and escalates to its parent', async t => {
  const system = await startSystem(t)
  const outer = await system.supervise({
    strategy: 'one_for_one',
    intensity: 5,
    periodMs: 60_000,
    children: [{ id: 'inner', supervisor: { strategy: 'one_for_one', intensity: 1, periodMs: 60_000, children: [{ id: 'w', behavior: probe }] } }],
  })
  const inner = outer.supervisor('inner')
  const worker = inner.child<ProbeMessage>('w')
  const first = await incarnation(worker)

  const restarted = once(inner, 'restarted')
  await crash(worker)
  await restarted // one restart is within intensity 1

  const failed = once(inner, 'failed')
  const outerRestarted = once(outer, 'restarted')
  await crash(worker) // the second exceeds it
  const [failure] = await failed
  t.match(failure, { code: 'crashed', message: /gave up/ })
  t.same(await outerRestarted, ['inner'], 'the parent restarts the escalated supervisor')
  t.equal(inner.status, 'running')
  t.not(await incarnation(worker), first, 'with its children, behind the same refs')
})

t.test('a top-level supervisor that escalates is given up, and its actors are gone', async t => {
  const system = await startSystem(t)
  const sup = await system.supervise({ strategy: 'one_for_one', intensity: 0, children: [{ id: 'w', behavior: probe }] })
  const worker = sup.child<ProbeMessage>('w')
  const failed = once(sup, 'failed')
  await crash(worker)
  await failed
  t.equal(sup.status, 'failed')
  await t.rejects(whenRunning(() => worker.ask({ type: 'echo', value: 1 })), { code: 'no_such_actor' })
})

t.test('an actor spawned on the root that keeps crashing is given up alone', async t => {
  const system = await startSystem(t, { restart: { intensity: 1, periodMs: 60_000 } })
  const doomed = await system.spawn(probe, { name: 'doomed' })
  const bystander = await system.spawn(probe, { name: 'bystander' })
  await crash(doomed)
  await whenRunning(() => doomed.ask({ type: 'echo', value: 1 }))
  await crash(doomed)
  await t.rejects(whenRunning(() => doomed.ask({ type: 'echo', value: 1 })), { code: 'no_such_actor' })
  t.equal(await bystander.ask({ type: 'echo', value: 'fine' }), 'fine', 'other top-level actors keep running')
})

t.test('backoff delays the restart; an ask sent meanwhile waits for it', async t => {
  const system = await startSystem(t)
  const minMs = 300
  const sup = await system.supervise({
    strategy: 'one_for_one',
    backoff: { minMs, maxMs: 2000, randomFactor: 0 },
    children: [{ id: 'w', behavior: probe }],
  })
  const worker = sup.child<ProbeMessage>('w')
  const restarted = once(sup, 'restarted')
  const crashedAt = Date.now()
  await crash(worker)
  const waiting = worker.ask({ type: 'echo', value: 'waited' })
  await restarted
  t.ok(Date.now() - crashedAt >= minMs, `restart waited at least minMs (${Date.now() - crashedAt} ms)`)
  t.equal(await waiting, 'waited', 'the ask sent during the backoff is answered by the new incarnation')
  t.equal(await worker.ask({ type: 'echo', value: 'back' }), 'back')
})

t.test('a child whose init fails makes supervise() reject and leaves nothing running', async t => {
  const system = await startSystem(t)
  await t.rejects(
    system.supervise({ strategy: 'one_for_one', children: [{ id: 'ok', behavior: probe }, { id: 'bad', behavior: probe, args: { failInit: true } }] }),
    { code: 'crashed', message: /could not start child 'bad'.*init refused/ },
  )
  const snapshot = await system.inspect()
  t.same(snapshot.root.children, [], 'the half-started supervisor is gone')
  await t.rejects(system.spawn(probe, { args: { failInit: true } }), { code: 'crashed', message: /init refused/ })
})

t.test('shutdown stops everything in reverse start order', async t => {
  const entries: string[] = []
  const system = await startSystem(t, { workers: 2 })
  const log = await system.spawn(journal, { placement: 'main', args: { entries } })
  const notify = (label: string) => ({ notify: log, label })
  await system.supervise({
    strategy: 'one_for_one',
    children: [
      { id: 'a', behavior: probe, args: notify('a'), placement: 'pool' },
      { id: 'nested', supervisor: { strategy: 'one_for_all', children: [{ id: 'b', behavior: probe, args: notify('b'), placement: 'dedicated' }] } },
      { id: 'c', behavior: probe, args: notify('c'), placement: 'main' },
    ],
  })
  await system.spawn(probe, { args: notify('d'), placement: 'pool' })
  await system.shutdown()
  t.same(entries, ['init:a', 'init:b', 'init:c', 'init:d', 'stop:d', 'stop:c', 'stop:b', 'stop:a'])
})

t.test('at shutdown the root stops a run of spawned actors together, and each supervisor alone, in reverse start order', async t => {
  const entries: string[] = []
  const system = await startSystem(t, { workers: 2 })
  // Under a supervisor of its own, so that it stops alone, last.
  const logs = await system.supervise({ strategy: 'one_for_one', children: [{ id: 'log', behavior: journal, placement: 'main', args: { entries } }] })
  const notify = (label: string) => ({ notify: logs.child('log'), label })
  await system.spawn(probe, { args: notify('a'), placement: 'pool' })
  await system.supervise({ strategy: 'one_for_one', children: [{ id: 's', behavior: probe, args: notify('s'), placement: 'pool' }] })
  for (const label of ['b1', 'b2', 'b3']) await system.spawn(probe, { args: notify(label), placement: 'pool' })
  await system.shutdown()
  const stops = entries.filter(entry => entry.startsWith('stop:'))
  t.same(stops.slice(0, 3).sort(), ['stop:b1', 'stop:b2', 'stop:b3'], 'the actors spawned after the supervisor stop first (together)')
  t.same(stops.slice(3), ['stop:s', 'stop:a'], 'then the supervisor, then the actor spawned before it')
})

t.test('supervisor specs are validated with the field named', async t => {
  const system = await startSystem(t, { workers: 0 })
  await t.rejects(system.supervise({ strategy: 'one_for_none' as never, children: [] }), { message: /strategy must be/ })
  await t.rejects(system.supervise({ strategy: 'one_for_one', intensity: -1, children: [] }), { message: /intensity/ })
  await t.rejects(
    system.supervise({ strategy: 'one_for_one', children: [{ id: 'x', behavior: probe }, { id: 'x', behavior: probe }] }),
    { message: /duplicate child id 'x'/ },
  )
  await t.rejects(system.supervise({ strategy: 'one_for_one', backoff: { minMs: 10, maxMs: 5 }, children: [] }), { message: /backoff/ })
})
