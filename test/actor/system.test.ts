import { threadId } from 'node:worker_threads'
import t from 'tap'
import { ActorError, ActorSystem } from '../../src/index.js'
import { startSystem, workerExecArgv } from '../fixtures/system.js'
import { counter, probe, recorder, type ProbeMessage } from '../fixtures/behaviors.js'
import { quietLogger } from '../fixtures/logger.js'
import { whenRunning } from '../fixtures/eventually.js'

t.test('spawn, tell and ask on every placement', async t => {
  const system = await startSystem(t, { workers: 2 })
  for (const placement of ['main', 'pool', 'dedicated'] as const) {
    const ref = await system.spawn(counter, { placement, args: { start: 10 } })
    ref.tell({ type: 'add', n: 5 })
    t.equal(await ref.ask({ type: 'add', n: 1 }), 16, `${placement}: tells are handled before a later ask`)
    const where = await ref.ask<number>({ type: 'where' })
    if (placement === 'main') t.equal(where, threadId, 'main placement runs on the calling thread')
    else t.not(where, threadId, `${placement} placement runs on a worker thread`)
  }
})

t.test('dedicated actors get a worker of their own', async t => {
  const system = await startSystem(t)
  const pooled = await system.spawn(counter, { placement: 'pool' })
  const a = await system.spawn(counter, { placement: 'dedicated' })
  const b = await system.spawn(counter, { placement: 'dedicated' })
  const threads = await Promise.all([pooled, a, b].map(ref => ref.ask<number>({ type: 'where' })))
  t.equal(new Set(threads).size, 3, 'pool worker and two dedicated workers are distinct threads')
})

t.test('near places a pool actor on the worker of another, also when it restarts; without a pool actor there, anywhere', async t => {
  const system = await startSystem(t, { workers: 3 })
  const threadOf = async (name: string): Promise<number | undefined> => {
    const node = (await system.inspect()).root.children.find(n => n.kind === 'actor' && n.name === name)
    return node?.kind === 'actor' ? node.thread : undefined
  }
  for (const i of [0, 1, 2]) {
    const anchor = await system.spawn(counter, { placement: 'pool', name: `anchor-${i}` })
    const beside = await system.spawn(probe, { placement: 'pool', name: `beside-${i}`, near: anchor })
    const anchorThread = await threadOf(`anchor-${i}`)
    t.equal(await threadOf(`beside-${i}`), anchorThread, `beside anchor ${i}`)
    await beside.ask({ type: 'throw', message: 'restart me' } satisfies ProbeMessage).catch(() => undefined)
    await whenRunning(() => beside.ask({ type: 'echo', value: 1 } satisfies ProbeMessage))
    t.equal(await threadOf(`beside-${i}`), anchorThread, `still beside anchor ${i} after a restart`)
  }
  const onMain = await system.spawn(counter, { placement: 'main' })
  const elsewhere = await system.spawn(counter, { placement: 'pool', near: onMain })
  t.not(await elsewhere.ask<number>({ type: 'where' }), threadId, 'an anchor on the main thread does not pull a pool actor there')
})

t.test('lookup finds named actors; names are unique', async t => {
  const system = await startSystem(t)
  const ref = await system.spawn(counter, { name: 'tally', placement: 'pool' })
  const found = await system.lookup('tally')
  t.ok(found?.equals(ref), 'lookup returns the same ref')
  t.equal(await system.lookup('nobody'), undefined)
  await t.rejects(system.spawn(counter, { name: 'tally' }), { code: 'name_taken' })
})

t.test('an error thrown by receive reaches the asker with its message', async t => {
  const system = await startSystem(t)
  for (const placement of ['main', 'pool'] as const) {
    const ref = await system.spawn(probe, { placement })
    await t.rejects(ref.ask<unknown>({ type: 'throw', message: 'kaboom' } satisfies ProbeMessage), { code: 'crashed', message: /kaboom/ })
    await t.rejects(whenRunning(() => ref.ask<unknown>({ type: 'reject', code: 'rate_limit', message: 'slow down' } satisfies ProbeMessage)), {
      code: 'rate_limit',
      message: 'slow down',
    })
  }
})

