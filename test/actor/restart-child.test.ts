// Supervisor.restartChild: a deliberate restart of one child in place.
import { once } from 'node:events'
import t from 'tap'
import type { ActorRef } from '../../src/index.js'
import { journal, probe } from '../fixtures/behaviors.js'
import { startSystem } from '../fixtures/system.js'
import { ledger, type LedgerMessage } from '../fixtures/restart-behaviors.js'

type Ledger = ActorRef<LedgerMessage>

t.test('restartChild restarts an actor in place, with new args, behind the same ref', async t => {
  const system = await startSystem(t)
  for (const placement of ['main', 'pool'] as const) {
    const entries: string[] = []
    const log = await system.spawn(journal, { placement: 'main', args: { entries } })
    const sup = await system.supervise(
      { strategy: 'one_for_one', children: [{ id: 'a', behavior: ledger, placement, args: { label: 'v1', notify: log } }] },
      { id: `sup-${placement}` },
    )
    const ref = sup.child<LedgerMessage>('a')
    const before = await ref.ask<number>({ type: 'incarnation' })
    t.equal(await ref.ask({ type: 'label' }), 'v1', placement)
    await sup.restartChild('a', { args: { label: 'v2', notify: log } })
    t.ok(sup.child('a').equals(ref), `${placement}: the child keeps its ref`)
    t.equal(await ref.ask({ type: 'label' }), 'v2', `${placement}: the new args are in effect, through the same ref`)
    t.not(await ref.ask({ type: 'incarnation' }), before, `${placement}: a new incarnation`)
    t.same(entries, ['init:v1', 'stop:v1:restart', 'init:v2'], `${placement}: the stop hook ran with reason restart`)
    const snapshot = await system.inspect()
    const node = snapshot.root.children.find(n => n.id === `sup-${placement}`)
    t.match(node, { children: [{ id: 'a', status: 'running', restarts: 0 }] }, `${placement}: not counted as a crash restart`)
  }
})

t.test('asks in flight are drained, and those queued or sent during restartChild reach the new incarnation', async t => {
  const system = await startSystem(t)
  for (const placement of ['main', 'pool'] as const) {
    const sup = await system.supervise({ strategy: 'one_for_one', children: [{ id: 'a', behavior: ledger, placement }] })
    const ref: Ledger = sup.child('a')
    await ref.ask({ type: 'add', n: 100 })
    const inFlight = ref.ask({ type: 'slow', ms: 300 })
    const queued = ref.ask({ type: 'add', n: 1 })
    const restarting = sup.restartChild('a')
    const during = ref.ask({ type: 'add', n: 2 })
    ref.tell({ type: 'add', n: 10 })
    const total = ref.ask({ type: 'total' })
    t.equal(await inFlight, 'slow done', `${placement}: the message being handled finished within shutdownMs`)
    await restarting
    t.same(await Promise.all([queued, during, total]), [1, 3, 13], `${placement}: the rest ran in order on the new incarnation's fresh total`)
  }
  t.equal((await system.inspect()).deadLetters, 0, 'nothing was dead-lettered')
})

t.test('restartChild leaves the siblings running, under one_for_all too', async t => {
  const system = await startSystem(t)
  const sup = await system.supervise({
    strategy: 'one_for_all',
    children: ['a', 'b', 'c'].map(id => ({ id, behavior: ledger, placement: 'pool' as const })),
  })
  const [a, b, c] = ['a', 'b', 'c'].map(id => sup.child<LedgerMessage>(id)) as [Ledger, Ledger, Ledger]
  const before = await Promise.all([a, b, c].map(ref => ref.ask<number>({ type: 'incarnation' })))
  for (const ref of [a, b, c]) await ref.ask({ type: 'add', n: 5 })
  await sup.restartChild('b')
  const after = await Promise.all([a, b, c].map(ref => ref.ask<number>({ type: 'incarnation' })))
  t.same(
    after.map((id, i) => id !== before[i]),
    [false, true, false],
    'only b is a new incarnation',
  )
  t.same(await Promise.all([a, b, c].map(ref => ref.ask({ type: 'total' }))), [5, 0, 5], 'the siblings kept their state')
})

t.test('restartChild does not count against the restart intensity', async t => {
  const system = await startSystem(t)
  const sup = await system.supervise({ strategy: 'one_for_one', intensity: 0, children: [{ id: 'a', behavior: ledger, placement: 'pool' }] })
  const ref: Ledger = sup.child('a')
  for (let i = 0; i < 3; i++) await sup.restartChild('a', { shutdownMs: 100 })
  t.equal(sup.status, 'running', 'three deliberate restarts under intensity 0, and the supervisor carries on')
  t.equal(await ref.ask({ type: 'add', n: 1 }), 1)
})

