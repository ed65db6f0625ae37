import fc from 'fast-check'
import t from 'tap'
import { timeOrderedUuid } from '../../actors/stores/time-ordered-id.js'

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

t.test('an id is a UUIDv7 whose first 48 bits are the millisecond it was made in', async t => {
  const now = Date.UTC(2026, 11, 7, 0, 30)
  const id = timeOrderedUuid(now)
  t.match(id, UUID_V7)
  t.equal(parseInt(id.replaceAll('-', '').slice(0, 12), 16), now)
})

t.test('ids made in later milliseconds sort after earlier ones, as strings and as bytes', async () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 47 }), fc.integer({ min: 1, max: 2 ** 20 }), (earlier, gap) => {
      const a = timeOrderedUuid(earlier)
      const b = timeOrderedUuid(earlier + gap)
      return a < b && Buffer.compare(Buffer.from(a), Buffer.from(b)) < 0
    }),
  )
})

t.test('ids made in the same millisecond differ (74 random bits), across refills of the random pool', async t => {
  const now = Date.now()
  const ids = new Set(Array.from({ length: 10_000 }, () => timeOrderedUuid(now)))
  t.equal(ids.size, 10_000)
  for (const id of ids) if (!UUID_V7.test(id)) t.fail(`not a UUIDv7: ${id}`)
})
