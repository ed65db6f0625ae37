import t from 'tap'
import { SharedRing, VIA_PORT } from '../../src/actor/ring.js'

const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill)

t.test('records come out in order, across the wrap-around, as copies', async t => {
  const ring = SharedRing.create(256)
  const out: number[] = []
  for (let round = 0; round < 40; round++) {
    t.ok(ring.tryWrite(bytes(30 + (round % 7), round)), `write ${round}`)
    const record = ring.read()
    t.ok(record instanceof Uint8Array)
    const copy = record as Uint8Array
    t.equal(copy.buffer instanceof SharedArrayBuffer, false, 'read copies out of shared memory')
    out.push(copy[0]!)
    t.equal(copy.byteLength, 30 + (round % 7))
  }
  t.same(out, Array.from({ length: 40 }, (_, i) => i))
  t.equal(ring.read(), undefined)
  t.ok(ring.isEmpty())
})

t.test('a full ring refuses a record and takes it once the reader catches up', async t => {
  const ring = SharedRing.create(64)
  t.ok(ring.tryWrite(bytes(28, 1)))
  t.ok(ring.tryWrite(bytes(28, 2)))
  t.notOk(ring.tryWrite(bytes(28, 3)), 'no room')
  t.same((ring.read() as Uint8Array)[0], 1)
  t.ok(ring.tryWrite(bytes(28, 3)), 'room again after a read')
  t.same([(ring.read() as Uint8Array)[0], (ring.read() as Uint8Array)[0]], [2, 3])
})

t.test('markers travel in order with records', async t => {
  const ring = SharedRing.create(128)
  ring.tryWrite(bytes(4, 7))
  ring.tryWriteMarker(VIA_PORT)
  ring.tryWrite(bytes(4, 8))
  t.same([(ring.read() as Uint8Array)[0], ring.read(), (ring.read() as Uint8Array)[0]], [7, VIA_PORT, 8])
})

t.test('park resolves when a writer writes, and not before', async t => {
  const ring = SharedRing.create(128)
  const parked = ring.park()
  t.ok(parked, 'an empty ring parks')
  let woken = false
  void parked!.then(() => (woken = true))
  await Promise.resolve()
  t.equal(woken, false)
  ring.tryWrite(bytes(4, 1))
  await parked
  ring.unpark()
  t.ok(woken)
  t.equal(ring.park(), undefined, 'a ring holding data does not park')
  ring.unpark()
})

t.test('a prewake wakes a parked reader, which learns once that no record woke it', async t => {
  const ring = SharedRing.create(128)
  t.equal(ring.prewake(), false, 'a reader that is not parked is left alone')
  const parked = ring.park()
  t.ok(parked)
  t.equal(ring.prewake(), true)
  await parked
  ring.unpark()
  t.equal(ring.takePrewake(), true)
  t.equal(ring.takePrewake(), false, 'the flag clears when read')
  t.ok(ring.isEmpty(), 'a prewake writes nothing')
  ring.tryWrite(bytes(4, 1))
  t.equal(ring.takePrewake(), false, 'a record is not a prewake')
})

t.test('spinUntilNotEmpty returns at once when a record waits, and gives up after its time', async t => {
  const ring = SharedRing.create(128)
  t.equal(ring.spinUntilNotEmpty(0.2), false)
  ring.tryWrite(bytes(4, 1))
  t.equal(ring.spinUntilNotEmpty(1000), true)
})

t.test('capacity must be a power of two', async t => {
  t.throws(() => SharedRing.create(100), RangeError)
})
