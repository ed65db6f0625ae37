import t from 'tap'
import type { Cancellation } from '../../src/index.js'
import { journal, probe, type ProbeMessage } from '../fixtures/behaviors.js'
import { eventually } from '../fixtures/eventually.js'
import { startSystem } from '../fixtures/system.js'

t.test('an ask that outlives timeoutMs rejects with timeout and cancels the work at the callee', async t => {
  const system = await startSystem(t)
  for (const placement of ['main', 'pool'] as const) {
    const entries: string[] = []
    const log = await system.spawn(journal, { placement: 'main', args: { entries } })
    const ref = await system.spawn(probe, { placement, args: { notify: log } })
    await t.rejects(ref.ask({ type: 'wait', ms: 60_000 } satisfies ProbeMessage, { timeoutMs: 50 }), { code: 'timeout' }, placement)
    await eventually(() => entries.includes('aborted'), `${placement}: the callee's signal aborting`)
    t.pass(`${placement}: the callee saw its signal abort`)
  }
})

t.test('aborting the signal rejects with cancelled and cancels the work at the callee', async t => {
  const system = await startSystem(t)
  const entries: string[] = []
  const log = await system.spawn(journal, { placement: 'main', args: { entries } })
  const ref = await system.spawn(probe, { placement: 'pool', args: { notify: log } })
  const controller = new AbortController()
  const pending = ref.ask({ type: 'wait', ms: 60_000 } satisfies ProbeMessage, { signal: controller.signal })
  await ref.ask({ type: 'echo', value: 'the wait has started' } satisfies ProbeMessage)
  controller.abort(new Error('user left'))
  await t.rejects(pending, { code: 'cancelled', data: { reason: 'user left' } })
  await eventually(() => entries.includes('aborted'), "the callee's signal aborting")

  await t.rejects(ref.ask({ type: 'echo', value: 1 } satisfies ProbeMessage, { signal: AbortSignal.abort() }), { code: 'cancelled' }, 'an aborted signal never sends')
})

/** A Cancellation the test fires by hand. */
class ManualCancel implements Cancellation {
  cancelled = false
  readonly #callbacks: Array<() => void> = []
  onCancel(fn: () => void): () => void {
    if (this.cancelled) fn()
    else this.#callbacks.push(fn)
    return () => this.#callbacks.splice(this.#callbacks.indexOf(fn) >>> 0, 1)
  }
  fire(): void {
    this.cancelled = true
    for (const fn of this.#callbacks.splice(0)) fn()
  }
}

t.test('a Cancellation cancels like a signal, and ctx.cancellation passes it on to the asks made for it', async t => {
  const system = await startSystem(t)
  for (const placement of ['main', 'pool'] as const) {
    const entries: string[] = []
    const log = await system.spawn(journal, { placement: 'main', args: { entries } })
    const relay = await system.spawn(probe, { placement: 'main', args: { notify: log } })
    const waiter = await system.spawn(probe, { placement, args: { notify: log } })
    const cancel = new ManualCancel()
    const pending = relay.ask({ type: 'relay', to: waiter, msg: { type: 'wait', ms: 60_000 } } satisfies ProbeMessage, { cancellation: cancel })
    await eventually(() => entries.includes('waiting'), `${placement}: the relayed wait to start`)
    cancel.fire()
    await t.rejects(pending, { code: 'cancelled' }, `${placement}: the caller's ask is cancelled`)
    await eventually(() => entries.includes('aborted'), `${placement}: the relayed wait to be aborted`)
    t.pass(`${placement}: cancelling the first ask cancelled the one made for it`)
  }
  const fired = new ManualCancel()
  fired.fire()
  const ref = await system.spawn(probe, { placement: 'pool' })
  await t.rejects(ref.ask({ type: 'echo', value: 1 } satisfies ProbeMessage, { cancellation: fired }), { code: 'cancelled' }, 'a fired Cancellation never sends')
})

t.test('an ask cancelled while still queued is never handled', async t => {
  const system = await startSystem(t)
  const entries: string[] = []
  const log = await system.spawn(journal, { placement: 'main', args: { entries } })
  const ref = await system.spawn(probe, { placement: 'pool', args: { notify: log }, mailbox: { capacity: 16 } })
  // maxConcurrent is 4: fill it, so the fifth ask waits in the mailbox.
  const busy = Array.from({ length: 4 }, () => ref.ask({ type: 'wait', ms: 300 } satisfies ProbeMessage))
  const controller = new AbortController()
  const queued = ref.ask({ type: 'wait', ms: 1 } satisfies ProbeMessage, { signal: controller.signal })
  controller.abort()
  await t.rejects(queued, { code: 'cancelled' })
  t.same(await Promise.all(busy), ['waited', 'waited', 'waited', 'waited'])
  t.equal(await ref.ask({ type: 'echo', value: 'done' } satisfies ProbeMessage), 'done')
  const snapshot = await system.inspect()
  const node = snapshot.root.children.find(n => n.kind === 'actor' && n.placement === 'pool')
  t.match(node, { messagesHandled: 5 }, 'four waits and the echo; the cancelled ask was dropped unhandled')
})

t.test('timeoutMs must be positive; Infinity waits without a timer', async t => {
  const system = await startSystem(t, { workers: 0 })
  const ref = await system.spawn(probe)
  await t.rejects(ref.ask({ type: 'echo', value: 1 } satisfies ProbeMessage, { timeoutMs: 0 }), { name: 'TypeError', message: /timeoutMs/ })
  t.equal(await ref.ask({ type: 'echo', value: 2 } satisfies ProbeMessage, { timeoutMs: Infinity }), 2)
})
