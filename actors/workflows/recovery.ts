import { ActorError } from '../../src/index.js'
import { finish, letGo, startQueued } from './execution.js'
import { LiveRun } from './live-run.js'
import type { RunHistory } from './run-context.js'
import type { RunRow } from './run-store.js'
import type { State } from './actor-state.js'

/**
 * Leases and recovery: renewing the leases of the runs an actor holds, claiming the runs nobody
 * holds and resuming them from their history, and removing finished runs' history past
 * `retention`.
 */

/** How often finished runs are checked against `retention`, at most. */
const MAX_SWEEP_INTERVAL_MS = 60_000

/** Renews every held run's lease in one transaction; a run whose lease another owner took is let go. */
export function renewLeases(state: State): void {
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

/**
 * Claims and resumes the running runs of this workflow that nobody holds: at start, those of
 * this owner and those whose lease lapsed; later, only lapsed ones. A run whose workflow is
 * configured `resumable: false` is failed with `interrupted` instead.
 */
export async function recover(state: State, atStart: boolean): Promise<void> {
  // A draining actor takes no more runs: another owner, or this one's next start, resumes them.
  if (state.stopped || state.draining || state.recovering) return
  state.recovering = true
  try {
    const { owner, leaseMs } = state.args
    for await (const row of state.store.running(state.args.name)) {
      if (state.stopped || state.draining) return
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
export async function claimAndLoad(state: State, row: RunRow, owner: string, leaseMs: number): Promise<LiveRun | undefined> {
  const epoch = await state.store.claim(row, owner, leaseMs)
  if (epoch === undefined || state.stopped) return undefined
  const history = await loadHistory(state, row.run_id)
  if (state.stopped) return undefined
  const run = new LiveRun({ ...row, lease_owner: owner, lease_epoch: epoch, attempt: row.attempt + 1 }, row.start_event, history)
  state.live.set(run.runId, run)
  state.queue.push(run)
  return run
}

export async function loadHistory(state: State, runId: string): Promise<RunHistory> {
  const [journal, eventTypes, inbox] = await Promise.all([state.store.journalOf(runId), state.store.eventTypes(runId), state.store.inboxOf(runId)])
  return { journal, eventTypes, inbox }
}

/** (Re)starts the retention sweep at an interval the retention sets; a changed retention sweeps at once. */
export function scheduleSweep(state: State, now = false): void {
  clearInterval(state.sweepTimer)
  const retention = state.limits.retentionMs
  const every = Math.min(MAX_SWEEP_INTERVAL_MS, retention ?? MAX_SWEEP_INTERVAL_MS)
  state.sweepTimer = setInterval(() => void sweep(state), every)
  state.sweepTimer.unref()
  if (now) void sweep(state)
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

