/**
 * What troupe writes for a workflow run, for the raw baselines to write with lmdb-js directly:
 * rows of the same shapes and sizes as run-store.ts's, under keys laid out as sql_lmdb lays out
 * a row's (['r', table, ...primary key]), in databases opened as the backends open theirs.
 */
import { open, type Key, type RootDatabase } from 'lmdb'
import { timeOrderedUuid } from '../actors/stores/time-ordered-id.js'
import { newRunRow as runRow, type JournalEntry, type RunRow } from '../actors/workflows/run-store.js'

export const RUNS_TABLE = 'workflow_runs'
/** msgpack of {} as base64: an empty session state, as run-store.ts encodes it. */
const EMPTY_STATE = 'gA=='

/** Opened as sql_lmdb opens its database (actors/stores/table/lmdb.ts). */
export const openLikeSqlLmdb = (path: string, mapSizeMb: number): RootDatabase<unknown, Key> =>
  open<unknown, Key>({ path, mapSize: mapSizeMb * 1024 * 1024, compression: false })

export const runKey = (runId: string): Key => ['r', RUNS_TABLE, runId]
export const journalKey = (runId: string, idx: number): Key => ['r', `${RUNS_TABLE}_journal`, runId, idx]
export const eventKey = (runId: string, seq: number): Key => ['r', `${RUNS_TABLE}_events`, runId, seq]

/** A new run's row, as the workflow actor inserts it when the run starts (its ids time-ordered, as the actor makes them). */
export function newRunRow(workflow: string, startEvent: unknown): RunRow {
  return runRow({ runId: `run-${timeOrderedUuid()}`, workflow, sessionId: `session-${timeOrderedUuid()}`, startEvent, initialState: EMPTY_STATE, owner: 'bench-node', leaseMs: 15_000, deadline: null })
}

/** A step's journal row; `value` stands for the base64 msgpack of its result (a few bytes). */
export function stepEntry(runId: string, idx: number, name: string, value: string): JournalEntry {
  return { run_id: runId, idx, kind: 'step', name, value, state: null, done: true, timed_out: false, deadline: null, inbox_seq: null, at: Date.now() }
}

/** The terminal event and the run's final row, which the workflow actor writes in one transaction. */
export function finished(row: RunRow, result: Record<string, unknown>, steps: number): { event: Record<string, unknown>; row: RunRow } {
  const now = Date.now()
  return {
    event: { run_id: row.run_id, seq: 0, type: 'StopEvent', value: result, at: now },
    row: { ...row, status: 'completed', result, state: EMPTY_STATE, completed_at: now, updated_at: now, last_seq: 0, journal_count: steps, lease_owner: null, lease_expires: 0 },
  }
}
