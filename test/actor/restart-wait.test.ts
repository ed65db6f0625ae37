// Requests to an actor that is restarting wait, on the sender's thread, for its next incarnation.
import { once } from 'node:events'
import t from 'tap'
import { MAX_HELD_PER_ACTOR, type ActorRef, type ActorSystem, type Supervisor } from '../../src/index.js'
import { journal } from '../fixtures/behaviors.js'
import { startSystem } from '../fixtures/system.js'
import { ledger, type LedgerArgs, type LedgerMessage } from '../fixtures/restart-behaviors.js'

type Ledger = ActorRef<LedgerMessage>

/** The value, or the error, an ask settles with. */
const settle = (pending: Promise<unknown>): Promise<unknown> => pending.catch((error: unknown) => error)

/** A supervisor whose children restart `minMs` after a crash. */
function superviseLedgers(system: ActorSystem, minMs: number, children: Array<{ id: string; placement: 'main' | 'pool'; args?: LedgerArgs; capacity?: number }>): Promise<Supervisor> {
  return system.supervise({
    strategy: 'one_for_one',
    intensity: 10,
    backoff: { minMs, maxMs: minMs, randomFactor: 0 },
    children: children.map(({ id, placement, args, capacity }) => ({
      id,
      behavior: ledger,
      placement,
      args,
      ...(capacity === undefined ? {} : { mailbox: { capacity } }),
    })),
  })
}

const crash = (ref: Ledger): Promise<unknown> => settle(ref.ask({ type: 'crash-after', ms: 0 }))

t.test('asks sent while an actor restarts are answered by its new incarnation, from main and from a pool actor', async t => {
  const system = await startSystem(t, { workers: 2 })
  const sup = await superviseLedgers(system, 100, [
    { id: 'on-main', placement: 'main' },
    { id: 'on-pool', placement: 'pool' },
  ])
  const forwarder: Ledger = await system.spawn(ledger, { placement: 'pool' })
  for (const id of ['on-main', 'on-pool']) {
    const target = sup.child<LedgerMessage>(id)
    const before = await target.ask<number>({ type: 'incarnation' })
    let restarted = false
    const back = once(sup, 'restarted').then(() => (restarted = true))
    t.match(await crash(target), { code: 'crashed' }, `${id}: the message that crashed it gets crashed`)
    const fromMain = target.ask<number>({ type: 'incarnation' })
    const fromPool = forwarder.ask<number>({ type: 'forward', to: target, msg: { type: 'incarnation' } })
    const added = target.ask<number>({ type: 'add', n: 2 })
    t.notOk(restarted, `${id}: the asks went out while it was restarting`)
    const answers = await Promise.all([fromMain, fromPool, added])
    await back
    t.not(answers[0], before, `${id}: the ask from main reached the new incarnation`)
    t.equal(answers[1], answers[0], `${id}: so did the one from the pool actor`)
    t.equal(answers[2], 2, `${id}: against its fresh state`)
  }
  const snapshot = await system.inspect()
  t.equal(snapshot.deadLetters, 0, 'nothing was dead-lettered')
  t.same(
    snapshot.threads.map(thread => thread.heldForRestart),
    snapshot.threads.map(() => 0),
    'nothing is left held on any thread',
  )
})

t.test('an ask whose deadline comes before the restart fails with restarting, not timeout', async t => {
  const system = await startSystem(t)
  const sup = await superviseLedgers(system, 400, [
    { id: 'on-main', placement: 'main' },
    { id: 'on-pool', placement: 'pool' },
  ])
  const forwarder: Ledger = await system.spawn(ledger, { placement: 'pool' })
  for (const id of ['on-main', 'on-pool']) {
    const target = sup.child<LedgerMessage>(id)
    await crash(target)
    await t.rejects(target.ask({ type: 'total' }, { timeoutMs: 30 }), { code: 'restarting' }, `${id}: from main`)
    await t.rejects(forwarder.ask({ type: 'forward', to: target, msg: { type: 'total' }, timeoutMs: 30 }), { code: 'restarting' }, `${id}: from a pool actor`)
    t.equal(await target.ask({ type: 'total' }), 0, `${id}: an ask with time to wait is answered once it is back`)
  }
})

t.test('a held ask can be cancelled, and is then never sent', async t => {
  const system = await startSystem(t)
  const sup = await superviseLedgers(system, 200, [{ id: 'w', placement: 'pool' }])
  const target = sup.child<LedgerMessage>('w')
  await crash(target)
  const controller = new AbortController()
  const cancelled = target.ask({ type: 'add', n: 100 }, { signal: controller.signal })
  controller.abort()
  await t.rejects(cancelled, { code: 'cancelled' })
  t.equal(await target.ask({ type: 'add', n: 1 }), 1, 'the cancelled add never reached the new incarnation')
})

