import { pack, unpack } from 'msgpackr'
import { ActorError, type ActorRef } from '../../src/index.js'
import { BatchWriter } from '../stores/batch-writer.js'
import type { RowPage, TableMessage, TableSpec, WriteOp } from '../stores/protocol.js'
import { putOp } from '../stores/table/rows.js'
import type { RunEvent, RunInfo, RunStatus } from './protocol.js'

/**
 * The durable side of workflow runs, on any table backend (`storage.stores.runs`): four tables
 * named after the configured one.
 *
 * - `<t>`: one row per run: status, start event, result or error, lease, and counters.
 * - `<t>_events`: the event log, keyed (run_id, seq): append-only, never rewritten.
 * - `<t>_journal`: durable calls, keyed (run_id, idx): steps with their results, waits and
 *   timers with their deadlines.
 * - `<t>_inbox`: events sent into a run, keyed (run_id, seq), kept until the run's history goes.
 *
 * Journal values and session state are msgpack, kept as base64 text so that they come back
 * exactly on every backend (a json column on Postgres would turn a Date into a string). Writes
 * go through the batched writer (stores/batch-writer.ts), each durable: a step is reported done
 * only once its journal entry is committed and fsynced. Rows are encoded once, here, on the
 * workflow's thread; writes made in one turn, and those made while a commit is under way,
 * share one transaction, so concurrent runs share commits.
 */

export interface RunRow {
  run_id: string
  workflow: string
  status: RunStatus
  session_id: string
  start_event: unknown
  /** The state the run began with (base64 msgpack). */
  initial_state: string
  /** The state it ended with (base64 msgpack); null while it runs. */
  state: string | null
  result: unknown
  error_code: string | null
  error_message: string | null
  lease_owner: string | null
  /** Bumped by every claim: a renewal or a write fenced on an older epoch finds nothing. */
  lease_epoch: number
  lease_expires: number
  /** Executions so far: 1 once started, one more per resume. */
  attempt: number
  created_at: number
  updated_at: number
  completed_at: number | null
  /** When the run times out (epoch ms), or null. */
  deadline: number | null
  /** Sequence of the last event written; -1 before the first. */
  last_seq: number
  /** Events at or below this sequence were removed by retention; -1 when none were. */
  trimmed_to: number
  /** Journal entries and inbox events written, for removing a run's history by key. */
  journal_count: number
  inbox_count: number
}

export interface JournalEntry {
  run_id: string
  idx: number
  kind: 'step' | 'wait' | 'sleep'
  name: string
  /** base64 msgpack: a step's result, a wait's event value. */
  value: string | null
  /** base64 msgpack of ctx.state after a step, when the step changed it. */
  state: string | null
  /** A wait received its event (or timed out, with `timed_out`); steps are written done. */
  done: boolean
  timed_out: boolean
  /** A wait's or a sleep's end (epoch ms); null for a wait without a timeout. */
  deadline: number | null
  /** The inbox event a wait consumed. */
  inbox_seq: number | null
  at: number
}

export interface InboxEvent {
  readonly seq: number
  readonly type: string
  readonly value: Record<string, unknown>
}

export const encodeValue = (value: unknown): string => {
  try {
    return Buffer.from(pack(value)).toString('base64')
  } catch (error) {
    throw new ActorError('unencodable_value', `a journaled value cannot be encoded as msgpack: ${(error as Error).message}`)
  }
}
export const decodeValue = (text: string): unknown => unpack(Buffer.from(text, 'base64'))

const PAGE = 1000
/** At most this many writes share one transaction. */
const MAX_BATCH = 512
/**
 * Writes queued or in flight, at most; past it a write waits for room (a run slows down) up to
 * WRITE_WAIT_MS, then fails with `backpressure`.
 */
const MAX_QUEUE = 16_384
const WRITE_WAIT_MS = 60_000
/** A write the store fails transiently (down, restarting) is tried this often before the run gives it up. */
const MAX_ATTEMPTS = 40

export class RunStore {
  readonly runs: string
  readonly events: string
  readonly journal: string
  readonly inbox: string
  readonly #store: ActorRef<TableMessage>
  readonly #writer: BatchWriter
  readonly #specs: Map<string, TableSpec>

  constructor(store: ActorRef<TableMessage>, table: string) {
    this.#store = store
    this.runs = table
    this.events = `${table}_events`
    this.journal = `${table}_journal`
    this.inbox = `${table}_inbox`
    this.#specs = new Map(this.#tables().map(spec => [spec.name, spec]))
    this.#writer = new BatchWriter(store, { maxQueue: MAX_QUEUE, writers: 4, maxBatch: MAX_BATCH, maxAttempts: MAX_ATTEMPTS })
  }

