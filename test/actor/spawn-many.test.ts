import t from 'tap'
import type { ActorRef } from '../../src/index.js'
import { counter, probe, type CounterMessage, type ProbeMessage } from '../fixtures/behaviors.js'
import { startSystem } from '../fixtures/system.js'

const actorsUnderRoot = async (system: Awaited<ReturnType<typeof startSystem>>): Promise<number> => (await system.inspect()).root.children.filter(node => node.kind === 'actor').length

t.test('spawnMany on the pool starts one actor per args, in order, on one worker', async t => {
  const system = await startSystem(t, { workers: 2 })
  const before = await actorsUnderRoot(system)
  const refs = await system.spawnMany(counter, Array.from({ length: 500 }, (_, i) => ({ start: i })), { placement: 'pool' })
  t.equal(refs.length, 500)
  t.same(await Promise.all(refs.map(ref => ref.ask<number>({ type: 'get' }))), Array.from({ length: 500 }, (_, i) => i), 'each actor got its own args')
  const threads = new Set(await Promise.all(refs.map(ref => ref.ask<number>({ type: 'where' }))))
  t.equal(threads.size, 1, 'one worker hosts them all')
  t.equal(await actorsUnderRoot(system), before + 500, 'each is a child of the root, as a spawned actor is')
  await Promise.all(refs.map(ref => system.stop(ref)))
  t.equal(await actorsUnderRoot(system), before)
})

t.test('spawnMany places beside `near`, and on the main thread', async t => {
  const system = await startSystem(t, { workers: 2 })
  const anchor = await system.spawn(counter, { placement: 'pool' })
  const where = await anchor.ask<number>({ type: 'where' })
  const beside = await system.spawnMany(counter, [{}, {}, {}], { placement: 'pool', near: anchor })
  t.same(await Promise.all(beside.map(ref => ref.ask<number>({ type: 'where' }))), [where, where, where])
  const local = await system.spawnMany(counter, [{ start: 7 }, { start: 8 }], { placement: 'main' })
  t.same(await Promise.all(local.map(ref => ref.ask<number>({ type: 'add', n: 1 }))), [8, 9])
  t.same(await system.spawnMany(counter, []), [], 'no args, no actors')
})

for (const placement of ['pool', 'main'] as const) {
  t.test(`spawnMany (${placement}) keeps none when one init fails, and rejects with that failure`, async t => {
    const system = await startSystem(t)
    const before = await actorsUnderRoot(system)
    await t.rejects(system.spawnMany(probe, [{}, {}, { failInit: true }, {}], { placement, restart: 'temporary' }), { message: /init refused/ })
    t.equal(await actorsUnderRoot(system), before, 'no actor of the batch is left')
    const after = await system.spawnMany(probe, [{}, {}], { placement })
    t.same(await Promise.all(after.map(ref => ref.ask({ type: 'echo', value: 'ok' }))), ['ok', 'ok'], 'the system spawns on as before')
  })
}

t.test('an actor from spawnMany is supervised as a spawned one: a crash restarts it at the same ref', async t => {
  const system = await startSystem(t)
  const [first, second] = (await system.spawnMany(probe, [{}, {}], { placement: 'pool' })) as [ActorRef<ProbeMessage>, ActorRef<ProbeMessage>]
  const incarnation = await first.ask<number>({ type: 'incarnation' })
  await t.rejects(first.ask({ type: 'throw', message: 'boom' }), { code: 'crashed' })
  t.equal(await first.ask({ type: 'echo', value: 1 }, { timeoutMs: 10_000 }), 1, 'the same ref answers again')
  t.not(await first.ask<number>({ type: 'incarnation' }), incarnation, 'a new incarnation')
  t.equal(await second.ask({ type: 'echo', value: 2 }), 2, 'its sibling of the batch ran on untouched')
})

t.test('spawnMany refuses a name and args in its options, and a non-array', async t => {
  const system = await startSystem(t, { workers: 0 })
  await t.rejects(system.spawnMany(counter, [{}], { name: 'one' } as never), TypeError)
  await t.rejects(system.spawnMany(counter, [{}], { args: {} } as never), TypeError)
  await t.rejects(system.spawnMany(counter, {} as never), TypeError)
  const refs: ActorRef<CounterMessage>[] = await system.spawnMany(counter, [{}])
  t.equal(await refs[0]!.ask<number>({ type: 'get' }), 0)
})
