import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import t from 'tap'
import type { RunEvent, RunInfo, StartReply, WorkflowStats } from '../../actors/workflows/protocol.js'
import { eventually } from '../fixtures/eventually.js'
import { countsThenHolds, holdsThenWaits } from '../fixtures/recovery-workflows.js'
import { drifts, sleepsThenWaits } from '../fixtures/session-workflows.js'
import { startSystem } from '../fixtures/system.js'
import { allEvents, spawnWorkflow, startRunStores, startRunSurely } from '../fixtures/workflow-actor.js'
import { startWorkflowProcess, type WorkflowProcess } from '../fixtures/workflow-process.js'
import { waitsForHuman } from '../fixtures/workflows.js'

/**
 * Recovery of a whole process. One node (a child process: system, LMDB stores, workflow actors)
 * starts a run of each workflow below, each reaching a point it announces (a marker file, a
 * journal entry); the process is then SIGKILLed, and a second one started on the same LMDB
 * directory and owner id. Each test checks what one run did across the kill. The two lives are
 * shared because a process start under tap's TypeScript loader costs seconds.
 */

/** A process start under load can take seconds; runs then resume at once. */
const DEADLINE_MS = 30_000
const SLEEP_MS = 1500

const dir = mkdtempSync(join(tmpdir(), 'troupe-recovery-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const counts = join(dir, 'counts')
writeFileSync(counts, '')
const lines = (): string[] => readFileSync(counts, 'utf8').split('\n').filter(Boolean)
const types = (events: readonly RunEvent[]): string[] => events.map(event => event.type)
const runIdOf = (reply: StartReply): string => reply.run.runId

// The sleeping workflow's actor is spawned last, so that it is up no earlier than the others.
const node = { dataDir: dir, owner: 'recovery-node', workflows: [countsThenHolds, waitsForHuman, holdsThenWaits, sleepsThenWaits] }

// ---- the first life -------------------------------------------------------------------------

const first = await startWorkflowProcess(t, node)
const holdingMarker = join(dir, 'counting-held')
const earlyMarker = join(dir, 'early-held')
const [counting, asking, early] = await Promise.all([
  first.ask<StartReply>(countsThenHolds, { type: 'start', startEvent: { file: counts, marker: holdingMarker, holdOnAttempt: 1 } }).then(runIdOf),
  first.ask<StartReply>(waitsForHuman, { type: 'start', startEvent: { prefix: 'ship it?' } }).then(runIdOf),
  first.ask<StartReply>(holdsThenWaits, { type: 'start', startEvent: { marker: earlyMarker, holdOnAttempt: 1 } }).then(runIdOf),
])
await eventually(() => existsSync(holdingMarker), 'the counting run to hold after step two', DEADLINE_MS)
await eventually(async () => (await first.journal(asking)).some(entry => entry.kind === 'wait'), 'the asking run to wait', DEADLINE_MS)
await eventually(() => existsSync(earlyMarker), 'the early run to hold before it waits', DEADLINE_MS)
const earlySent = await first.ask(holdsThenWaits, { type: 'send', runId: early, event: { type: 'HumanResponseEvent', value: { response: 'early' } } })
const earlyEventsAtSend = types(await first.stored(early))

const sleeping = runIdOf(await first.ask<StartReply>(sleepsThenWaits, { type: 'start', startEvent: { ms: SLEEP_MS } }))
await eventually(async () => (await first.journal(sleeping)).some(entry => entry.kind === 'sleep'), 'the sleep to be journaled', DEADLINE_MS)
const [sleepBegan] = await first.stored(sleeping)
const sleepDue = (await first.journal(sleeping)).find(entry => entry.kind === 'sleep')!.deadline!
// A third of the sleep passes before the kill: a sleep that started over on the restart would
// end that much past the bound its test checks.
await delay(Math.max(0, sleepBegan!.at + SLEEP_MS / 3 - Date.now()))

const countedAtKill = lines()
const killedAt = Date.now()
await first.kill()

// ---- the second life ------------------------------------------------------------------------

const second = await startWorkflowProcess(t, node)

/** Polls until `workflow`'s actor in the second process has resumed its run (just after it starts). */
async function resumed(workflow: Parameters<WorkflowProcess['ask']>[0]): Promise<void> {
  await eventually(async () => (await second.ask<WorkflowStats>(workflow, { type: 'stats' })).resumed >= 1, `${workflow.exportName} to resume its run`, DEADLINE_MS)
}

t.test('a process SIGKILLed mid-run resumes the run when started again on its data: finished steps ran once, each event once', async t => {
  t.same(countedAtKill, ['one', 'two'], 'killed after steps one and two, before three')
  const done = await second.ask<RunInfo>(countsThenHolds, { type: 'wait', runId: counting })
  t.match(done, { status: 'completed', result: { steps: 3 }, error: null, lastSeq: 3 })
  t.same(lines(), ['one', 'two', 'three'], 'each step ran exactly once across both processes')
  const events = await second.events(countsThenHolds, counting)
  t.same(events.map(event => event.seq), [0, 1, 2, 3], 'sequences contiguous from 0: no event duplicated or lost')
  t.same(events.map(event => event.value['step'] ?? event.type), ['one', 'two', 'three', 'StopEvent'])
  t.same(events[3]!.value, { steps: 3 })
  t.match(await second.ask(countsThenHolds, { type: 'stats' }), { resumed: 1, completed: 1 })
})

t.test('a run SIGKILLed while it waits for a human event is still waiting after the restart, has asked once, and the event completes it', async t => {
  await resumed(waitsForHuman)
  t.match(await second.ask<RunInfo>(waitsForHuman, { type: 'get', runId: asking }), { status: 'running', lastSeq: 0 }, 'still running, with its one event')
  t.same(types(await second.stored(asking)), ['InputRequiredEvent'], 'the InputRequiredEvent was not emitted again')
  t.same(
    (await second.journal(asking)).map(entry => [entry.kind, entry.name, entry.done]),
    [['wait', 'HumanResponseEvent', false]],
    'the same wait, still open: not a second one',
  )
  t.same(await second.ask(waitsForHuman, { type: 'send', runId: asking, event: { type: 'HumanResponseEvent', value: { response: 'yes' } } }), { status: 'sent' })
  t.match(await second.ask<RunInfo>(waitsForHuman, { type: 'wait', runId: asking }), { status: 'completed', result: { response: 'yes' } })
  const events = await second.events(waitsForHuman, asking)
  t.same(events.map(event => [event.seq, event.type]), [[0, 'InputRequiredEvent'], [1, 'StopEvent']])
  t.same(events[0]!.value, { prefix: 'ship it?' })
})

t.test('a durable sleep cut by a SIGKILL ends when it was due, not a whole sleep after the restart', async t => {
  // From the kill until the sleeping workflow's actor was up again: the run resumes from then.
  const restartMs = (await second.startedAt(sleepsThenWaits)) - killedAt
  await resumed(sleepsThenWaits)
  await eventually(async () => types(await second.stored(sleeping)).includes('InputRequiredEvent'), 'the sleep to end', DEADLINE_MS)
  const [, asked] = await second.stored(sleeping)
  t.equal((await second.journal(sleeping)).find(entry => entry.kind === 'sleep')?.deadline, sleepDue, 'the resumed sleep kept the deadline journaled before the kill')
  t.ok(asked!.at >= sleepDue, `the sleep was not cut short (it ended ${asked!.at - sleepDue} ms after it was due)`)
  t.ok(
    asked!.at - sleepBegan!.at < SLEEP_MS + restartMs,
    `the sleep did not start over: it ended ${asked!.at - sleepBegan!.at} ms after it began, within the sleep (${SLEEP_MS} ms) plus the restart (${restartMs} ms)`,
  )
  t.same(await second.ask(sleepsThenWaits, { type: 'send', runId: sleeping, event: { type: 'HumanResponseEvent', value: { response: 'on' } } }), { status: 'sent' })
  t.match(await second.ask<RunInfo>(sleepsThenWaits, { type: 'wait', runId: sleeping }), { status: 'completed', result: { response: 'on', attempt: 2 } })
  t.same(types(await second.events(sleepsThenWaits, sleeping)), ['ProgressEvent', 'InputRequiredEvent', 'StopEvent'])
})

t.test('an event acknowledged before the run waits for it survives a SIGKILL: after the restart the wait takes it', async t => {
  t.same(earlySent, { status: 'sent' })
  t.same(earlyEventsAtSend, ['ProgressEvent'], 'the run had not asked yet when the event was acknowledged')
  t.match(await second.ask<RunInfo>(holdsThenWaits, { type: 'wait', runId: early }), { status: 'completed', result: { response: 'early', attempt: 2 } })
  const events = await second.events(holdsThenWaits, early)
  t.same(events.map(event => [event.seq, event.type]), [[0, 'ProgressEvent'], [1, 'InputRequiredEvent'], [2, 'StopEvent']])
  const waits = (await second.journal(early)).filter(entry => entry.kind === 'wait')
  t.match(waits, [{ name: 'HumanResponseEvent', done: true, inbox_seq: 0 }], 'the wait took the event sent before the kill')
})

t.test('a resumed run that makes a different durable call than its journal recorded fails with nondeterministic', async t => {
  const system = await startSystem(t, { workers: 2 })
  const stores = await startRunStores(t, system)
  const ref = await spawnWorkflow(system, stores, drifts)
  const { run } = await startRunSurely(ref, {})
  // The worker dies under the run (drifts exits it after step 'first'): asks fail while the actor restarts.
  const status = async (): Promise<RunInfo | null> => ref.ask<RunInfo | null>({ type: 'get', runId: run.runId }).catch(() => null)
  await eventually(async () => ((await status())?.status ?? 'running') !== 'running', 'the resumed run to end', DEADLINE_MS)
  t.match(await status(), { status: 'failed', result: null, error: { code: 'nondeterministic', message: /step 'first' and is now step 'other'/ } })
  t.match(await allEvents(ref, run.runId), [{ seq: 0, type: 'WorkflowFailedEvent', value: { code: 'nondeterministic' } }])
  t.match(await ref.ask({ type: 'stats' }), { resumed: 1, failed: 1 })
})
