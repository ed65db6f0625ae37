import { createHash, randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import { ActorError, defineBehavior, type BehaviorContext, type SystemHandle } from '../../src/index.js'
import { KvClient } from '../stores/kv-client.js'
import { loadWorkflow, type SessionState, type Workflow } from './define.js'
import { EventFeed, LiveRun } from './live-run.js'
import { GAP_EVENT, TERMINAL_EVENTS, workflowProtocol, type RunEvent, type RunInfo, type StartReply, type WorkflowActorArgs, type WorkflowMessage, type WorkflowStats } from './protocol.js'
import { RunExecution, type RunHistory } from './run-context.js'
import { decodeValue, encodeValue, RunStore, runInfo, type InboxEvent, type RunRow } from './run-store.js'

/**
 * One configured workflow as an actor: admission, durable execution, leases and recovery.
 *
 * Admission: at most `maxConcurrent` runs execute and `queueSize` more wait; past that a start
 * is refused with `backpressure`. A run starts the moment a slot frees (no polling).
 *
 * Durability: a run's row is written before its start is acknowledged, and its execution
 * journals every durable call (see RunExecution). Each run holds a lease (owner, epoch,
 * expiry) renewed every third of `leaseMs`. When the actor starts it resumes the running runs
 * of its own owner at once (their previous holder, this node before a crash or this actor
 * before its worker died, is gone) and those of other owners whose lease lapsed, claiming each
 * with a compare-and-set on owner and epoch, so a run with a live lease is never taken; it
 * looks again for lapsed leases every `leaseMs`.
 *
 * Stopping suspends runs rather than failing them: their executions are closed (nothing more
 * is written for them) and they stay `running` in the store, to resume on the next start.
 */

interface Limits {
  maxConcurrent: number
  queueSize: number
  timeoutMs: number | undefined
  resumable: boolean
  retentionMs: number | undefined
}

interface State {
  readonly args: WorkflowActorArgs
  readonly workflow: Workflow
  readonly store: RunStore
  readonly sessions: KvClient | undefined
  readonly log: Logger
  readonly system: SystemHandle
  limits: Limits
  readonly live: Map<string, LiveRun>
  readonly queue: LiveRun[]
  executing: number
  /** Starts admitted but not yet written: they hold a slot too. */
  reserved: number
  stopped: boolean
  /** A recovery pass is under way: the next one waits for the one after. */
  recovering: boolean
  /** Runs being claimed and read back, until they are held here. */
  readonly resuming: Map<string, Promise<LiveRun | undefined>>
  readonly timers: NodeJS.Timeout[]
  readonly counts: { completed: number; failed: number; cancelled: number; resumed: number }
}

/** How long a refused start is told to wait before trying again. */
const RETRY_AFTER_MS = 1000
/** How often finished runs are checked against `retention`, at most. */
const MAX_SWEEP_INTERVAL_MS = 60_000

export const workflowActor = defineBehavior(import.meta.url, 'workflowActor', {
  protocol: workflowProtocol,
  // Asks wait on runs (`wait`) and streams stay open: they must not hold up starts.
  maxConcurrent: 65_536,
  async init(args: WorkflowActorArgs, ctx): Promise<State> {
    const workflow = await loadWorkflow(args.url, args.exportName)
    const store = new RunStore(args.runs.store, args.runs.table)
    await store.create()
    const state: State = {
      args,
      workflow,
      store,
      sessions: args.sessions === undefined ? undefined : new KvClient(args.sessions.store, args.sessions.namespace),
      log: ctx.log,
      system: ctx.system,
      limits: { maxConcurrent: args.maxConcurrent, queueSize: args.queueSize, timeoutMs: args.timeoutMs, resumable: args.resumable, retentionMs: args.retentionMs },
      live: new Map(),
      queue: [],
      executing: 0,
      reserved: 0,
      stopped: false,
      recovering: false,
      resuming: new Map(),
      timers: [],
      counts: { completed: 0, failed: 0, cancelled: 0, resumed: 0 },
    }
    // Resuming happens after init, so that a restarted actor answers at once.
    setImmediate(() => void recover(state, true))
    state.timers.push(setInterval(() => renewLeases(state), Math.max(100, Math.floor(args.leaseMs / 3))))
    state.timers.push(setInterval(() => void recover(state, false), args.leaseMs))
    scheduleSweep(state)
    for (const timer of state.timers) timer.unref()
    return state
  },
  receive(state, msg: WorkflowMessage, ctx) {
    switch (msg.type) {
      case 'start':
        return start(state, msg)
      case 'wait':
        return waitFor(state, msg.runId, ctx)
      case 'get':
        return getRun(state, msg.runId)
      case 'list':
        return state.store.list(msg, msg.limit ?? 1000).then(rows => rows.map(row => state.live.get(row.run_id)?.info() ?? runInfo(row)))
      case 'send':
        return send(state, msg.runId, msg.event)
      case 'cancel':
        return cancel(state, msg.runId, msg.purge === true)
      case 'events':
        throw new ActorError('bad_message', "'events' is streamed: use ref.stream")
      case 'stats':
        return { running: state.executing, queued: state.queue.length, ...state.counts } satisfies WorkflowStats
      case 'configure': {
        state.limits = { maxConcurrent: msg.maxConcurrent, queueSize: msg.queueSize, timeoutMs: msg.timeoutMs, resumable: msg.resumable, retentionMs: msg.retentionMs }
        startQueued(state)
        return null
      }
    }
  },
  async *stream(state, msg: WorkflowMessage, ctx) {
    if (msg.type !== 'events') throw new ActorError('bad_message', `'${msg.type}' is not streamed`)
    yield* events(state, msg.runId, msg.after, ctx)
  },
  stop(state) {
    state.stopped = true
    for (const timer of state.timers) clearInterval(timer)
    const stopping = new ActorError('stopped', 'the workflow actor stopped; the run resumes when it starts again')
    for (const run of state.live.values()) {
      clearTimeout(run.timeout)
      run.execution?.close(stopping)
      run.abandon(stopping)
    }
    state.live.clear()
    state.queue.length = 0
    state.store.close()
  },
})

// ---- admission ---------------------------------------------------------------------------

async function start(state: State, msg: Extract<WorkflowMessage, { type: 'start' }>): Promise<StartReply> {
  const { args, limits } = state
  const parsed = state.workflow.definition.start.safeParse(msg.startEvent ?? {})
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    const field = ['start_event', ...issue.path.map(String)].join('.')
    throw new ActorError('invalid_request', `${field}: ${issue.message}`, { param: field })
  }
  if (state.executing + state.queue.length + state.reserved >= limits.maxConcurrent + limits.queueSize) {
    throw new ActorError('backpressure', `workflow '${args.name}' runs ${limits.maxConcurrent} at once and queues ${limits.queueSize}; all are taken`, { retryAfterMs: RETRY_AFTER_MS })
  }
  state.reserved++
  try {
    const runId = msg.idempotencyKey === undefined ? `run-${randomUUID()}` : idempotentRunId(args.name, msg.idempotencyKey)
    const session = await sessionFor(state, msg)
    const now = Date.now()
    const row: RunRow = {
      run_id: runId,
      workflow: args.name,
      status: 'running',
      session_id: session.id,
      start_event: parsed.data,
      initial_state: encodeValue(session.state),
      state: null,
      result: null,
      error_code: null,
      error_message: null,
      lease_owner: args.owner,
      lease_epoch: 1,
      lease_expires: now + args.leaseMs,
      attempt: 1,
      created_at: now,
      updated_at: now,
      completed_at: null,
      deadline: limits.timeoutMs === undefined ? null : now + limits.timeoutMs,
      last_seq: -1,
      trimmed_to: -1,
      journal_count: 0,
      inbox_count: 0,
    }
    if (!(await state.store.insertRun(row))) {
      const existing = state.live.get(runId)?.info() ?? (await state.store.getRun(runId).then(found => (found === undefined ? undefined : runInfo(found))))
      if (existing === undefined) throw new ActorError('internal', `run ${runId} conflicts with a run that cannot be read`)
      return { run: existing, existing: true }
    }
    const run = new LiveRun(row, parsed.data)
    state.live.set(runId, run)
    state.queue.push(run)
    return { run: run.info(), existing: false }
  } finally {
    state.reserved--
    startQueued(state)
  }
}

