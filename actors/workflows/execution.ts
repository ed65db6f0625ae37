import { ActorError } from '../../src/index.js'
import type { SessionState } from './define.js'
import type { LiveRun } from './live-run.js'
import { TERMINAL_EVENTS, type RunEvent } from './protocol.js'
import { RunExecution } from './run-context.js'
import { decodeValue, encodeValue, type RunRow } from './run-store.js'
import type { State } from './actor-state.js'

/**
 * A run's life in its actor: from the queue to executing, to finished (its terminal event and
 * final status written once) or let go (stopping, lease lost: nothing written, it resumes
 * wherever it is claimed next).
 */

export function dequeue(state: State, run: LiveRun): void {
  const at = state.queue.indexOf(run)
  if (at !== -1) state.queue.splice(at, 1)
}

export function startQueued(state: State): void {
  while (!state.stopped && !state.draining && state.executing < state.limits.maxConcurrent && state.queue.length > 0) execute(state, state.queue.shift()!)
}

function execute(state: State, run: LiveRun): void {
  state.executing++
  const { row } = run
  const execution = new RunExecution({
    runId: row.run_id,
    sessionId: row.session_id,
    attempt: row.attempt,
    state: initialState(run),
    stateBytes: row.initial_state,
    log: state.log,
    history: run.history,
    host: {
      system: state.system,
      models: state.args.models,
      writeJournal: entry => run.track(state.store.writeJournal(entry)),
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
export function initialState(run: LiveRun): SessionState {
  return decodeValue(run.row.initial_state) as SessionState
}

export type Outcome = { status: 'completed'; result: unknown } | { status: 'failed' | 'cancelled'; code: string; message: string }

export function failure(error: unknown): Outcome {
  if (error instanceof ActorError) return { status: 'failed', code: error.code, message: error.message }
  return { status: 'failed', code: 'workflow_error', message: error instanceof Error ? error.message : String(error) }
}

/**
 * Ends a run once: closes its execution, writes its terminal event and its row's final status
 * (one transaction: both are written in the same turn), saves the session, and wakes whoever
 * waits on it. The row's update is fenced on the lease: a run another owner claimed since is
 * left to that owner.
 */
export async function finish(state: State, run: LiveRun, outcome: Outcome): Promise<void> {
  if (run.finished || state.stopped || !state.live.has(run.runId)) return
  run.finished = true
  clearTimeout(run.timeout)
  const execution = run.execution
  if (execution !== undefined) state.executing--
  else dequeue(state, run)
  execution?.close(new ActorError(outcome.status === 'completed' ? 'stopped' : outcome.status === 'cancelled' ? 'cancelled' : outcome.code, 'the run is over'))
  startQueued(state)

  // The terminal event follows every event and journal entry already being written.
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
  const final = { ...run.row, ...values } as RunRow
  // The session is saved beside the outcome, not after it, and only when the run changed it:
  // a run continuing the session reads a finished run's state from its row.
  const session = state.sessions !== undefined && values.state !== run.row.initial_state ? state.sessions.set(run.row.session_id, { state: finalState, run_id: run.runId, updated_at: now }) : undefined
  try {
    const [, held] = await Promise.all([state.store.appendEvent(run.runId, event), state.store.updateRun(run.runId, values, lease), session])
    if (held === 0) state.log.warn({ run: run.runId }, 'another owner claimed this run before it finished here; its final status is theirs to write')
  } catch (error) {
    // The run stays `running` in the store, held by this owner: it resumes on the next start.
    state.log.error({ err: error, run: run.runId }, 'the run finished but its outcome could not be written; it will run again from its journal')
    state.live.delete(run.runId)
    run.abandon(error)
    return
  }
  state.counts[outcome.status]++
  run.publish(event)
  state.live.delete(run.runId)
  run.settle(final)
  state.log.debug({ run: run.runId, status: outcome.status }, 'run finished')
}

/** A result is kept as JSON for the protocol: a value that is not an object is wrapped as { result }. */
function toStoredResult(result: unknown): Record<string, unknown> {
  return typeof result === 'object' && result !== null && !Array.isArray(result) ? (result as Record<string, unknown>) : { result: result ?? null }
}

export function terminalEvent(outcome: Outcome, elapsedMs: number): Pick<RunEvent, 'type' | 'value'> {
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

/** Lets go of a run without finishing it: its execution is closed and nothing more is written for it here. */
export function letGo(state: State, run: LiveRun, reason: ActorError): void {
  if (!state.live.delete(run.runId)) return
  run.finished = true
  clearTimeout(run.timeout)
  if (run.execution !== undefined) state.executing--
  else dequeue(state, run)
  run.execution?.close(reason)
  run.abandon(reason)
  startQueued(state)
}
