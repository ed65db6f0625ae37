import t from 'tap'
import type { ActorRef } from '../../src/index.js'
import { probe, streamer, subscription, type StreamerMessage } from '../fixtures/behaviors.js'
import { eventually } from '../fixtures/eventually.js'
import { startSystem } from '../fixtures/system.js'

async function collect<C>(iterable: AsyncIterable<C>): Promise<C[]> {
  const out: C[] = []
  for await (const chunk of iterable) out.push(chunk)
  return out
}

t.test('a streamed reply arrives in order, from every placement', async t => {
  const system = await startSystem(t)
  for (const placement of ['main', 'pool', 'dedicated'] as const) {
    const ref = await system.spawn(streamer, { placement })
    t.same(await collect(ref.stream<number>({ type: 'count', to: 100 })), Array.from({ length: 100 }, (_, i) => i + 1), placement)
  }
})

t.test('the producer never runs more than a window ahead of the consumer', async t => {
  const system = await startSystem(t)
  const ref: ActorRef<StreamerMessage> = await system.spawn(streamer, { placement: 'pool' })
  const window = 4
  const iterator = ref.stream<number>({ type: 'count', to: 1000 }, { window })[Symbol.asyncIterator]()
  t.same(await iterator.next(), { value: 1, done: false })
  await eventually(async () => (await ref.ask<number>({ type: 'produced' })) === window, 'the producer filling its window')
  // Give the producer many turns of both event loops to run ahead if it could.
  for (let i = 0; i < 50; i++) t.equal(await ref.ask<number>({ type: 'produced' }), window, 'no chunk produced past the window')
  let last = 1
  for (;;) {
    const next = await iterator.next()
    if (next.done) break
    last = next.value
  }
  t.equal(last, 1000, 'every chunk arrives once the consumer reads')
  t.equal(await ref.ask({ type: 'produced' }), 1000)
})

t.test('breaking out of the loop cancels the producer', async t => {
  const system = await startSystem(t)
  const ref: ActorRef<StreamerMessage> = await system.spawn(streamer, { placement: 'pool' })
  const seen: number[] = []
  for await (const n of ref.stream<number>({ type: 'count', to: 1_000_000, delayMs: 1 }, { window: 8 })) {
    seen.push(n)
    if (n === 3) break
  }
  t.same(seen, [1, 2, 3])
  await eventually(async () => (await ref.ask<number>({ type: 'cancelled' })) === 1, "the producer's signal aborting")
  t.ok((await ref.ask<number>({ type: 'produced' })) < 20, 'the producer stopped')
})

t.test('aborting the signal ends the stream with cancelled and cancels the producer', async t => {
  const system = await startSystem(t)
  const ref: ActorRef<StreamerMessage> = await system.spawn(streamer, { placement: 'pool' })
  const controller = new AbortController()
  const seen: number[] = []
  await t.rejects(
    (async () => {
      for await (const n of ref.stream<number>({ type: 'count', to: 1_000_000, delayMs: 1 }, { signal: controller.signal })) {
        seen.push(n)
        if (n === 2) controller.abort()
      }
    })(),
    { code: 'cancelled' },
  )
  await eventually(async () => (await ref.ask<number>({ type: 'cancelled' })) === 1, "the producer's signal aborting")
  t.ok(seen.length >= 2)
})

t.test('an error mid-stream reaches the consumer after the chunks before it', async t => {
  const system = await startSystem(t)
  const ref: ActorRef<StreamerMessage> = await system.spawn(streamer, { placement: 'pool' })
  const seen: number[] = []
  await t.rejects(
    (async () => {
      for await (const n of ref.stream<number>({ type: 'count', to: 10, failAt: 4 })) seen.push(n)
    })(),
    { code: 'upstream', message: 'failed at 4' },
  )
  t.same(seen, [1, 2, 3])
  t.equal(await ref.ask({ type: 'produced' }), 3, 'a typed error does not crash the actor')
})

t.test('streaming from an actor without stream() is a bad_message; to a dead one, no_such_actor', async t => {
  const system = await startSystem(t)
  const ref = await system.spawn(probe, { placement: 'pool' })
  await t.rejects(collect(ref.stream({ type: 'echo', value: 1 })), { code: 'bad_message' })
  await system.stop(ref)
  await t.rejects(collect(ref.stream({ type: 'echo', value: 1 })), { code: 'no_such_actor' })
})

t.test('a stream whose producer thread dies fails with crashed', async t => {
  const system = await startSystem(t)
  const ref: ActorRef<StreamerMessage> = await system.spawn(streamer, { placement: 'dedicated' })
  const seen: number[] = []
  const consuming = (async () => {
    for await (const n of ref.stream<number>({ type: 'count', to: 1_000_000, delayMs: 5 })) {
      seen.push(n)
      if (n === 2) ref.tell({ type: 'exit', code: 9 }) // the streamer takes its own worker down
    }
  })()
  await t.rejects(consuming, { code: 'crashed' })
})

t.test('a stream that ends on ctx.stopping lets its actor stop without waiting out the drain', async t => {
  const system = await startSystem(t)
  for (const placement of ['main', 'pool'] as const) {
    // Were the open stream in-flight work, the stop would wait the whole ten minutes for it.
    const ref = await system.spawn(subscription, { placement, shutdownMs: 600_000 })
    const chunks = ref.stream<string>({ type: 'subscribe' })[Symbol.asyncIterator]()
    t.same(await chunks.next(), { value: 'subscribed', done: false }, placement)
    await system.stop(ref)
    t.same(await chunks.next(), { value: undefined, done: true }, `${placement}: the stream ended as the actor stopped`)
  }
})
