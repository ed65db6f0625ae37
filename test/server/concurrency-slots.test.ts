import fc from 'fast-check'
import t from 'tap'
import { ConcurrencySlots, type SlotKind } from '../../src/server/concurrency-slots.js'

t.test('a client holds at most its limit of each kind; a release frees one slot however often it is called', async t => {
  const slots = new ConcurrencySlots({ streams: 2 })
  const first = slots.take('p:alice', 'streams', "principal 'alice'")
  slots.take('p:alice', 'streams', "principal 'alice'")
  t.throws(() => slots.take('p:alice', 'streams', "principal 'alice'"), { status: 429, code: 'concurrency_limit', message: /principal 'alice' has 2 streams open, the most server\.quota\.max_concurrent_streams allows \(2\)/ })
  t.doesNotThrow(() => slots.take('p:bob', 'streams', "principal 'bob'"), 'another client has slots of its own')
  t.doesNotThrow(() => slots.take('p:alice', 'runs', "principal 'alice'"), 'an unset limit is no limit')
  first()
  first()
  t.equal(slots.held('p:alice', 'streams'), 1, 'released once')
  slots.configure({ streams: 1 })
  t.throws(() => slots.take('p:alice', 'streams', "principal 'alice'"), { code: 'concurrency_limit' }, 'a lowered limit applies to the next take')
  slots.configure({})
  t.notOk(slots.limited, 'no limits: requests need no slots')
})

t.test('under any order of takes and releases the counts match a model, never pass the limit, and end at zero', async t => {
  const kinds: SlotKind[] = ['streams', 'runs']
  await fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 3 }),
      fc.array(fc.oneof(fc.record({ take: fc.tuple(fc.integer({ min: 0, max: 2 }), fc.constantFrom(...kinds)) }), fc.record({ release: fc.nat(), twice: fc.boolean() })), { maxLength: 60 }),
      (limit, ops) => {
        const slots = new ConcurrencySlots({ streams: limit, runs: limit })
        const held: Array<() => void> = []
        const model = new Map<string, number>()
        for (const op of ops) {
          if ('take' in op) {
            const [client, kind] = op.take
            const key = `c${client}/${kind}`
            const count = model.get(key) ?? 0
            let release: (() => void) | undefined
            try {
              release = slots.take(`c${client}`, kind, `client ${client}`)
            } catch {
              if (count < limit) return false
              continue
            }
            if (count >= limit) return false
            model.set(key, count + 1)
            held.push(() => {
              release!()
              model.set(key, model.get(key)! - 1)
            })
          } else if (held.length > 0) {
            const [release] = held.splice(op.release % held.length, 1)
            release!()
          }
          for (const [key, count] of model) {
            const [client, kind] = key.split('/') as [string, SlotKind]
            if (slots.held(client, kind) !== count || count > limit) return false
          }
        }
        for (const release of held) release()
        return [0, 1, 2].every(client => kinds.every(kind => slots.held(`c${client}`, kind) === 0))
      },
    ),
  )
  t.pass('checked')
})
