import { readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ActorError } from '../../src/index.js'
import type { RunInfo, WorkflowStats } from '../../actors/workflows/protocol.js'
import { eventually } from '../fixtures/eventually.js'
import { startSystem } from '../fixtures/system.js'
import { allEvents, spawnWorkflow, startRun, startRunStores, startRunSurely, waitRun } from '../fixtures/workflow-actor.js'
import { counterFile, fails, failsWithCode, slow, threeSteps, waitsForHuman } from '../fixtures/workflows.js'
import { tally } from '../fixtures/session-workflows.js'

const system = await startSystem(t, { workers: 2 })
const stores = await startRunStores(t, system)

t.test('a run completes with its result, and its stream holds each event once, in sequence, ending with StopEvent', async t => {
  const ref = await spawnWorkflow(system, stores, threeSteps)
  const { run, existing } = await startRun(ref, { n: 1 })
  t.equal(existing, false)
  t.equal(run.status, 'running')
  const done = await waitRun(ref, run.runId)
  t.match(done, { status: 'completed', result: { n: 4 }, error: null, lastSeq: 3 })
  const events = await allEvents(ref, run.runId)
  t.same(events.map(e => [e.seq, e.type]), [[0, 'ProgressEvent'], [1, 'ProgressEvent'], [2, 'ProgressEvent'], [3, 'StopEvent']])
  t.same(events[3]!.value, { n: 4 })
  t.same((await allEvents(ref, run.runId, 2)).map(e => e.seq), [3], 'after a sequence: only what follows it')
  t.match(await ref.ask({ type: 'get', runId: run.runId }), { status: 'completed' }, 'the store answers once the run left the actor')
})

t.test('a run whose code throws fails with workflow_error; an ActorError fails it with its own code; never completed', async t => {
  const plain = await spawnWorkflow(system, stores, fails)
  const failed = await waitRun(plain, (await startRun(plain, {})).run.runId)
  t.match(failed, { status: 'failed', result: null, error: { code: 'workflow_error', message: 'boom' } })
  const events = await allEvents(plain, failed.runId)
  t.match(events.at(-1), { type: 'WorkflowFailedEvent', value: { code: 'workflow_error' } })
  const coded = await spawnWorkflow(system, stores, failsWithCode)
  t.match(await waitRun(coded, (await startRun(coded, {})).run.runId), { status: 'failed', error: { code: 'quota_exceeded' } })
})

t.test('a bad start event is refused with invalid_request naming the field, and no run is made', async t => {
  const ref = await spawnWorkflow(system, stores, threeSteps)
  const error = await startRun(ref, { n: 'one' }).catch((e: unknown) => e)
  t.match(error, { code: 'invalid_request', data: { param: 'start_event.n' } })
  t.equal((await ref.ask<WorkflowStats>({ type: 'stats' })).running, 0)
})

t.test('admission: max_concurrent_tasks run, queue_size wait, the rest get backpressure; a freed slot starts the next at once', async t => {
  const ref = await spawnWorkflow(system, stores, slow, { maxConcurrent: 1, queueSize: 1 })
  const first = await startRun(ref, {})
  const second = await startRun(ref, {})
  t.match(await ref.ask({ type: 'stats' }), { running: 1, queued: 1 })
  const refused = await startRun(ref, {}).catch((e: unknown) => e)
  t.ok(refused instanceof ActorError)
  t.match(refused, { code: 'backpressure', data: { retryAfterMs: Number } })
  t.equal(await ref.ask({ type: 'cancel', runId: first.run.runId }), 'cancelled')
  t.match(await ref.ask({ type: 'stats' }), { running: 1, queued: 0 }, 'the queued run took the slot')
  await ref.ask({ type: 'cancel', runId: second.run.runId })
})

t.test('cancel mid-step ends the run cancelled, its stream with WorkflowCancelledEvent; purge removes it', async t => {
  const ref = await spawnWorkflow(system, stores, slow)
  const { run } = await startRun(ref, {})
  const stream = allEvents(ref, run.runId)
  await eventually(async () => ((await ref.ask<RunInfo>({ type: 'get', runId: run.runId })).lastSeq ?? -1) >= 0, 'the run to emit')
  t.equal(await ref.ask({ type: 'cancel', runId: run.runId }), 'cancelled')
  t.same((await stream).map(e => e.type), ['ProgressEvent', 'WorkflowCancelledEvent'])
  t.match(await ref.ask({ type: 'get', runId: run.runId }), { status: 'cancelled', error: { code: 'cancelled' } })
  t.match(await ref.ask({ type: 'cancel', runId: run.runId }).catch((e: unknown) => e), { code: 'not_found' }, 'a finished run cannot be cancelled again')
  t.equal(await ref.ask({ type: 'cancel', runId: run.runId, purge: true }), 'deleted')
  t.equal(await ref.ask({ type: 'get', runId: run.runId }), null)
})

t.test('timeout_ms fails a run that runs too long with timeout', async t => {
  const ref = await spawnWorkflow(system, stores, slow, { timeoutMs: 200 })
  const done = await waitRun(ref, (await startRun(ref, {})).run.runId)
  t.match(done, { status: 'failed', error: { code: 'timeout' } })
})