  /** Creates the tables (idempotent: the backends keep a table's spec and rows). */
  async create(): Promise<void> {
    for (const table of this.#specs.values()) await this.#store.ask({ type: 'createTable', table })
  }

  #tables(): TableSpec[] {
    const text = { type: 'text' } as const
    const integer = { type: 'integer' } as const
    const nullable = <T extends object>(spec: T) => ({ ...spec, nullable: true })
    return [
      {
        name: this.runs,
        columns: {
          run_id: text,
          workflow: text,
          status: text,
          session_id: text,
          start_event: { type: 'json' },
          initial_state: text,
          state: nullable(text),
          result: { type: 'json', nullable: true },
          error_code: nullable(text),
          error_message: nullable(text),
          lease_owner: nullable(text),
          lease_epoch: integer,
          lease_expires: integer,
          attempt: integer,
          created_at: integer,
          updated_at: integer,
          completed_at: nullable(integer),
          deadline: nullable(integer),
          last_seq: integer,
          trimmed_to: integer,
          journal_count: integer,
          inbox_count: integer,
        },
        primaryKey: ['run_id'],
        // Recovery and retention read a workflow's runs by status; listings walk the runs newest
        // first. Every index is written with each new row, so no more than these.
        indexes: [['created_at'], ['workflow', 'status', 'created_at']],
      },
      {
        name: this.events,
        columns: { run_id: text, seq: integer, type: text, value: { type: 'json' }, at: integer },
        primaryKey: ['run_id', 'seq'],
      },
      {
        name: this.journal,
        columns: {
          run_id: text,
          idx: integer,
          kind: text,
          name: text,
          value: nullable(text),
          state: nullable(text),
          done: { type: 'boolean' },
          timed_out: { type: 'boolean' },
          deadline: nullable(integer),
          inbox_seq: nullable(integer),
          at: integer,
        },
        primaryKey: ['run_id', 'idx'],
      },
      {
        name: this.inbox,
        columns: { run_id: text, seq: integer, type: text, value: { type: 'json' }, at: integer },
        primaryKey: ['run_id', 'seq'],
      },
    ]
  }

  // ---- writes ------------------------------------------------------------------------------

  /**
   * Inserts a new run's row on its own (not batched), so that a conflict answers for this run
   * only: false when the run id exists already (a repeated idempotency key).
   */
  async insertRun(row: RunRow): Promise<boolean> {
    try {
      await this.#store.ask({ type: 'insert', table: this.runs, row: row as unknown as Record<string, unknown> })
      return true
    } catch (error) {
      if (error instanceof ActorError && error.code === 'conflict') return false
      throw error
    }
  }

  /** A new run's row, batched with this turn's writes: for a fresh run id only, which no row has. */
  writeRun(row: RunRow): Promise<number> {
    return this.#put(this.runs, row as unknown as Record<string, unknown>, 'insert')
  }

  appendEvent(runId: string, event: RunEvent): Promise<number> {
    return this.#put(this.events, { run_id: runId, seq: event.seq, type: event.type, value: event.value, at: event.at }, 'insert')
  }

  writeJournal(entry: JournalEntry): Promise<number> {
    return this.#put(this.journal, entry as unknown as Record<string, unknown>, 'upsert')
  }

  appendInbox(runId: string, event: InboxEvent): Promise<number> {
    return this.#put(this.inbox, { run_id: runId, seq: event.seq, type: event.type, value: event.value, at: Date.now() }, 'insert')
  }

  /** A row checked and encoded here, once (putOp), and written; a bad one is refused (a rejection, as any write's) before anything is queued. */
  #put(table: string, row: Record<string, unknown>, mode: 'insert' | 'upsert'): Promise<number> {
    let op: WriteOp
    try {
      op = putOp(this.#specs.get(table)!, row, mode)
    } catch (error) {
      return Promise.reject(error)
    }
    return this.write(op)
  }

  /**
   * Updates a run's row only while `lease` still holds it: 1 if it did, 0 if another owner
   * claimed it since (the caller has lost the run and must stop writing for it).
   */
  updateRun(runId: string, values: Partial<RunRow>, lease?: { owner: string; epoch: number }): Promise<number> {
    const where: Record<string, unknown> = lease === undefined ? { run_id: runId } : { run_id: runId, lease_owner: lease.owner, lease_epoch: lease.epoch }
    return this.write({ type: 'update', table: this.runs, where, values: values as Record<string, unknown> })
  }

