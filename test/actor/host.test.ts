// The per-thread actor host, through a running system: refs bound to the thread that decodes
// them, ctx.system from a worker, batches too large for a ring, and when replies go out.
import t from 'tap'
import { startSystem } from '../fixtures/system.js'
import { busy, counter, probe, spawner, type ProbeMessage } from '../fixtures/behaviors.js'

t.test('refs passed inside messages work on the receiving thread', async t => {
  const system = await startSystem(t, { workers: 2 })
  const onMain = await system.spawn(probe, { placement: 'main' })
  const onPool = await system.spawn(probe, { placement: 'pool' })
  const onOther = await system.spawn(probe, { placement: 'dedicated' })
  // main -> pool -> dedicated: the ref travels in the message and is used over there.
  t.equal(await onPool.ask({ type: 'forward', to: onOther, msg: { type: 'echo', value: 'via pool' } }), 'via pool')
  // pool -> main, and a ref to the worker's own neighbour
  t.equal(await onOther.ask({ type: 'forward', to: onMain, msg: { type: 'echo', value: 'back to main' } }), 'back to main')
  t.equal(
    await onMain.ask({ type: 'forward', to: onPool, msg: { type: 'forward', to: onOther, msg: { type: 'echo', value: 3 } } }),
    3,
    'a ref passed through two hops',
  )
})

t.test('ctx.system spawns and looks up actors from a worker', async t => {
  const system = await startSystem(t)
  const worker = await system.spawn(spawner, { placement: 'pool' })
  t.equal(await worker.ask({ type: 'spawn-counter', name: 'grandchild' }), 'spawned', 'the worker got a working ref back')
  const viaLookup = await system.lookup('grandchild')
  t.ok(viaLookup, 'the actor it spawned is registered on the main thread')
  t.equal(await viaLookup!.ask({ type: 'add', n: 2 }), 2)
  t.equal(await worker.ask({ type: 'lookup-and-ask', name: 'grandchild' }), 2, 'lookup from the worker finds it')
  t.equal(await worker.ask({ type: 'lookup-and-ask', name: 'missing' }), 'none')
})

t.test('a message larger than the ring crosses threads intact and in order', async t => {
  const system = await startSystem(t)
  const ref = await system.spawn(counter, { placement: 'pool' })
  const echo = await system.spawn(probe, { placement: 'pool' })
  const big = 'z'.repeat(3 * 1024 * 1024) // well past a ring record: it takes the port
  t.equal(await echo.ask({ type: 'echo', value: big } satisfies ProbeMessage), big)
  ref.tell({ type: 'add', n: 1 })
  const bigAdd = ref.ask({ type: 'add', n: 10, pad: big } as never)
  ref.tell({ type: 'add', n: 100 })
  t.equal(await bigAdd, 11, 'the large message came after the small one before it')
  t.equal(await ref.ask({ type: 'get' }), 111, 'and before the small one after it')
})

t.test('a slow answer goes out at once, not held back until the asks queued behind it are done', async t => {
  const system = await startSystem(t)
  const ref = await system.spawn(busy, { placement: 'pool' })
  const start = performance.now()
  // Sent in one turn, the three asks cross in one batch and are handled back to back.
  const arrivals = await Promise.all([1, 2, 3].map(() => ref.ask({ type: 'busy', ms: 60 }).then(() => performance.now() - start)))
  t.ok(arrivals[0]! < arrivals[2]! - 60, `the first answer arrived ${Math.round(arrivals[2]! - arrivals[0]!)} ms before the last`)
})

t.test('a prewake wakes a sleeping worker ahead of the message, and is harmless when none follows', async t => {
  const system = await startSystem(t)
  const onPool = await system.spawn(counter, { placement: 'pool' })
  const onMain = await system.spawn(counter, { placement: 'main' })
  await new Promise(resolve => setTimeout(resolve, 30)) // the worker has parked
  onPool.prewake()
  t.equal(await onPool.ask({ type: 'add', n: 1 }), 1, 'the message that follows is handled')
  onPool.prewake()
  await new Promise(resolve => setTimeout(resolve, 30)) // no message came: it waited, then parked again
  t.equal(await onPool.ask({ type: 'add', n: 1 }), 2, 'and one sent long after is handled too')
  for (let i = 0; i < 5; i++) onPool.prewake()
  t.equal(await onPool.ask({ type: 'add', n: 1 }), 3, 'repeated prewakes change nothing')
  onMain.prewake()
  t.equal(await onMain.ask({ type: 'add', n: 1 }), 1, 'an actor on this thread: nothing to wake')
  await system.stop(onPool)
  t.doesNotThrow(() => onPool.prewake(), 'a stopped actor: nothing to wake, and no error')
})
