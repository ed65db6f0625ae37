import fc from 'fast-check'
import t from 'tap'
import { ActorError, type ActorRef, type AskOptions } from '../../src/index.js'
import { QuotaLedger, QuotaUnavailableError } from '../../src/server/quota-ledger.js'
import { kvStore } from '../../actors/stores/kv-store.js'
import type { KvMessage } from '../../actors/stores/protocol.js'
import { quietLogger } from '../fixtures/logger.js'
import { startSystem } from '../fixtures/system.js'

const DAY_MS = 86_400_000
/** Noon, 2026-03-10 UTC: a window's middle. */
const NOON = Date.UTC(2026, 2, 10, 12)

type Store = Pick<ActorRef<KvMessage>, 'ask'>

const system = await startSystem(t)
const memory = await system.spawn(kvStore, { placement: 'main', args: { name: 'quota-test', config: { type: 'kv_memory' } } })
let namespaces = 0

/**
 * A ledger on the in-memory store, in a namespace of its own unless given one, on `clock`;
 * closed with the test unless `owned` (the property closes its own: a store it schedules
 * answers nothing once a run is over).
 */
function ledgerOn(clock: { now: number }, options: { store?: Store; namespace?: string; owned?: boolean } = {}): { ledger: QuotaLedger; namespace: string } {
  const namespace = options.namespace ?? `ledger-${++namespaces}`
  // No flush by the interval: the tests flush when they mean to.
  const ledger = new QuotaLedger({ store: options.store ?? memory, namespace, periodMs: DAY_MS, now: () => clock.now, log: quietLogger(), flushIntervalMs: 3_600_000 })
  if (options.owned !== true) t.teardown(() => ledger.close())
  return { ledger, namespace }
}

/** A store ref that records the message types it was asked, and fails those `failing` names. */
function recording(failing: Set<string> = new Set()): { store: Store; asked: string[] } {
  const asked: string[] = []
  return {
    asked,
    store: {
      ask: <R>(msg: KvMessage, options?: AskOptions): Promise<R> => {
        asked.push(msg.type)
        if (failing.has(msg.type)) return Promise.reject(new ActorError('backend_unavailable', `${msg.type} refused by the test`))
        return memory.ask<R>(msg, options)
      },
    },
  }
}

t.test('a client is admitted up to its limit and then refused, and a refusal is not counted', async t => {
  const { ledger } = ledgerOn({ now: NOON })
  t.same(await ledger.take('p:alice', 3), 1, 'the first request waits for the stored count')
  t.same([ledger.take('p:alice', 3), ledger.take('p:alice', 3)], [2, 3], 'the next are answered at once')
  t.same([ledger.take('p:alice', 3), ledger.take('p:alice', 3)], [-1, -2], 'then refused, each refusal numbered')
  t.same(ledger.take('p:alice', 5), 4, 'a refusal did not count: with a higher limit the count goes on from 3')
  t.same(await ledger.take('p:bob', 3), 1, 'another client counts on its own')
})

t.test('a client is read from the store once per window, however many of its requests arrive while it is read', async t => {
  const { store, asked } = recording()
  const { ledger } = ledgerOn({ now: NOON }, { store })
  const first = await Promise.all([ledger.take('p:alice', 10), ledger.take('p:alice', 10), ledger.take('p:bob', 10)])
  t.same(first, [1, 2, 1])
  t.same(asked, ['getMany'], 'one read, for both clients, in one message')
  t.same(ledger.take('p:alice', 10), 3)
  t.same(asked, ['getMany'], 'nothing more read')
})

t.test("the window rolls over at UTC midnight on the injected clock, and every count starts again", async t => {
  const clock = { now: Date.UTC(2026, 2, 10, 23, 59, 59, 999) }
  const { store, asked } = recording()
  const { ledger } = ledgerOn(clock, { store })
  t.equal(ledger.windowEnd(), Date.UTC(2026, 2, 11), 'the window ends at midnight')
  t.same([await ledger.take('p:alice', 2), ledger.take('p:alice', 2), ledger.take('p:alice', 2)], [1, 2, -1])
  clock.now += 1
  t.equal(ledger.windowEnd(), Date.UTC(2026, 2, 12), 'a new window')
  t.same([ledger.take('p:alice', 2), ledger.take('p:alice', 2), ledger.take('p:alice', 2)], [1, 2, -1], 'the count started again, at once: there is nothing to read')
  t.same(asked, ['get'], 'read once, in the first window')
})

