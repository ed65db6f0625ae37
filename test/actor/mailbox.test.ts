import fc from 'fast-check'
import t from 'tap'
import { Kind } from '../../src/actor/envelope.js'
import { Mailbox } from '../../src/actor/mailbox.js'
import { probe, sink, type ProbeMessage } from '../fixtures/behaviors.js'
import { eventually } from '../fixtures/eventually.js'
import { capturingLogger } from '../fixtures/logger.js'
import { startSystem, workerExecArgv } from '../fixtures/system.js'
import { ActorSystem } from '../../src/index.js'

t.test('a mailbox is FIFO, grows up to its capacity, and refuses past it', async t => {
  const mailbox = new Mailbox(40)
  for (let i = 0; i < 40; i++) t.equal(mailbox.push(Kind.tell, i, 0, i, 0), true)
  t.equal(mailbox.push(Kind.tell, 40, 0, 40, 0), false, 'the 41st is refused')
  t.equal(mailbox.depth, 40)
  const taken: unknown[] = []
  while (mailbox.take()) taken.push(mailbox.payload)
  t.same(taken, Array.from({ length: 40 }, (_, i) => i))
  t.equal(mailbox.depth, 0)
})

t.test('a mailbox wraps around its ring without reordering', async t => {
  const mailbox = new Mailbox(16) // five rounds of +5 -3 peak at 13 queued
  const out: number[] = []
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 5; i++) t.ok(mailbox.push(Kind.ask, round * 5 + i, 1, round * 5 + i, 0))
    for (let i = 0; i < 3; i++) if (mailbox.take()) out.push(mailbox.payload as number)
  }
  while (mailbox.take()) out.push(mailbox.payload as number)
  t.same(out, Array.from({ length: 25 }, (_, i) => i))
})

t.test('a cancelled delivery is skipped and frees its message', async t => {
  const mailbox = new Mailbox(4)
  mailbox.push(Kind.ask, 'a', 1, 10, 0)
  mailbox.push(Kind.ask, 'b', 1, 11, 0)
  mailbox.push(Kind.ask, 'c', 2, 11, 0)
  t.equal(mailbox.cancel(1, 11), true)
  t.equal(mailbox.cancel(1, 11), false, 'only once')
  t.equal(mailbox.cancel(3, 10), false, 'the sender thread must match too')
  const taken: unknown[] = []
  while (mailbox.take()) taken.push([mailbox.payload, mailbox.from, mailbox.correlation])
  t.same(taken, [
    ['a', 1, 10],
    ['c', 2, 11],
  ])
})

t.test('capacity must be a positive integer', async t => {
  t.throws(() => new Mailbox(0), RangeError)
  t.throws(() => new Mailbox(1.5), RangeError)
})

t.test('a full mailbox rejects asks with backpressure and counts refused tells as dead letters', async t => {
  const { logger, records } = capturingLogger('warn')
  const system = await ActorSystem.start({ workers: 1, logger, execArgv: workerExecArgv() })
  t.teardown(() => system.shutdown())
  for (const placement of ['main', 'pool'] as const) {
    // The bound is on messages not yet handled: a burst of four fits a mailbox of four, and
    // once all four run (maxConcurrent 4) the mailbox is empty again.
    const ref = await system.spawn(probe, { placement, name: placement, mailbox: { capacity: 4 } })
    const before = (await system.inspect()).deadLetters
    const busy = Array.from({ length: 4 }, () => ref.ask({ type: 'wait', ms: 400 } satisfies ProbeMessage))
    await eventually(async () => handled(await system.inspect(), placement) === 4, 'four waits running')
    const queued = ['q1', 'q2', 'q3', 'q4'].map(value => ref.ask({ type: 'echo', value } satisfies ProbeMessage))
    await t.rejects(ref.ask({ type: 'echo', value: 'one too many' } satisfies ProbeMessage), { code: 'backpressure' }, `${placement}: ask refused`)
    ref.tell({ type: 'echo', value: 'tell too many' })
    await eventually(async () => (await system.inspect()).deadLetters === before + 1, 'the refused tell counted')
    t.same(await Promise.all(queued), ['q1', 'q2', 'q3', 'q4'], `${placement}: queued asks are answered once there is room`)
    await Promise.all(busy)
    t.equal(await ref.ask({ type: 'echo', value: 'room again' } satisfies ProbeMessage), 'room again')
  }
  t.ok(records.some(r => r['msg'] === 'dead letter' && r['code'] === 'backpressure' && r['thread'] === undefined), 'the main thread logs its dead letters')
  t.ok(
    records.some(r => r['msg'] === 'dead letter' && r['code'] === 'backpressure' && typeof r['thread'] === 'number'),
    "a worker's dead letters reach the system logger's destination",
  )
})

