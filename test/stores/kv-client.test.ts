import t from 'tap'
import { ActorError, type ActorRef, type AskOptions } from '../../src/index.js'
import { KvClient } from '../../actors/stores/kv-client.js'
import { kvStore } from '../../actors/stores/kv-store.js'
import type { KvMessage } from '../../actors/stores/protocol.js'
import { eventually } from '../fixtures/eventually.js'
import { startSystem } from '../fixtures/system.js'

/** A store ref that records the message types it was asked. */
function recording(store: ActorRef<KvMessage>): { ref: Pick<ActorRef<KvMessage>, 'ask'>; asked: string[] } {
  const asked: string[] = []
  const ref = {
    ask: <R>(msg: KvMessage, options?: AskOptions): Promise<R> => {
      asked.push(msg.type)
      return store.ask<R>(msg, options)
    },
  }
  return { ref, asked }
}

t.test('the kv client batches the calls of one turn and answers each alone', async t => {
  const system = await startSystem(t)
  const store = await system.spawn(kvStore, { placement: 'pool', args: { name: 'mem', config: { type: 'kv_memory' } } })
  const { ref, asked } = recording(store)
  const kv = new KvClient(ref, 'client-test')

  await t.test('sets of one turn travel as one setManyPacked and are each acknowledged', async t => {
    asked.length = 0
    await Promise.all(Array.from({ length: 10 }, (_, i) => kv.set(`k${i}`, { i })))
    t.same(asked, ['setManyPacked'])
    t.same(await store.ask({ type: 'get', namespace: 'client-test', key: 'k7' }), { i: 7 })
  })

  await t.test('gets of one turn travel as one getMany, answered in order', async t => {
    asked.length = 0
    const values = await Promise.all(['k3', 'missing', 'k0', 'k3'].map(key => kv.get(key)))
    t.same(values, [{ i: 3 }, null, { i: 0 }, { i: 3 }])
    t.same(asked, ['getMany'])
  })

  await t.test('a lone call is sent as itself; big turns split at 128 entries, and sets at 1 MiB', async t => {
    asked.length = 0
    t.same(await kv.get('k1'), { i: 1 })
    await kv.set('solo', 1)
    t.same(asked, ['get', 'set'])
    asked.length = 0
    await Promise.all(Array.from({ length: 300 }, (_, i) => kv.set(`many${i}`, i)))
    t.same(asked, ['setManyPacked', 'setManyPacked', 'setManyPacked'])
    asked.length = 0
    t.same(await Promise.all(Array.from({ length: 300 }, (_, i) => kv.get(`many${i}`))), Array.from({ length: 300 }, (_, i) => i))
    t.same(asked, ['getMany', 'getMany', 'getMany'])
    asked.length = 0
    const big = 'v'.repeat(300 * 1024)
    await Promise.all(Array.from({ length: 7 }, (_, i) => kv.set(`big${i}`, `${i}${big}`)))
    t.same(asked, ['setManyPacked', 'setManyPacked', 'setManyPacked'], '7 values of 300 KiB go 3, 3 and 1: no message past 1 MiB')
    t.same((await Promise.all(Array.from({ length: 7 }, (_, i) => kv.get(`big${i}`)))).map(value => (value as string).slice(0, 2)), Array.from({ length: 7 }, (_, i) => `${i}v`))
  })

  await t.test('one bad value in a batch fails alone; the others are written', async t => {
    const results = await Promise.allSettled([kv.set('good1', 1), kv.set('huge', 'x'.repeat(17 * 1024 * 1024)), kv.set('good2', 2), kv.set('weird', 10n ** 30n)])
    t.same(results.map(r => r.status), ['fulfilled', 'rejected', 'fulfilled', 'rejected'])
    t.match((results[1] as PromiseRejectedResult).reason, { code: 'value_too_large' })
    t.match((results[3] as PromiseRejectedResult).reason, { code: 'unencodable_value', message: /weird/ })
    t.same(await Promise.all([kv.get('good1'), kv.get('huge'), kv.get('good2'), kv.get('weird')]), [1, null, 2, null])
  })

  await t.test('a bad value in a later message of a big turn fails alone', async t => {
    asked.length = 0
    const results = await Promise.allSettled(Array.from({ length: 300 }, (_, i) => kv.set(`turn${i}`, i === 200 ? 10n ** 30n : i)))
    t.same(asked, ['setManyPacked', 'setManyPacked', 'setManyPacked'])
    t.same(results.map((r, i) => (r.status === 'rejected') === (i === 200)), Array.from({ length: 300 }, () => true))
    t.same(await Promise.all([199, 200, 201, 299].map(i => kv.get(`turn${i}`))), [199, null, 201, 299])
  })

  await t.test('a batch mixing TTLs gives each value its own expiry', async t => {
    asked.length = 0
    await Promise.all(['x1', 'x2', 'x3'].map((key, i) => kv.set(key, i, i === 1 ? { ttlMs: 100 } : {})))
    t.same(asked, ['setManyPacked'])
    t.same(await Promise.all(['x1', 'x2', 'x3'].map(key => kv.get(key))), [0, 1, 2])
    await eventually(async () => (await kv.get('x2')) === null, 'x2 to expire')
    t.same(await Promise.all(['x1', 'x3'].map(key => kv.get(key))), [0, 2], 'the others stay')
  })

  await t.test('a bad key is refused at once, without a message', async t => {
    asked.length = 0
    await t.rejects(kv.get(''), { code: 'invalid_key' })
    await t.rejects(kv.set('k'.repeat(600), 1), { code: 'invalid_key' })
    t.same(asked, [])
  })

  await t.test('TTL, delete, scan and entries pass through', async t => {
    await kv.set('brief', 1, { ttlMs: 60_000 })
    t.equal(await kv.get('brief'), 1)
    t.equal(await kv.delete('brief'), true)
    t.equal(await kv.get('brief'), null)
    await Promise.all(Array.from({ length: 1500 }, (_, i) => kv.set(`page/${String(i).padStart(4, '0')}`, i)))
    const first = await kv.scan('page/', { limit: 2 })
    t.same(first.items.map(item => item.key), ['page/0000', 'page/0001'])
    const seen: number[] = []
    for await (const { value } of kv.entries<number>('page/')) seen.push(value)
    t.same(seen, Array.from({ length: 1500 }, (_, i) => i), 'entries walks every page in order')
  })

  await t.test('a failure of the store fails every call of the batch', async t => {
    const failing = new KvClient({ ask: () => Promise.reject(new ActorError('restarting', 'store restarting')) }, 'x')
    const results = await Promise.allSettled([failing.get('a'), failing.get('b'), failing.set('c', 1), failing.set('d', 2)])
    t.same(results.map(r => r.status === 'rejected' && (r.reason as ActorError).code), ['restarting', 'restarting', 'restarting', 'restarting'])
  })
})