t.test('a typed rejection does not restart the actor; a crash does', async t => {
  const system = await startSystem(t)
  const ref = await system.spawn(probe, { placement: 'pool' })
  const first = await ref.ask({ type: 'incarnation' } satisfies ProbeMessage)
  await t.rejects(ref.ask({ type: 'reject', code: 'auth', message: 'no' } satisfies ProbeMessage), { code: 'auth' })
  t.equal(await ref.ask({ type: 'incarnation' } satisfies ProbeMessage), first, 'same incarnation after a typed rejection')
  await t.rejects(ref.ask({ type: 'throw', message: 'bug' } satisfies ProbeMessage), { code: 'crashed' })
  t.not(await whenRunning(() => ref.ask({ type: 'incarnation' } satisfies ProbeMessage)), first, 'a new incarnation after a crash')
})

t.test('messages outside the protocol are refused with bad_message', async t => {
  const system = await startSystem(t)
  for (const placement of ['main', 'pool'] as const) {
    const ref = await system.spawn(counter, { placement })
    await t.rejects(ref.ask({ type: 'multiply' } as never), { code: 'bad_message' }, placement)
    t.equal(await ref.ask({ type: 'get' }), 0, `${placement}: the actor carries on`)
  }
})

t.test('a message that cannot be encoded for another thread is refused with bad_message', async t => {
  const system = await startSystem(t)
  const ref = await system.spawn(probe, { placement: 'pool' })
  await t.rejects(ref.ask({ type: 'echo', value: Symbol('x') } satisfies ProbeMessage), { code: 'bad_message' })
  await t.rejects(ref.ask({ type: 'unencodable' } satisfies ProbeMessage), { code: 'bad_message' }, 'an unencodable reply fails the ask too')
  t.equal(await ref.ask({ type: 'echo', value: 'still fine' } satisfies ProbeMessage), 'still fine')
})

t.test('stop ends an actor for good; asks to it fail with no_such_actor', async t => {
  const system = await startSystem(t)
  const log = await system.spawn(recorder, { placement: 'main' })
  const ref = await system.spawn(probe, { placement: 'pool', name: 'victim', args: { notify: log, label: 'victim' } })
  await system.stop(ref)
  await t.rejects(ref.ask({ type: 'echo', value: 1 } satisfies ProbeMessage), { code: 'no_such_actor' })
  t.equal(await system.lookup('victim'), undefined, 'its name is free again')
  t.same(await log.ask({ type: 'entries' }), ['init:victim', 'stop:victim'], 'init and stop hooks ran once each')
  await system.stop(ref) // idempotent
})

t.test('inspect shows the tree with placement, thread, status and counters', async t => {
  const system = await startSystem(t)
  const ref = await system.spawn(counter, { name: 'c', placement: 'pool' })
  for (let i = 0; i < 3; i++) await ref.ask({ type: 'add', n: 1 })
  await system.supervise({ strategy: 'one_for_one', children: [{ id: 'inner', behavior: counter, placement: 'main' }] }, { id: 'sup' })
  const snapshot = await system.inspect()
  const actor = snapshot.root.children.find(node => node.id === 'c')
  t.match(actor, { kind: 'actor', name: 'c', placement: 'pool', status: 'running', restarts: 0, messagesHandled: 3, mailboxDepth: 0 })
  t.ok(actor?.kind === 'actor' && typeof actor.thread === 'number' && actor.thread > 0, 'hosted on a worker thread')
  t.match(snapshot.root.children.find(node => node.id === 'sup'), {
    kind: 'supervisor',
    strategy: 'one_for_one',
    children: [{ kind: 'actor', id: 'inner', placement: 'main', thread: 0, status: 'running' }],
  })
  t.same(snapshot.threads.map(thread => thread.kind), ['main', 'pool'])
})

t.test('bad options name the option', async t => {
  await t.rejects(ActorSystem.start({ workers: -1 }), { name: 'TypeError', message: /options\.workers/ })
  await t.rejects(ActorSystem.start({ bogus: true } as never), { message: /bogus/ })
  const system = await startSystem(t, { workers: 0 })
  await t.rejects(system.spawn(counter, { mailbox: { capacity: 0 } }), { message: /spawn options\.mailbox\.capacity/ })
  await t.rejects(system.spawn(counter, { placement: 'pool' }), { message: /workers > 0/ })
  await t.rejects(system.spawn({} as never), { message: /defineBehavior/ })
})

t.test('after shutdown, asks fail and spawn is refused', async t => {
  const system = await ActorSystem.start({ workers: 1, logger: quietLogger(), execArgv: workerExecArgv() })
  const ref = await system.spawn(counter, { placement: 'pool' })
  await system.shutdown()
  await system.shutdown() // idempotent
  await t.rejects(ref.ask({ type: 'get' }), ActorError)
  await t.rejects(system.spawn(counter), { code: 'stopped' })
})
