import { Worker } from 'node:worker_threads'
import t from 'tap'
import { ActorError } from '../../src/index.js'
import { ActorDirectory, LOCATION_FREE, LOCATION_RESTARTING, LOCATION_STOPPED, SlotAllocator } from '../../src/actor/directory.js'

t.test('a claimed slot is restarting until its host publishes a location', async t => {
  const directory = ActorDirectory.create(8)
  const slots = new SlotAllocator(directory)
  const { slot, generation } = slots.allocate()
  t.equal(slot, 1, 'slot 0 is reserved for the kernel')
  t.equal(directory.locate(slot, generation), LOCATION_RESTARTING)
  directory.publish(slot, generation, 3)
  t.equal(directory.locate(slot, generation), 3)
  t.equal(directory.locate(slot, generation + 1), LOCATION_FREE, 'another generation is not this actor')
  t.equal(directory.locate(0, 0), LOCATION_FREE)
  t.equal(directory.locate(99, 1), LOCATION_FREE, 'out of range')
})

t.test('a released slot reads stopped for its old refs and is reused last, with a new generation', async t => {
  const directory = ActorDirectory.create(4)
  const slots = new SlotAllocator(directory)
  const a = slots.allocate()
  const b = slots.allocate()
  const c = slots.allocate()
  slots.release(a.slot)
  t.equal(directory.locate(a.slot, a.generation), LOCATION_STOPPED)
  const d = slots.allocate()
  t.equal(d.slot, a.slot, 'fresh slots are used up first, then the oldest freed one')
  t.not(d.generation, a.generation)
  t.equal(directory.locate(a.slot, a.generation), LOCATION_FREE, 'the old ref no longer reaches the new actor')
  directory.publish(a.slot, a.generation, 5)
  t.equal(directory.locate(d.slot, d.generation), LOCATION_RESTARTING, 'a stale publish is ignored')
  t.throws(() => slots.allocate(), { code: 'capacity', data: { limit: 3, option: 'maxActors' } }, 'full: a coded error naming the limit and the option that raises it')
  t.ok(b && c)
})

t.test('every thread sees the same directory through the shared buffer', async t => {
  const directory = ActorDirectory.create(4)
  const view = new ActorDirectory(directory.buffer)
  const { slot, generation } = new SlotAllocator(directory).allocate()
  directory.publish(slot, generation, 2)
  t.equal(view.locate(slot, generation), 2)
})

t.test('a publish wakes whoever waits for an actor to move; an actor already elsewhere needs no wait', async t => {
  const directory = ActorDirectory.create(4)
  const view = new ActorDirectory(directory.buffer)
  const { slot, generation } = new SlotAllocator(directory).allocate()
  t.equal(view.whenMoved(slot, 2, 60_000), undefined, 'the word does not read 2: nothing to wait for')
  const moved = view.whenMoved(slot, LOCATION_RESTARTING, 60_000)
  t.ok(moved, 'restarting: a wait')
  directory.publish(slot, generation, 2)
  t.equal(await moved, 'ok', 'woken by the publish, not by its timeout')
  t.equal(view.locate(slot, generation), 2)
})

t.test('the directory doubles when no slot is left, up to its most, then refuses with capacity', async t => {
  const directory = ActorDirectory.create(4, 16)
  const slots = new SlotAllocator(directory)
  const taken = Array.from({ length: 15 }, () => slots.allocate())
  t.same(taken.map(a => a.slot), Array.from({ length: 15 }, (_, i) => i + 1), 'fresh slots in order across each growth')
  t.equal(directory.capacity, 16)
  for (const { slot, generation } of taken) t.equal(directory.locate(slot, generation), LOCATION_RESTARTING, `slot ${slot} claimed`)
  const error = t.throws(() => slots.allocate()) as ActorError
  t.equal(error.code, 'capacity')
  t.match(error.message, /15 actors.*maxActors/)
  slots.release(taken[6]!.slot)
  t.equal(slots.allocate().slot, 7, 'a freed slot is used before anything refuses')
})

t.test('a freed slot is reused before the directory grows, and the oldest freed first', async t => {
  const directory = ActorDirectory.create(4, 64)
  const slots = new SlotAllocator(directory)
  const [a, b, c] = [slots.allocate(), slots.allocate(), slots.allocate()]
  slots.release(b.slot)
  slots.release(a.slot)
  t.equal(slots.allocate().slot, b.slot)
  t.equal(slots.allocate().slot, a.slot)
  t.equal(directory.capacity, 4, 'no growth while freed slots were left')
  t.equal(slots.allocate().slot, 4, 'then it grows')
  t.equal(directory.capacity, 8)
  t.ok(c)
})

t.test('a directory grown on the main thread is seen grown on a worker, through the same buffer', async t => {
  const directory = ActorDirectory.create(4, 1024)
  const slots = new SlotAllocator(directory)
  const worker = new Worker(
    `const { parentPort } = require('node:worker_threads')
     parentPort.once('message', ({ buffer }) => {
       const words = new Int32Array(buffer)
       parentPort.once('message', ({ slot }) => parentPort.postMessage({ slots: words.length / 2, location: Atomics.load(words, slot * 2 + 1) }))
       parentPort.postMessage('ready')
     })`,
    { eval: true },
  )
  t.teardown(() => worker.terminate())
  const answer = (message: unknown): Promise<unknown> =>
    new Promise(resolve => {
      worker.once('message', resolve)
      worker.postMessage(message)
    })
  await answer({ buffer: directory.buffer })
  let last = slots.allocate()
  while (directory.capacity < 512) last = slots.allocate()
  directory.publish(last.slot, last.generation, 7)
  t.same(await answer({ slot: last.slot }), { slots: 512, location: 7 })
})