t.test('a human event: sent into the waiting run, it completes it; once over, sends get run_over; unknown runs not_found', async t => {
  const ref = await spawnWorkflow(system, stores, waitsForHuman)
  const { run } = await startRun(ref, {})
  const events: string[] = []
  for await (const event of ref.stream<{ type: string }>({ type: 'events', runId: run.runId, after: -1 })) {
    events.push(event.type)
    if (event.type === 'InputRequiredEvent') t.same(await ref.ask({ type: 'send', runId: run.runId, event: { type: 'HumanResponseEvent', value: { response: 'yes' } } }), { status: 'sent' })
  }
  t.same(events, ['InputRequiredEvent', 'StopEvent'])
  t.match(await waitRun(ref, run.runId), { status: 'completed', result: { response: 'yes' } })
  t.match(await ref.ask({ type: 'send', runId: run.runId, event: { type: 'HumanResponseEvent', value: {} } }).catch((e: unknown) => e), { code: 'run_over' })
  t.match(await ref.ask({ type: 'send', runId: 'run-nope', event: { type: 'X', value: {} } }).catch((e: unknown) => e), { code: 'not_found' })
})

t.test('an event sent before the run waits for it is kept for the wait', async t => {
  const ref = await spawnWorkflow(system, stores, waitsForHuman, { maxConcurrent: 1, queueSize: 4 })
  const blocker = await spawnWorkflow(system, stores, slow)
  t.teardown(() => system.stop(blocker))
  const { run } = await startRun(ref, {})
  await ref.ask({ type: 'send', runId: run.runId, event: { type: 'HumanResponseEvent', value: { response: 'early' } } })
  t.match(await waitRun(ref, run.runId), { status: 'completed', result: { response: 'early' } })
})

t.test('an idempotency key returns the run it first made', async t => {
  const ref = await spawnWorkflow(system, stores, threeSteps)
  const first = await startRun(ref, { n: 0 }, { idempotencyKey: 'order-42' })
  const again = await startRun(ref, { n: 0 }, { idempotencyKey: 'order-42' })
  t.equal(again.run.runId, first.run.runId)
  t.equal(again.existing, true)
  t.not((await startRun(ref, { n: 0 }, { idempotencyKey: 'order-43' })).run.runId, first.run.runId)
})

t.test('a run started from an earlier run continues its session state', async t => {
  const ref = await spawnWorkflow(system, stores, tally)
  const first = await waitRun(ref, (await startRun(ref, {})).run.runId)
  t.match(first, { result: { count: 1 }, state: { count: 1 } })
  const second = await waitRun(ref, (await startRun(ref, {}, { continueFrom: first.runId })).run.runId)
  t.match(second, { result: { count: 2 }, sessionId: first.sessionId })
  const fresh = await waitRun(ref, (await startRun(ref, {})).run.runId)
  t.match(fresh, { result: { count: 1 } }, 'a new run starts a new session')
  const vouched = await waitRun(ref, (await startRun(ref, {}, { state: { count: 10 } })).run.runId)
  t.match(vouched, { result: { count: 11 } }, 'a given state starts the session')
  t.match(await startRun(ref, {}, { continueFrom: 'run-missing' }).catch((e: unknown) => e), { code: 'not_found' })
})

t.test('a worker that dies mid-run: the run resumes on another, finished steps ran once, no event twice', async t => {
  const file = join(tmpdir(), `troupe-counter-${process.pid}-${Date.now()}`)
  writeFileSync(file, '')
  t.teardown(() => writeFileSync(file, ''))
  const ref = await spawnWorkflow(system, stores, counterFile)
  const { run } = await startRunSurely(ref, { file, crashOnAttempt: 1 })
  const done = await eventually(
    async () => ((await ref.ask<RunInfo | null>({ type: 'get', runId: run.runId }).catch(() => null))?.status ?? 'running') !== 'running',
    'the run to finish after the worker died',
    30_000,
  ).then(() => ref.ask<RunInfo>({ type: 'get', runId: run.runId }))
  t.match(done, { status: 'completed', result: { steps: 3 } })
  t.same(readFileSync(file, 'utf8').split('\n').filter(Boolean), ['one', 'two', 'three'], 'each step ran exactly once')
  const events = await allEvents(ref, run.runId)
  t.same(events.map(e => e.seq), [0, 1, 2, 3], 'no event duplicated or lost')
  t.same(events.map(e => e.value['step'] ?? e.type), ['one', 'two', 'three', 'StopEvent'])
  t.match(await ref.ask({ type: 'stats' }), { resumed: 1 })
})

t.test('resumable: false fails a run interrupted by its worker dying with interrupted', async t => {
  const file = join(tmpdir(), `troupe-counter-nr-${process.pid}-${Date.now()}`)
  writeFileSync(file, '')
  const ref = await spawnWorkflow(system, stores, counterFile, { resumable: false, name: 'counterFileNotResumable' })
  const { run } = await startRunSurely(ref, { file, crashOnAttempt: 1 })
  await eventually(async () => ((await ref.ask<RunInfo | null>({ type: 'get', runId: run.runId }).catch(() => null))?.status ?? 'running') !== 'running', 'the run to be failed', 30_000)
  t.match(await ref.ask({ type: 'get', runId: run.runId }), { status: 'failed', error: { code: 'interrupted' } })
  t.same(readFileSync(file, 'utf8').split('\n').filter(Boolean), ['one', 'two'])
})

t.test('retention removes a finished run\'s history; a stream asking for it gets a gap event, then how the run ended', async t => {
  const ref = await spawnWorkflow(system, stores, threeSteps, { retentionMs: 1000, name: 'threeStepsRetained' })
  const done = await waitRun(ref, (await startRun(ref, { n: 0 })).run.runId)
  await eventually(async () => ((await ref.ask<RunInfo | null>({ type: 'get', runId: done.runId }))?.trimmedTo ?? 3) >= 3, 'history to be removed', 10_000)
  const events = await allEvents(ref, done.runId)
  t.same(events.map(e => e.type), ['EventsGapEvent', 'StopEvent'])
  t.same(events[1]!.value, { n: 3 })
  await eventually(async () => (await ref.ask({ type: 'get', runId: done.runId })) === null, 'the run row to go', 10_000)
})