  /**
   * Claims a run from the lease it was seen with (compare-and-set on owner, epoch and expiry):
   * the new epoch when this owner has it now, undefined when someone changed the lease first.
   * The expiry is compared too because a renewal changes only it: a claim from a row read
   * before the holder renewed must not take the lease it renewed.
   */
  async claim(row: RunRow, owner: string, leaseMs: number): Promise<number | undefined> {
    const epoch = row.lease_epoch + 1
    const where: Record<string, unknown> = { run_id: row.run_id, status: 'running', lease_owner: row.lease_owner, lease_epoch: row.lease_epoch, lease_expires: row.lease_expires }
    const now = Date.now()
    const count = await this.write({ type: 'update', table: this.runs, where, values: { lease_owner: owner, lease_epoch: epoch, lease_expires: now + leaseMs, attempt: row.attempt + 1, updated_at: now } })
    return count === 1 ? epoch : undefined
  }

  /** A durable write, batched with the others of this turn into one transaction. Resolves with its count of rows. */
  write(op: WriteOp): Promise<number> {
    return this.#writer.write(op, { durable: true, waitMs: WRITE_WAIT_MS }).done
  }

  /** Refuses writes from now on (the actor is stopping) and waits for those already made to land. */
  close(): Promise<void> {
    return this.#writer.close()
  }

  // ---- reads -------------------------------------------------------------------------------

  async getRun(runId: string): Promise<RunRow | undefined> {
    const row = await this.#store.ask<RunRow | null>({ type: 'fetchOne', table: this.runs, where: { run_id: runId } })
    return row ?? undefined
  }

  /** Runs of `workflow` that are running (whoever holds them), oldest first. */
  async *running(workflow: string): AsyncGenerator<RunRow> {
    yield* this.#pages(this.runs, { workflow, status: 'running' }, [{ column: 'created_at', direction: 'asc' }])
  }

  /** Finished runs of `workflow` that completed before `before`, oldest first. */
  async *finishedBefore(workflow: string, before: number): AsyncGenerator<RunRow> {
    for (const status of ['completed', 'failed', 'cancelled'] as const) {
      for await (const row of this.#pages<RunRow>(this.runs, { workflow, status }, [{ column: 'created_at', direction: 'asc' }])) {
        if (row.completed_at !== null && row.completed_at < before) yield row
      }
    }
  }

  /** Newest first, at most `limit`, any of the statuses and workflows given. */
  async list(filter: { status?: readonly RunStatus[] | undefined; workflow?: readonly string[] | undefined }, limit: number): Promise<RunRow[]> {
    const statuses: Array<RunStatus | undefined> = filter.status === undefined || filter.status.length === 0 ? [undefined] : [...new Set(filter.status)]
    const workflows: Array<string | undefined> = filter.workflow === undefined || filter.workflow.length === 0 ? [undefined] : [...new Set(filter.workflow)]
    const rows: RunRow[] = []
    for (const status of statuses) {
      for (const workflow of workflows) {
        const where: Record<string, unknown> = {}
        if (status !== undefined) where['status'] = status
        if (workflow !== undefined) where['workflow'] = workflow
        const page = await this.#store.ask<RowPage>({ type: 'fetchAll', table: this.runs, where, orderBy: [{ column: 'created_at', direction: 'desc' }], limit })
        rows.push(...(page.rows as unknown as RunRow[]))
      }
    }
    rows.sort((a, b) => b.created_at - a.created_at || (a.run_id < b.run_id ? 1 : -1))
    return rows.slice(0, limit)
  }