/** The same key always names the same run: a repeated start finds the row the first one wrote. */
function idempotentRunId(workflow: string, key: string): string {
  return `run-${createHash('sha256').update(workflow).update('\0').update(key).digest('hex').slice(0, 32)}`
}

async function sessionFor(state: State, msg: Extract<WorkflowMessage, { type: 'start' }>): Promise<{ id: string; state: SessionState }> {
  if (msg.continueFrom !== undefined) {
    const earlier = state.live.get(msg.continueFrom)?.row ?? (await state.store.getRun(msg.continueFrom))
    if (earlier === undefined) throw new ActorError('not_found', `handler_id: no run '${msg.continueFrom}' to continue`, { param: 'handler_id' })
    const saved = await state.sessions?.get<{ state: SessionState }>(earlier.session_id)
    const fallback = earlier.state ?? earlier.initial_state
    return { id: earlier.session_id, state: saved?.state ?? (decodeValue(fallback) as SessionState) }
  }
  return { id: `session-${randomUUID()}`, state: msg.state ?? {} }
}

function dequeue(state: State, run: LiveRun): void {
  const at = state.queue.indexOf(run)
  if (at !== -1) state.queue.splice(at, 1)
}

function startQueued(state: State): void {
  while (!state.stopped && state.executing < state.limits.maxConcurrent && state.queue.length > 0) execute(state, state.queue.shift()!)
}