t.test('a flood of dead letters is counted in full but logged at a bounded rate', async t => {
  const { logger, records } = capturingLogger('warn')
  const system = await ActorSystem.start({ workers: 0, logger })
  t.teardown(() => system.shutdown())
  const ref = await system.spawn(sink, { mailbox: { capacity: 1 } })
  for (let i = 0; i < 500; i++) ref.tell({ type: 'hit' }) // one fits; the rest are refused in this tick
  t.equal((await system.inspect()).deadLetters, 499)
  const logged = records.filter(r => r['msg'] === 'dead letter')
  t.ok(logged.length <= 10, `logged ${logged.length} of 499`)
  t.equal(await ref.ask({ type: 'get' }), 1)
})

t.test('stop jumps the queue: queued messages are refused, not handled first', async t => {
  const system = await startSystem(t)
  const ref = await system.spawn(probe, { placement: 'pool', name: 'holder', shutdownMs: 100, mailbox: { capacity: 64 } })
  const busy = Array.from({ length: 4 }, () => ref.ask({ type: 'hold' } satisfies ProbeMessage).catch((e: unknown) => e))
  await eventually(async () => handled(await system.inspect(), 'holder') === 4, 'four holds running')
  const queued = Array.from({ length: 50 }, (_, i) => ref.ask({ type: 'echo', value: i } satisfies ProbeMessage).catch((e: unknown) => e))
  await system.stop(ref)
  for (const outcome of await Promise.all(queued)) t.match(outcome, { code: 'stopped' })
  for (const outcome of await Promise.all(busy)) t.match(outcome, { code: 'stopped' }, 'in-flight work is cut off after shutdownMs')
})

/** Messages the named actor has started handling, as inspect() reports it. */
function handled(snapshot: Awaited<ReturnType<ActorSystem['inspect']>>, name: string): number | undefined {
  const node = snapshot.root.children.find(n => n.kind === 'actor' && n.name === name)
  return node?.kind === 'actor' ? node.messagesHandled : undefined
}

t.test('any sequence of push, take and cancel behaves as a bounded FIFO with cancellation in place', async () => {
  type Op = { op: 'push'; id: number } | { op: 'take' } | { op: 'cancel'; id: number }
  const op = fc.oneof(
    fc.record({ op: fc.constant('push' as const), id: fc.nat(40) }),
    fc.record({ op: fc.constant('take' as const) }),
    fc.record({ op: fc.constant('cancel' as const), id: fc.nat(40) }),
  ) as fc.Arbitrary<Op>
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 9 }), fc.array(op, { maxLength: 120 }), (capacity, ops) => {
      const mailbox = new Mailbox(capacity)
      // The model: queued deliveries in order, a cancelled one kept (it counts) until taken past.
      const model: Array<{ id: number; live: boolean }> = []
      for (const step of ops) {
        if (step.op === 'push') {
          const accepted = mailbox.push(Kind.ask, step.id, 1, step.id, 0)
          if (accepted !== model.length < capacity) return false
          if (accepted) model.push({ id: step.id, live: true })
        } else if (step.op === 'take') {
          while (model.length > 0 && !model[0]!.live) model.shift()
          const expected = model.shift()
          if (mailbox.take() !== (expected !== undefined)) return false
          if (expected !== undefined && (mailbox.payload !== expected.id || mailbox.correlation !== expected.id)) return false
        } else {
          const queued = model.find(d => d.live && d.id === step.id)
          if (mailbox.cancel(1, step.id) !== (queued !== undefined)) return false
          if (queued !== undefined) queued.live = false
        }
        if (mailbox.depth !== model.length) return false
      }
      return true
    }),
  )
})