t.test('restartChild rejects with a coded error: unknown child, bad changes, or a new incarnation that fails to start', async t => {
  const system = await startSystem(t)
  const sup = await system.supervise({
    strategy: 'one_for_one',
    intensity: 1,
    children: [{ id: 'p', behavior: probe, placement: 'pool' }],
  })
  await t.rejects(sup.restartChild('nobody'), { code: 'no_such_actor', message: /no child 'nobody'/ })
  await t.rejects(sup.restartChild('p', { shutdownMs: -1 }), { name: 'TypeError', message: /shutdownMs/ })
  const failed = once(sup, 'failed')
  await t.rejects(sup.restartChild('p', { args: { failInit: true } }), { code: 'crashed', message: /restart of child 'p'.*init refused/ })
  // The failure counts as a crash: the supervisor retries with the new args, and gives up past its intensity.
  await failed
  t.equal(sup.status, 'failed')
})

t.test('restartChild of a nested supervisor restarts its subtree: stopped in reverse order, started in order', async t => {
  const system = await startSystem(t)
  const entries: string[] = []
  const log = await system.spawn(journal, { placement: 'main', args: { entries } })
  const outer = await system.supervise({
    strategy: 'one_for_all',
    children: [
      { id: 'x', behavior: ledger, placement: 'pool', args: { label: 'x', notify: log } },
      {
        id: 'inner',
        supervisor: {
          strategy: 'one_for_one',
          children: ['a', 'b'].map(label => ({ id: label, behavior: ledger, placement: 'pool' as const, args: { label, notify: log } })),
        },
      },
    ],
  })
  const x = outer.child<LedgerMessage>('x')
  const a = outer.supervisor('inner').child<LedgerMessage>('a')
  await x.ask({ type: 'add', n: 7 })
  await a.ask({ type: 'add', n: 7 })
  entries.length = 0
  await t.rejects(outer.restartChild('inner', { args: {} }), { name: 'TypeError', message: /actor children only/ })
  const inFlight = a.ask({ type: 'slow', ms: 300 })
  const queued = a.ask({ type: 'total' })
  await outer.restartChild('inner')
  t.equal(await inFlight, 'slow done', 'the message being handled finished first')
  t.same(entries, ['stop:b:restart', 'stop:a:restart', 'init:a', 'init:b'])
  t.equal(await queued, 0, 'an ask queued during the restart reached the new incarnation')
  t.equal(await x.ask({ type: 'total' }), 7, 'the sibling kept its state')
})

t.test('suspendChild and resumeChild split a restart across supervisors: messages sent between them wait for the resume', async t => {
  const system = await startSystem(t)
  const entries: string[] = []
  const log = await system.spawn(journal, { placement: 'main', args: { entries } })
  const stores = await system.supervise({ strategy: 'one_for_one', children: [{ id: 'store', behavior: ledger, placement: 'pool', args: { label: 's1', notify: log } }] }, { id: 'stores' })
  const users = await system.supervise({ strategy: 'one_for_one', children: [{ id: 'user', behavior: ledger, placement: 'main', args: { label: 'u1', notify: log } }] }, { id: 'users' })
  const store: Ledger = stores.child('store')
  await users.suspendChild('user')
  await stores.suspendChild('store')
  const waiting = store.ask({ type: 'label' })
  await stores.resumeChild('store', { args: { label: 's2', notify: log } })
  await users.resumeChild('user', { args: { label: 'u2', notify: log } })
  t.equal(await waiting, 's2', 'an ask sent while suspended is answered by the resumed incarnation')
  t.same(entries, ['init:s1', 'init:u1', 'stop:u1:restart', 'stop:s1:restart', 'init:s2', 'init:u2'], 'users stop before the store and start after it')
  await t.rejects(users.resumeChild('user'), { code: 'stopped' }, 'a child that is running cannot be resumed')
  await t.rejects(stores.suspendChild('nope'), { code: 'no_such_actor' })
})

t.test('updateChild changes a running child\'s drain deadline without restarting it', async t => {
  const system = await startSystem(t)
  const sup = await system.supervise({ strategy: 'one_for_one', children: [{ id: 'a', behavior: ledger, placement: 'pool', shutdownMs: 50 }] })
  const ref: Ledger = sup.child('a')
  const before = await ref.ask<number>({ type: 'incarnation' })
  sup.updateChild('a', { shutdownMs: 2000 })
  t.equal(await ref.ask({ type: 'incarnation' }), before, 'not restarted')
  const slow = ref.ask({ type: 'slow', ms: 300 })
  await sup.restartChild('a')
  t.equal(await slow, 'slow done', 'the restart drained with the new, longer deadline')
  t.throws(() => sup.updateChild('a', { shutdownMs: -1 }), TypeError)
})