// ---- execution ---------------------------------------------------------------------------

function execute(state: State, run: LiveRun): void {
  state.executing++
  const { row } = run
  const execution = new RunExecution({
    runId: row.run_id,
    sessionId: row.session_id,
    attempt: row.attempt,
    state: initialState(run),
    log: state.log.child({ run: row.run_id }),
    history: run.history,
    host: {
      system: state.system,
      models: state.args.models,
      writeJournal: entry => state.store.writeJournal(entry),
      appendEvent: event => run.track(state.store.appendEvent(row.run_id, event).then(() => run.publish(event))),
    },
  })
  run.execution = execution
  for (const event of run.early.splice(0)) execution.deliver(event)
  const deadline = row.deadline
  if (deadline !== null) {
    const message = `the run did not finish within ${deadline - row.created_at} ms`
    run.timeout = setTimeout(() => void finish(state, run, { status: 'failed', code: 'timeout', message }), Math.max(0, deadline - Date.now()))
  }
  Promise.resolve()
    .then(() => state.workflow.definition.run(run.startEvent, execution))
    .then(
      result => finish(state, run, { status: 'completed', result }),
      (error: unknown) => finish(state, run, failure(error)),
    )
    .catch((error: unknown) => state.log.error({ err: error, run: row.run_id }, 'finishing a run failed'))
}

/** The state a run starts from: a resumed run replays from its initial state too (steps restore what they changed). */
function initialState(run: LiveRun): SessionState {
  return decodeValue(run.row.initial_state) as SessionState
}

type Outcome = { status: 'completed'; result: unknown } | { status: 'failed' | 'cancelled'; code: string; message: string }

function failure(error: unknown): Outcome {
  if (error instanceof ActorError) return { status: 'failed', code: error.code, message: error.message }
  return { status: 'failed', code: 'workflow_error', message: error instanceof Error ? error.message : String(error) }
}

/**
 * Ends a run once: closes its execution, writes its terminal event and its row's final status
 * (one transaction: both are written in the same turn), saves the session, and wakes whoever
 * waits on it. The row's update is fenced on the lease: a run another owner claimed since is
 * left to that owner.
 */