t.test('counts written by a flush are read back by a new ledger (a restart); those not written are what a kill -9 loses', async t => {
  const clock = { now: NOON }
  const first = ledgerOn(clock)
  for (let i = 0; i < 3; i++) await first.ledger.take('p:alice', 5)
  await first.ledger.flush()
  await first.ledger.take('p:alice', 5) // counted, never written: the process dies before the next interval
  const second = ledgerOn(clock, { namespace: first.namespace })
  t.same(await second.ledger.take('p:alice', 5), 4, 'the 3 written are read back; the 4th was lost')
  t.same([second.ledger.take('p:alice', 5), second.ledger.take('p:alice', 5)], [5, -1])
  await second.ledger.close()
  const third = ledgerOn(clock, { namespace: first.namespace })
  t.same(await third.ledger.take('p:alice', 5), -1, 'close wrote everything')
  clock.now += DAY_MS
  const fourth = ledgerOn(clock, { namespace: first.namespace })
  t.same(await fourth.ledger.take('p:alice', 5), 1, "a past window's count is not taken for the next")
})

t.test('a count that cannot be read refuses with QuotaUnavailableError, and the next request reads again', async t => {
  const failing = new Set(['get'])
  const { store, asked } = recording(failing)
  const { ledger } = ledgerOn({ now: NOON }, { store })
  await t.rejects(Promise.resolve(ledger.take('p:alice', 5)), QuotaUnavailableError)
  failing.clear()
  t.same(await ledger.take('p:alice', 5), 1, 'read again, and counted')
  t.same(asked, ['get', 'get'])
})

t.test('a write that fails is tried again at the next flush', async t => {
  const failing = new Set(['set'])
  const { store, asked } = recording(failing)
  const { ledger, namespace } = ledgerOn({ now: NOON }, { store })
  await ledger.take('p:alice', 5)
  await ledger.flush()
  t.same(asked, ['get', 'set'])
  failing.clear()
  await ledger.flush()
  t.same(asked, ['get', 'set', 'set'], 'written again')
  await ledger.flush()
  t.same(asked, ['get', 'set', 'set'], 'and once written, not again')
  t.same(await memory.ask({ type: 'get', namespace, key: 'p:alice' }), { until: Date.UTC(2026, 2, 11), used: 1 })
})

t.test('a client whose key would not fit is stored under its hash', async t => {
  const { ledger, namespace } = ledgerOn({ now: NOON })
  const long = `p:${'x'.repeat(600)}`
  t.same(await ledger.take(long, 5), 1)
  await ledger.flush()
  const page = await memory.ask<{ items: Array<{ key: string }> }>({ type: 'scan', namespace })
  t.match(page.items.map(item => item.key), [/^p:#[A-Za-z0-9_-]{43}$/])
})

t.test('under any interleaving of requests, reads, writes and store answers, no client is admitted past its limit, and what is admitted survives a restart', async t => {
  await fc.assert(
    fc.asyncProperty(
      fc.scheduler(),
      fc.array(fc.record({ client: fc.integer({ min: 0, max: 2 }), flush: fc.boolean(), settle: fc.nat({ max: 3 }) }), { maxLength: 30 }),
      fc.integer({ min: 0, max: 6 }),
      async (s, steps, limit) => {
        const clock = { now: NOON }
        const store: Store = { ask: <R>(msg: KvMessage, options?: AskOptions) => s.schedule(memory.ask<R>(msg, options)) }
        const { ledger, namespace } = ledgerOn(clock, { store, owned: true })
        const answers = new Map<string, Array<Promise<number>>>()
        for (const { client, flush, settle } of steps) {
          const name = `p:c${client}`
          answers.set(name, [...(answers.get(name) ?? []), Promise.resolve(ledger.take(name, limit))])
          if (flush) void ledger.flush()
          for (let i = 0; i < settle && s.count() > 0; i++) await s.waitNext(1)
        }
        const counted = new Map<string, number>()
        for (const [name, pending] of answers) {
          const values = await s.waitFor(Promise.all(pending))
          const admitted = values.filter(value => value > 0)
          if (admitted.length !== Math.min(pending.length, limit)) return false
          // Each admitted request got its own count, 1 to n: no two were counted as one.
          if ([...admitted].sort((a, b) => a - b).some((value, i) => value !== i + 1)) return false
          counted.set(name, admitted.length)
        }
        await s.waitFor(ledger.close())
        const restarted = ledgerOn(clock, { namespace, owned: true }).ledger
        for (const [name, admitted] of counted) {
          if ((await restarted.take(name, limit)) !== (admitted < limit ? admitted + 1 : -1)) return false
        }
        await restarted.close()
        return true
      },
    ),
    { numRuns: 60 },
  )
  t.pass('60 interleavings')
})