t.test('messages queued behind the one that crashed are handled by the new incarnation, in order', async t => {
  const system = await startSystem(t)
  const sup = await superviseLedgers(system, 50, [
    { id: 'on-main', placement: 'main' },
    { id: 'on-pool', placement: 'pool' },
  ])
  for (const id of ['on-main', 'on-pool']) {
    const target = sup.child<LedgerMessage>(id)
    const before = await target.ask<number>({ type: 'incarnation' })
    // One at a time: all but the first wait in the mailbox when it throws.
    const crashing = settle(target.ask({ type: 'crash-after', ms: 50 }))
    const first = target.ask({ type: 'add', n: 1 })
    const second = target.ask({ type: 'add', n: 2 })
    target.tell({ type: 'add', n: 10 })
    const total = target.ask({ type: 'total' })
    const incarnation = target.ask<number>({ type: 'incarnation' })
    t.match(await crashing, { code: 'crashed' }, `${id}: the message being handled when it crashed is not retried`)
    t.same(await Promise.all([first, second, total]), [1, 3, 13], `${id}: the queued messages ran, in order, on a fresh total`)
    t.not(await incarnation, before, `${id}: on the new incarnation`)
  }
  t.equal((await system.inspect()).deadLetters, 0, 'the queued tell was not dead-lettered')
})

t.test('tells sent while an actor restarts are held, up to a bound past which they are dead letters', async t => {
  const system = await startSystem(t)
  const sup = await superviseLedgers(system, 300, [{ id: 'w', placement: 'pool', capacity: 4 * MAX_HELD_PER_ACTOR }])
  const target = sup.child<LedgerMessage>('w')
  const back = once(sup, 'restarted')
  await crash(target)
  const over = 10
  for (let i = 0; i < MAX_HELD_PER_ACTOR + over; i++) target.tell({ type: 'add', n: 1 })
  await t.rejects(target.ask({ type: 'total' }), { code: 'restarting' }, 'an ask past the bound fails at once')
  const during = await system.inspect()
  const main = during.threads.find(thread => thread.thread === 0)
  t.equal(main?.heldForRestart, MAX_HELD_PER_ACTOR, 'the main thread holds up to the bound')
  t.same(main?.deadLetters.byCode, { restarting: over }, 'the tells past it are dead letters, with restarting')
  await back
  t.equal(await target.ask({ type: 'total' }), MAX_HELD_PER_ACTOR, 'every held tell reached the new incarnation')
})

t.test('a stream opened while its actor restarts begins once the new incarnation runs', async t => {
  const system = await startSystem(t)
  const sup = await superviseLedgers(system, 100, [{ id: 'w', placement: 'pool' }])
  const target = sup.child<LedgerMessage>('w')
  await crash(target)
  const chunks: number[] = []
  for await (const n of target.stream<number>({ type: 'count', to: 5 })) chunks.push(n)
  t.same(chunks, [1, 2, 3, 4, 5])
})

t.test('an actor given up fails the requests waiting for it at once, with no_such_actor', async t => {
  const system = await startSystem(t)
  for (const placement of ['main', 'pool'] as const) {
    const entries: string[] = []
    const log = await system.spawn(journal, { placement: 'main', args: { entries } })
    // Intensity 0: its first crash is one too many. The slow stop hook holds up the report of
    // the crash, so the asks below are sent while the actor is marked restarting.
    const sup = await system.supervise({
      strategy: 'one_for_one',
      intensity: 0,
      children: [{ id: 'w', behavior: ledger, placement, args: { notify: log, stopDelayMs: 200 } }],
    })
    const target = sup.child<LedgerMessage>('w')
    const failed = once(sup, 'failed')
    const crashing = settle(target.ask({ type: 'crash-after', ms: 20 }))
    const queued = settle(target.ask({ type: 'total' }, { timeoutMs: 60_000 }))
    t.match(await crashing, { code: 'crashed' })
    const sentAfter = settle(target.ask({ type: 'total' }, { timeoutMs: 60_000 }))
    target.tell({ type: 'add', n: 1 })
    t.notOk(entries.includes('stop::crash'), `${placement}: sent before the crash was reported`)
    await failed
    // Had they waited for their deadline, they would fail with restarting, a minute from now.
    t.match(await queued, { code: 'no_such_actor' }, `${placement}: the ask queued behind the crash`)
    t.match(await sentAfter, { code: 'no_such_actor' }, `${placement}: the ask sent while it was restarting`)
  }
  const snapshot = await system.inspect()
  t.equal(snapshot.threads.find(thread => thread.thread === 0)?.deadLetters.byCode['no_such_actor'], 2, 'the held tells are dead letters')
})