async function finish(state: State, run: LiveRun, outcome: Outcome): Promise<void> {
  if (run.finished || state.stopped || !state.live.has(run.runId)) return
  run.finished = true
  clearTimeout(run.timeout)
  const execution = run.execution
  if (execution !== undefined) state.executing--
  else dequeue(state, run)
  execution?.close(new ActorError(outcome.status === 'completed' ? 'stopped' : outcome.status === 'cancelled' ? 'cancelled' : outcome.code, 'the run is over'))
  startQueued(state)

  // The terminal event follows every event already being written, in the log and in streams.
  await run.settled()
  const now = Date.now()
  const finalState = execution?.state ?? initialState(run)
  const seq = (execution?.nextSeq ?? run.history?.eventTypes.length ?? 0)
  const event: RunEvent = { seq, ...terminalEvent(outcome, now - run.row.created_at), at: now }
  const values: Partial<RunRow> = {
    status: outcome.status,
    result: outcome.status === 'completed' ? toStoredResult(outcome.result) : null,
    error_code: outcome.status === 'completed' ? null : outcome.code,
    error_message: outcome.status === 'completed' ? null : outcome.message,
    state: encodeValue(finalState),
    completed_at: now,
    updated_at: now,
    last_seq: seq,
    journal_count: execution?.journalCount ?? run.history?.journal.length ?? 0,
    inbox_count: run.inboxCount,
    lease_owner: null,
    lease_expires: 0,
  }
  const lease = { owner: state.args.owner, epoch: run.row.lease_epoch }
  try {
    const [, held] = await Promise.all([state.store.appendEvent(run.runId, event), state.store.updateRun(run.runId, values, lease)])
    if (held === 0) state.log.warn({ run: run.runId }, 'another owner claimed this run before it finished here; its final status is theirs to write')
    if (state.sessions !== undefined) await state.sessions.set(run.row.session_id, { state: finalState, run_id: run.runId, updated_at: now })
  } catch (error) {
    // The run stays `running` in the store, held by this owner: it resumes on the next start.
    state.log.error({ err: error, run: run.runId }, 'the run finished but its outcome could not be written; it will run again from its journal')
    state.live.delete(run.runId)
    run.abandon(error)
    return
  }
  run.row = { ...run.row, ...values } as RunRow
  state.counts[outcome.status]++
  run.publish(event)
  state.live.delete(run.runId)
  run.settle()
  state.log.debug({ run: run.runId, status: outcome.status }, 'run finished')
}

/** A result is kept as JSON for the protocol: a value that is not an object is wrapped as { result }. */
function toStoredResult(result: unknown): Record<string, unknown> {
  return typeof result === 'object' && result !== null && !Array.isArray(result) ? (result as Record<string, unknown>) : { result: result ?? null }
}

function terminalEvent(outcome: Outcome, elapsedMs: number): Pick<RunEvent, 'type' | 'value'> {
  switch (outcome.status) {
    case 'completed':
      return { type: TERMINAL_EVENTS.completed, value: toStoredResult(outcome.result) }
    case 'cancelled':
      return { type: TERMINAL_EVENTS.cancelled, value: {} }
    case 'failed':
      return {
        type: TERMINAL_EVENTS.failed,
        value: { code: outcome.code, exception: { exception_type: outcome.code, exception_message: outcome.message }, elapsed_seconds: elapsedMs / 1000 },
      }
  }
}

// ---- leases and recovery -------------------------------------------------------------------

/** Renews every held run's lease in one transaction; a run whose lease another owner took is let go. */
function renewLeases(state: State): void {
  if (state.stopped) return
  const expires = Date.now() + state.args.leaseMs
  for (const run of state.live.values()) {
    if (run.finished) continue
    state.store.updateRun(run.runId, { lease_expires: expires }, { owner: state.args.owner, epoch: run.row.lease_epoch }).then(
      held => {
        if (held === 1 || run.finished || state.stopped) return
        state.log.warn({ run: run.runId }, 'lost the lease on a run to another owner; letting it go')
        letGo(state, run, new ActorError('stopped', 'another owner holds this run now'))
      },
      (error: unknown) => state.log.warn({ err: error, run: run.runId }, 'renewing a run lease failed; will retry'),
    )
  }
}

