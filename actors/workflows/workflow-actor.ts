import { createHash } from 'node:crypto'
import { ActorError, defineBehavior, type BehaviorContext } from '../../src/index.js'
import { KvClient } from '../stores/kv-client.js'
import { timeOrderedUuid } from '../stores/time-ordered-id.js'
import { loadWorkflow, type SessionState } from './define.js'
import type { State } from './actor-state.js'
import { finish, letGo, startQueued } from './execution.js'
import { LiveRun } from './live-run.js'
import { workflowProtocol, type DrainReport, type RunInfo, type StartReply, type WorkflowActorArgs, type WorkflowMessage, type WorkflowStats } from './protocol.js'
import { claimAndLoad, recover, renewLeases, scheduleSweep } from './recovery.js'
import { events, pause } from './run-events.js'
import { decodeValue, encodeValue, newRunRow, RunStore, runInfo, type InboxEvent, type RunRow } from './run-store.js'

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
 * with a compare-and-set on owner, epoch and expiry, so a run with a live lease is never taken;
 * it looks again for lapsed leases every `leaseMs` (recovery.ts). A run's life from the queue
 * to its end is in execution.ts, its event stream in run-events.ts.
 *
 * Stopping suspends runs rather than failing them: their executions are closed (nothing more
 * is written for them) and they stay `running` in the store, to resume on the next start.
 */

/** How long a refused start is told to wait before trying again. */
const RETRY_AFTER_MS = 1000

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
      draining: false,
      recovering: false,
      resuming: new Map(),
      timers: [],
      sweepTimer: undefined,
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
      case 'drain':
        return drain(state, msg.timeoutMs)
      case 'configure': {
        const retentionChanged = state.limits.retentionMs !== msg.retentionMs
        state.limits = { maxConcurrent: msg.maxConcurrent, queueSize: msg.queueSize, timeoutMs: msg.timeoutMs, resumable: msg.resumable, retentionMs: msg.retentionMs }
        if (retentionChanged) scheduleSweep(state, true)
        startQueued(state)
        return null
      }
    }
  },
  async *stream(state, msg: WorkflowMessage, ctx) {
    switch (msg.type) {
      case 'events':
        return yield* events(state, msg.runId, msg.after, ctx)
      case 'start': {
        // Admission, then the end: one message for a caller that waits for the run (POST /run).
        const reply = await start(state, msg)
        yield reply
        if (reply.run.status === 'running') yield await waitFor(state, reply.run.runId, ctx)
        return
      }
      default:
        throw new ActorError('bad_message', `'${msg.type}' is not streamed`)
    }
  },
  async stop(state) {
    state.stopped = true
    for (const timer of state.timers) clearInterval(timer)
    clearInterval(state.sweepTimer)
    const stopping = new ActorError('stopped', 'the workflow actor stopped; the run resumes when it starts again')
    const held = [...state.live.values()]
    for (const run of held) {
      clearTimeout(run.timeout)
      run.execution?.close(stopping)
      run.abandon(stopping)
    }
    state.live.clear()
    state.queue.length = 0
    await releaseLeases(state, held)
    await state.store.close()
  },
})

// ---- admission ---------------------------------------------------------------------------

/** How often a drain looks again at the runs it waits for. */
const DRAIN_POLL_MS = 10

async function drain(state: State, timeoutMs: number): Promise<DrainReport> {
  state.draining = true
  const deadline = Date.now() + timeoutMs
  const before = state.counts.completed + state.counts.failed + state.counts.cancelled
  // Executing and not parked in a durable wait, or finishing: its outcome is being written.
  const busy = (): LiveRun[] => [...state.live.values()].filter(run => run.execution !== undefined && (run.finished || !run.execution.parked))
  while (busy().length > 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, Math.min(DRAIN_POLL_MS, deadline - Date.now())))
  const report: DrainReport = {
    finished: state.counts.completed + state.counts.failed + state.counts.cancelled - before,
    remaining: state.live.size,
    cutOff: busy().length,
  }
  state.log.info({ workflow: state.args.name, ...report }, 'drained')
  return report
}

/**
 * Gives up the leases of the runs let go at a stop (the expiry set to now, the owner kept): the
 * next start of this node claims them at once anyway, and another node need not wait out the
 * lease. A failure is logged and costs only that wait.
 */
async function releaseLeases(state: State, runs: readonly LiveRun[]): Promise<void> {
  if (runs.length === 0) return
  const results = await Promise.allSettled(runs.map(run => state.store.updateRun(run.runId, { lease_expires: 0 }, { owner: state.args.owner, epoch: run.row.lease_epoch })))
  const failed = results.filter(result => result.status === 'rejected').length
  if (failed > 0) state.log.warn({ workflow: state.args.name, failed }, 'some leases could not be released at stop; those runs resume once their leases lapse')
}