  /** Events of a run with a sequence above `after`, in order, up to `limit`. */
  async eventsAfter(runId: string, after: number, limit = PAGE): Promise<RunEvent[]> {
    const page = await this.#store.ask<RowPage>({
      type: 'fetchAll',
      table: this.events,
      where: { run_id: runId },
      orderBy: [{ column: 'seq', direction: 'asc' }],
      limit,
      ...(after >= 0 ? { afterRow: { run_id: runId, seq: after } } : {}),
    })
    return page.rows.map(row => ({ seq: row['seq'] as number, type: row['type'] as string, value: row['value'] as Record<string, unknown>, at: row['at'] as number }))
  }

  async journalOf(runId: string): Promise<JournalEntry[]> {
    const entries: JournalEntry[] = []
    for await (const row of this.#pages<JournalEntry>(this.journal, { run_id: runId }, [{ column: 'idx', direction: 'asc' }])) entries.push(row)
    return entries
  }

  async inboxOf(runId: string): Promise<InboxEvent[]> {
    const events: InboxEvent[] = []
    for await (const row of this.#pages<Record<string, unknown>>(this.inbox, { run_id: runId }, [{ column: 'seq', direction: 'asc' }])) {
      events.push({ seq: row['seq'] as number, type: row['type'] as string, value: row['value'] as Record<string, unknown> })
    }
    return events
  }

  /** The types of a run's events, in order (a resumed run checks its emits against them). */
  async eventTypes(runId: string): Promise<string[]> {
    const types: string[] = []
    for await (const row of this.#pages<Record<string, unknown>>(this.events, { run_id: runId }, [{ column: 'seq', direction: 'asc' }])) types.push(row['type'] as string)
    return types
  }

  /**
   * Removes a finished run's events, journal and inbox by key (its row's counters say how many),
   * in transactions of MAX_BATCH. With `row` the run's row goes too; without, the row stays
   * (its status and result still answer) and records that its events up to last_seq are gone.
   */
  async deleteHistory(run: RunRow, options: { readonly row: boolean }): Promise<void> {
    const ops: WriteOp[] = []
    const id = run.run_id
    for (let seq = run.trimmed_to + 1; seq <= run.last_seq; seq++) ops.push({ type: 'delete', table: this.events, where: { run_id: id, seq } })
    for (let idx = 0; idx < run.journal_count; idx++) ops.push({ type: 'delete', table: this.journal, where: { run_id: id, idx } })
    for (let seq = 0; seq < run.inbox_count; seq++) ops.push({ type: 'delete', table: this.inbox, where: { run_id: id, seq } })
    if (options.row) ops.push({ type: 'delete', table: this.runs, where: { run_id: id } })
    else ops.push({ type: 'update', table: this.runs, where: { run_id: id }, values: { trimmed_to: run.last_seq, journal_count: 0, inbox_count: 0, updated_at: Date.now() } })
    for (let at = 0; at < ops.length; at += MAX_BATCH) await this.#store.ask({ type: 'transaction', ops: ops.slice(at, at + MAX_BATCH) })
  }

  async *#pages<R>(table: string, where: Record<string, unknown>, orderBy: Array<{ column: string; direction: 'asc' | 'desc' }>): AsyncGenerator<R> {
    let cursor: string | undefined
    do {
      const page: RowPage = await this.#store.ask<RowPage>({ type: 'fetchAll', table, where, orderBy, limit: PAGE, ...(cursor === undefined ? {} : { cursor }) })
      for (const row of page.rows) yield row as R
      cursor = page.cursor ?? undefined
    } while (cursor !== undefined)
  }
}

/** What a new run's row is made from; the rest starts empty. */
export interface NewRun {
  readonly runId: string
  readonly workflow: string
  readonly sessionId: string
  readonly startEvent: unknown
  /** The session state it begins with, encoded (encodeValue). */
  readonly initialState: string
  readonly owner: string
  readonly leaseMs: number
  /** Its lease's epoch; 1 for a run just started. */
  readonly epoch?: number
  /** When it times out (epoch ms), or null. */
  readonly deadline: number | null
  /** Now, unless told. */
  readonly at?: number
}

/** A new run's row: running, held by `owner` with a fresh lease, nothing written yet. */
export function newRunRow(run: NewRun): RunRow {
  const now = run.at ?? Date.now()
  return {
    run_id: run.runId,
    workflow: run.workflow,
    status: 'running',
    session_id: run.sessionId,
    start_event: run.startEvent,
    initial_state: run.initialState,
    state: null,
    result: null,
    error_code: null,
    error_message: null,
    lease_owner: run.owner,
    lease_epoch: run.epoch ?? 1,
    lease_expires: now + run.leaseMs,
    attempt: 1,
    created_at: now,
    updated_at: now,
    completed_at: null,
    deadline: run.deadline,
    last_seq: -1,
    trimmed_to: -1,
    journal_count: 0,
    inbox_count: 0,
  }
}

/** The run as the protocol reports it. */
export function runInfo(row: RunRow): RunInfo {
  return {
    runId: row.run_id,
    workflow: row.workflow,
    sessionId: row.session_id,
    status: row.status,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    completedAt: row.completed_at,
    result: row.result ?? null,
    error: row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '' },
    lastSeq: row.last_seq,
    trimmedTo: row.trimmed_to,
    state: row.state === null ? null : (decodeValue(row.state) as Record<string, unknown>),
  }
}