function letGo(state: State, run: LiveRun, reason: ActorError): void {
  if (!state.live.delete(run.runId)) return
  run.finished = true
  clearTimeout(run.timeout)
  if (run.execution !== undefined) state.executing--
  else dequeue(state, run)
  run.execution?.close(reason)
  run.abandon(reason)
  startQueued(state)
}

/**
 * Claims and resumes the running runs of this workflow that nobody holds: at start, those of
 * this owner and those whose lease lapsed; later, only lapsed ones. A run whose workflow is
 * configured `resumable: false` is failed with `interrupted` instead.
 */
async function recover(state: State, atStart: boolean): Promise<void> {
  if (state.stopped || state.recovering) return
  state.recovering = true
  try {
    const { owner, leaseMs } = state.args
    for await (const row of state.store.running(state.args.name)) {
      if (state.stopped) return
      if (state.live.has(row.run_id)) continue
      const mine = atStart && row.lease_owner === owner
      if (!mine && row.lease_owner !== null && row.lease_expires > Date.now()) continue
      const claiming = claimAndLoad(state, row, owner, leaseMs)
      state.resuming.set(row.run_id, claiming)
      const run = await claiming.finally(() => state.resuming.delete(row.run_id))
      if (run === undefined || state.stopped) continue
      if (!state.limits.resumable) {
        await finish(state, run, { status: 'failed', code: 'interrupted', message: 'the run was in flight when its owner stopped, and this workflow is not resumable' })
        continue
      }
      state.counts.resumed++
      state.log.info({ run: run.runId, attempt: run.row.attempt, from: row.lease_owner }, 'resuming a run from its journal')
      startQueued(state)
    }
  } catch (error) {
    if (!state.stopped) state.log.error({ err: error }, 'looking for runs to resume failed; will look again')
  } finally {
    state.recovering = false
  }
}

/**
 * Claims a run and reads its history, then holds it here (queued). Until it does, sends and
 * cancels for the run wait on `state.resuming`, so that an event sent meanwhile is neither
 * written behind the history's back nor numbered twice.
 */
async function claimAndLoad(state: State, row: RunRow, owner: string, leaseMs: number): Promise<LiveRun | undefined> {
  const epoch = await state.store.claim(row, owner, leaseMs)
  if (epoch === undefined || state.stopped) return undefined
  const history = await loadHistory(state, row.run_id)
  if (state.stopped) return undefined
  const run = new LiveRun({ ...row, lease_owner: owner, lease_epoch: epoch, attempt: row.attempt + 1 }, row.start_event, history)
  state.live.set(run.runId, run)
  state.queue.push(run)
  return run
}

async function loadHistory(state: State, runId: string): Promise<RunHistory> {
  const [journal, eventTypes, inbox] = await Promise.all([state.store.journalOf(runId), state.store.eventTypes(runId), state.store.inboxOf(runId)])
  return { journal, eventTypes, inbox }
}

function scheduleSweep(state: State): void {
  const retention = state.limits.retentionMs
  const every = Math.min(MAX_SWEEP_INTERVAL_MS, retention ?? MAX_SWEEP_INTERVAL_MS)
  state.timers.push(setInterval(() => void sweep(state), every))
}

/**
 * Retention: a finished run's events, journal and inbox go `retentionMs` after it finished; its
 * row (status, result) stays as long again, so a stream that asks for the removed events is
 * told they are gone rather than that the run never was.
 */
async function sweep(state: State): Promise<void> {
  const retention = state.limits.retentionMs
  if (retention === undefined || state.stopped) return
  const now = Date.now()
  try {
    for await (const row of state.store.finishedBefore(state.args.name, now - retention)) {
      if (state.stopped) return
      const forget = row.completed_at! < now - 2 * retention
      if (forget || row.trimmed_to < row.last_seq) await state.store.deleteHistory(row, { row: forget })
    }
  } catch (error) {
    state.log.warn({ err: error }, 'removing expired run history failed; will try again')
  }
}

// ---- answering for runs --------------------------------------------------------------------