async function start(state: State, msg: Extract<WorkflowMessage, { type: 'start' }>): Promise<StartReply> {
  const { args, limits } = state
  const parsed = state.workflow.definition.start.safeParse(msg.startEvent ?? {})
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    const field = ['start_event', ...issue.path.map(String)].join('.')
    throw new ActorError('invalid_request', `${field}: ${issue.message}`, { param: field })
  }
  if (state.draining) throw new ActorError('stopped', `workflow '${args.name}' is shutting down; start the run again once it is back`, { retryAfterMs: RETRY_AFTER_MS })
  if (state.executing + state.queue.length + state.reserved >= limits.maxConcurrent + limits.queueSize) {
    throw new ActorError('backpressure', `workflow '${args.name}' runs ${limits.maxConcurrent} at once and queues ${limits.queueSize}; all are taken`, { retryAfterMs: RETRY_AFTER_MS })
  }
  state.reserved++
  try {
    const runId = msg.idempotencyKey === undefined ? `run-${timeOrderedUuid()}` : idempotentRunId(args.name, msg.idempotencyKey)
    const session = await sessionFor(state, msg)
    const now = Date.now()
    const row = newRunRow({
      runId,
      workflow: args.name,
      sessionId: session.id,
      startEvent: parsed.data,
      initialState: encodeValue(session.state),
      owner: args.owner,
      leaseMs: args.leaseMs,
      deadline: limits.timeoutMs === undefined ? null : now + limits.timeoutMs,
      at: now,
    })
    state.args.runs.store.prewake()
    if (msg.idempotencyKey !== undefined) {
      // A repeated key names a run that exists: the row's insert says which, before anything runs.
      if (!(await state.store.insertRun(row))) {
        const existing = state.live.get(runId)?.info() ?? (await state.store.getRun(runId).then(found => (found === undefined ? undefined : runInfo(found))))
        if (existing === undefined) throw new ActorError('internal', `run ${runId} conflicts with a run that cannot be read`)
        return { run: existing, existing: true }
      }
      return { run: admit(state, row, parsed.data).info(), existing: false }
    }
    // A fresh id cannot collide, so the run begins while its row commits: its journal writes go
    // to the same store after the row (often in its commit), and the start is acknowledged only
    // once the row is durable. A row that cannot be written stops the run before it is answered.
    const inserting = state.store.writeRun(row)
    const run = admit(state, row, parsed.data)
    startQueued(state)
    try {
      await inserting
    } catch (error) {
      letGo(state, run, error instanceof ActorError ? error : new ActorError('internal', String(error)))
      throw error
    }
    return { run: run.info(), existing: false }
  } finally {
    state.reserved--
    startQueued(state)
  }
}

/** Holds a new run here, queued: it executes as soon as a slot is free. */
function admit(state: State, row: RunRow, startEvent: unknown): LiveRun {
  const run = new LiveRun(row, startEvent)
  state.live.set(row.run_id, run)
  state.queue.push(run)
  return run
}

/** The same key always names the same run: a repeated start finds the row the first one wrote. */
function idempotentRunId(workflow: string, key: string): string {
  return `run-${createHash('sha256').update(workflow).update('\0').update(key).digest('hex').slice(0, 32)}`
}

async function sessionFor(state: State, msg: Extract<WorkflowMessage, { type: 'start' }>): Promise<{ id: string; state: SessionState }> {
  if (msg.continueFrom !== undefined) {
    const earlier = state.live.get(msg.continueFrom)?.row ?? (await state.store.getRun(msg.continueFrom))
    if (earlier === undefined) throw new ActorError('not_found', `handler_id: no run '${msg.continueFrom}' to continue`, { param: 'handler_id' })
    // A finished run's row holds the state it ended with; the session store, the latest a run of
    // the session saved, serves for one still running.
    if (earlier.state !== null) return { id: earlier.session_id, state: decodeValue(earlier.state) as SessionState }
    const saved = await state.sessions?.get<{ state: SessionState }>(earlier.session_id)
    return { id: earlier.session_id, state: saved?.state ?? (decodeValue(earlier.initial_state) as SessionState) }
  }
  return { id: `session-${timeOrderedUuid()}`, state: msg.state ?? {} }
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
  if (live !== undefined) return live.whenFinished(ctx.cancellation)
  // Held by another owner (or not yet resumed): watch its row.
  for (let delayMs = 50; ; delayMs = Math.min(delayMs * 2, 1000)) {
    const row = await state.store.getRun(runId)
    if (row === undefined) throw new ActorError('not_found', `no run '${runId}'`)
    if (row.status !== 'running') return runInfo(row)
    const local = state.live.get(runId)
    if (local !== undefined) return local.whenFinished(ctx.cancellation)
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
    await live?.written() // a run being finished: its row says how, once written
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
  const run = await claimAndLoad(state, row, state.args.owner, state.args.leaseMs)
  if (run === undefined) throw new ActorError('conflict', `run '${row.run_id}' changed hands while being cancelled; try again`)
  await finish(state, run, { status: 'cancelled', code: 'cancelled', message: 'cancelled by request' })
}

