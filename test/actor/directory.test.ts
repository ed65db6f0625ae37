import t from 'tap'
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
  t.throws(() => slots.allocate(), RangeError, 'full')
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