async function getRun(state: State, runId: string): Promise<RunInfo | null> {
  const live = state.live.get(runId)
  if (live !== undefined) return live.info()
  const row = await state.store.getRun(runId)
  return row === undefined ? null : runInfo(row)
}

async function waitFor(state: State, runId: string, ctx: BehaviorContext<WorkflowMessage>): Promise<RunInfo> {
  const live = state.live.get(runId)
  if (live !== undefined) return live.whenFinished(ctx.signal)
  // Held by another owner (or not yet resumed): watch its row.
  for (let delayMs = 50; ; delayMs = Math.min(delayMs * 2, 1000)) {
    const row = await state.store.getRun(runId)
    if (row === undefined) throw new ActorError('not_found', `no run '${runId}'`)
    if (row.status !== 'running') return runInfo(row)
    const local = state.live.get(runId)
    if (local !== undefined) return local.whenFinished(ctx.signal)
    await pause(delayMs, ctx)
  }
}

/** Inbox appends that lose a race for their sequence number are numbered again this many times. */
const MAX_INBOX_ATTEMPTS = 8

async function send(state: State, runId: string, event: { type: string; value: Record<string, unknown> }): Promise<{ status: 'sent' }> {
  await state.resuming.get(runId)?.catch(() => undefined)
  for (let attempt = 1; ; attempt++) {
    try {
      return await sendOnce(state, runId, event)
    } catch (error) {
      // Another node appended to this run's inbox under the same number: number it again.
      if (!(error instanceof ActorError && error.code === 'conflict') || attempt >= MAX_INBOX_ATTEMPTS) throw error
    }
  }
}

async function sendOnce(state: State, runId: string, event: { type: string; value: Record<string, unknown> }): Promise<{ status: 'sent' }> {
  const live = state.live.get(runId)
  if (live !== undefined) {
    if (live.finished) throw new ActorError('run_over', `run '${runId}' has finished`)
    const inboxEvent = { seq: live.inboxCount++, ...event }
    await state.store.appendInbox(runId, inboxEvent)
    deliver(live, inboxEvent)
    return { status: 'sent' }
  }
  const row = await state.store.getRun(runId)
  if (row === undefined) throw new ActorError('not_found', `no run '${runId}'`)
  if (row.status !== 'running') throw new ActorError('run_over', `run '${runId}' has ${row.status}`)
  // Held elsewhere: the event waits in the inbox, where its holder's next resume finds it.
  const inboxEvent = { seq: (await state.store.inboxOf(runId)).length, ...event }
  await state.store.appendInbox(runId, inboxEvent)
  // Resumed here meanwhile, from a history read before this event was written: hand it over.
  const now = state.live.get(runId)
  if (now !== undefined && !now.finished && inboxEvent.seq >= now.inboxCount) {
    now.inboxCount = inboxEvent.seq + 1
    deliver(now, inboxEvent)
  }
  return { status: 'sent' }
}

function deliver(run: LiveRun, event: InboxEvent): void {
  if (run.execution !== undefined) run.execution.deliver(event)
  else run.early.push(event)
}

async function cancel(state: State, runId: string, purge: boolean): Promise<'cancelled' | 'deleted'> {
  await state.resuming.get(runId)?.catch(() => undefined)
  const live = state.live.get(runId)
  if (live !== undefined && !live.finished) {
    await finish(state, live, { status: 'cancelled', code: 'cancelled', message: 'cancelled by request' })
  } else {
    const row = await state.store.getRun(runId)
    if (row === undefined) throw new ActorError('not_found', `no run '${runId}'`)
    if (row.status === 'running') await cancelElsewhere(state, row)
    else if (!purge) throw new ActorError('not_found', `run '${runId}' is not running (it ${row.status})`)
  }
  if (!purge) return 'cancelled'
  const row = await state.store.getRun(runId)
  if (row !== undefined) await state.store.deleteHistory(row, { row: true })
  return 'deleted'
}

