import t, { type Test } from 'tap'
import { ActorError, type ActorRef } from '../../src/index.js'
import { counter, probe, type ProbeMessage } from '../fixtures/behaviors.js'
import { eventually, whenRunning } from '../fixtures/eventually.js'
import { startSystem } from '../fixtures/system.js'

/** Asks that would hang for a minute unless something fails them first. */
function holdMany(ref: ActorRef<ProbeMessage>, n: number): Promise<unknown>[] {
  return Array.from({ length: n }, () => ref.ask({ type: 'hold' }, { timeoutMs: 60_000 }).catch((error: unknown) => error))
}

async function expectCrashed(t: Test, pending: Promise<unknown>[], what: string): Promise<void> {
  const started = Date.now()
  const outcomes = await Promise.all(pending)
  for (const outcome of outcomes) t.match(outcome, { code: 'crashed' }, what)
  t.ok(Date.now() - started < 30_000, 'well before the asks would have timed out')
}

t.test('a behaviour that throws fails every ask in flight at once, then restarts', async t => {
  const system = await startSystem(t)
  const ref = await system.spawn(probe, { placement: 'pool' })
  const first = await ref.ask({ type: 'incarnation' } satisfies ProbeMessage)
  const held = holdMany(ref, 3)
  await ref.ask({ type: 'echo', value: 'all three are in flight' } satisfies ProbeMessage) // maxConcurrent 4: this one still runs
  const thrown = ref.ask({ type: 'throw', message: 'bug' } satisfies ProbeMessage).catch((error: unknown) => error)
  await expectCrashed(t, [...held, thrown], 'in-flight ask fails with crashed')
  t.not(await whenRunning(() => ref.ask({ type: 'incarnation' } satisfies ProbeMessage)), first, 'restarted with fresh state')
})

t.test('a worker thread that exits fails its asks at once and its actors restart on a healthy worker', async t => {
  const system = await startSystem(t, { workers: 2 })
  const victim = await system.spawn(probe, { placement: 'pool', name: 'victim' })
  const victimThread = await victim.ask<number>({ type: 'incarnation' }).then(() => threadOf(system, 'victim'))
  // A neighbour on the same worker dies with it.
  const neighbours: ActorRef<{ type: 'add'; n: number } | { type: 'get' } | { type: 'where' }>[] = []
  for (let i = 0; i < 4; i++) {
    const ref = await system.spawn(counter, { placement: 'pool', name: `n${i}` })
    if ((await threadOf(system, `n${i}`)) === victimThread) neighbours.push(ref)
  }
  t.ok(neighbours.length > 0, 'some counter shares the victim worker')
  for (const ref of neighbours) await ref.ask({ type: 'add', n: 7 })

  const held = holdMany(victim, 3)
  await victim.ask({ type: 'echo', value: 'held are queued first' } satisfies ProbeMessage)
  victim.tell({ type: 'exit', code: 3 })
  await expectCrashed(t, held, 'ask in flight to the dead worker')

  for (const ref of neighbours) {
    t.equal(await whenRunning(() => ref.ask({ type: 'get' })), 0, 'the neighbour restarted with fresh state')
  }
  const after = await threadOf(system, 'victim')
  t.not(after, victimThread, 'the victim runs on another thread now')
  // The replacement starts beside the restarts, and on a loaded machine may answer inspect later.
  const poolThreads = async (): Promise<number> => (await system.inspect()).threads.filter(thread => thread.kind === 'pool').length
  await eventually(async () => (await poolThreads()) === 2, 'the replacement worker to take actors')
  t.equal(await poolThreads(), 2, 'piscina replaced the dead worker')
  t.match((await system.inspect()).root.children.find(node => node.id === 'victim'), { restarts: 1, status: 'running' })
})

t.test('a worker that runs out of memory is replaced and its actor restarts', async t => {
  const system = await startSystem(t)
  const hog = await system.spawn(probe, {
    placement: 'dedicated',
    // Room for the worker (and the test's TypeScript loader) to boot, not for the hoard.
    resourceLimits: { maxOldGenerationSizeMb: 128, maxYoungGenerationSizeMb: 8 },
  })
  const first = await hog.ask({ type: 'incarnation' } satisfies ProbeMessage)
  const held = holdMany(hog, 2)
  await hog.ask({ type: 'echo', value: 'queued' } satisfies ProbeMessage)
  hog.tell({ type: 'oom' })
  await expectCrashed(t, held, 'ask in flight when the heap ran out')
  t.not(await whenRunning(() => hog.ask({ type: 'incarnation' } satisfies ProbeMessage)), first, 'a new incarnation on a new worker')
})

t.test('messages to a restarting actor wait for it, or fail with restarting at their deadline, never silence', async t => {
  const system = await startSystem(t)
  const sup = await system.supervise({
    strategy: 'one_for_one',
    backoff: { minMs: 500, maxMs: 500 },
    children: [{ id: 'slow', behavior: probe, placement: 'pool' }],
  })
  const ref = sup.child<ProbeMessage>('slow')
  await ref.ask({ type: 'throw', message: 'x' }).catch(() => undefined)
  const error = await ref.ask({ type: 'echo', value: 1 }, { timeoutMs: 20 }).catch((e: unknown) => e)
  t.ok(error instanceof ActorError && error.code === 'restarting', 'an ask whose deadline comes first fails with restarting')
  ref.tell({ type: 'echo', value: 'held' })
  const snapshot = await system.inspect()
  const main = snapshot.threads.find(thread => thread.thread === 0)
  t.equal(main?.heldForRestart, 1, 'the tell is held on the sending thread')
  t.equal(main?.deadLetters.total, 0, 'and is no dead letter')
  t.equal(await ref.ask({ type: 'echo', value: 'back' }), 'back', 'an ask with time to wait is answered once it is back')
})

async function threadOf(system: Awaited<ReturnType<typeof startSystem>>, name: string): Promise<number | undefined> {
  const snapshot = await system.inspect()
  const node = snapshot.root.children.find(n => n.kind === 'actor' && n.name === name)
  return node?.kind === 'actor' ? node.thread : undefined
}