/** Cancels a run another owner holds: claims it (so its holder's next write or renewal finds it gone) and writes it off. */
async function cancelElsewhere(state: State, row: RunRow): Promise<void> {
  const epoch = await state.store.claim(row, state.args.owner, state.args.leaseMs)
  if (epoch === undefined) throw new ActorError('conflict', `run '${row.run_id}' changed hands while being cancelled; try again`)
  const history = await loadHistory(state, row.run_id)
  const run = new LiveRun({ ...row, lease_owner: state.args.owner, lease_epoch: epoch }, row.start_event, history)
  state.live.set(run.runId, run)
  state.queue.push(run)
  await finish(state, run, { status: 'cancelled', code: 'cancelled', message: 'cancelled by request' })
}

/**
 * A run's events above `after`, then its live ones, ending with its terminal event. History
 * comes from the store; a run held here also feeds its new events to the stream, subscribed
 * before the history is read so that nothing falls between the two (a sequence already
 * yielded is skipped). A run held elsewhere is followed through the store.
 */
async function* events(state: State, runId: string, after: number, ctx: BehaviorContext<WorkflowMessage>): AsyncGenerator<RunEvent> {
  let feed: EventFeed | undefined = state.live.get(runId)?.subscribe()
  try {
    let last = after
    const row = feed === undefined ? await state.store.getRun(runId) : undefined
    if (feed === undefined && row === undefined) throw new ActorError('not_found', `no run '${runId}'`)
    // Retention removed a finished run's events, its terminal one too: the gap covers what came
    // before the terminal event, which the row still tells.
    const endTrimmed = row !== undefined && row.status !== 'running' && row.trimmed_to >= row.last_seq
    const gapTo = endTrimmed ? row.last_seq - 1 : (row?.trimmed_to ?? -1)
    if (gapTo > last) {
      yield { seq: gapTo, type: GAP_EVENT, value: { from_sequence: last + 1, to_sequence: gapTo, reason: 'removed by retention' }, at: Date.now() }
      last = gapTo
    }
    if (endTrimmed) {
      if (row.last_seq > last) yield terminalFromRow(row)
      return
    }
    for (let delayMs = 25; ; ) {
      let page: RunEvent[]
      do {
        page = await state.store.eventsAfter(runId, last)
        for (const event of page) {
          yield event
          last = event.seq
          if (isTerminal(event)) return
        }
      } while (page.length > 0)
      if (feed === undefined && state.live.has(runId)) feed = state.live.get(runId)!.subscribe() // resumed here meanwhile
      if (feed !== undefined) break
      const now = await state.store.getRun(runId)
      if (now === undefined) return
      if (now.status !== 'running') {
        // Finished, and its terminal event went with its history: say how it ended.
        if (now.trimmed_to >= now.last_seq && now.last_seq > last) yield terminalFromRow(now)
        return
      }
      await pause(delayMs, ctx)
      delayMs = Math.min(delayMs * 2, 1000)
      if (ctx.signal.aborted) return
    }
    const cancelled = new Promise<void>(resolve => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
    for (;;) {
      const event = await feed.next(cancelled)
      if (event === undefined) return
      if (event.seq <= last) continue
      yield event
      last = event.seq
      if (isTerminal(event)) return
    }
  } finally {
    feed?.close()
  }
}

const TERMINAL_TYPES = new Set<string>(Object.values(TERMINAL_EVENTS))
const isTerminal = (event: RunEvent): boolean => TERMINAL_TYPES.has(event.type)

function terminalFromRow(row: RunRow): RunEvent {
  const outcome: Outcome =
    row.status === 'completed' ? { status: 'completed', result: row.result } : { status: row.status === 'cancelled' ? 'cancelled' : 'failed', code: row.error_code ?? 'workflow_error', message: row.error_message ?? '' }
  return { seq: row.last_seq, ...terminalEvent(outcome, (row.completed_at ?? row.created_at) - row.created_at), at: row.completed_at ?? row.updated_at }
}

/** Waits `ms`, or less if the ask or stream is cancelled. */
function pause(ms: number, ctx: BehaviorContext<WorkflowMessage>): Promise<void> {
  return new Promise(resolve => {
    const done = (): void => {
      clearTimeout(timer)
      ctx.signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    ctx.signal.addEventListener('abort', done, { once: true })
  })
}
