import { z } from 'zod'
import { ActorError, defineBehavior, type ActorRef, type BehaviorContext } from '../../src/index.js'
import type { RowPage, TableMessage, TableSpec } from './protocol.js'
import { nextSequence } from './sequence.js'

/**
 * The inference store: every chat completion, recorded through a bounded write queue. A
 * `record` is acknowledged once queued; while the queue is full the acknowledgement waits, which
 * slows the caller instead of dropping the record. `num_writers` writers drain it into the
 * table in batches, one transaction each; a record lingers a few milliseconds so that records
 * arriving together share one commit. A read waits for the records acknowledged before it to be
 * written (and cuts the linger short), so a client reads its own writes. On stop the queue is
 * drained before the actor ends, so every acknowledged record reaches the table store (which
 * itself finishes acknowledged writes before it closes).
 */

export interface StoredCompletion {
  readonly id: string
  readonly object: 'chat.completion'
  readonly created: number
  readonly model: string
  readonly choices: unknown[]
  readonly usage?: unknown
  readonly input_messages: unknown[]
}

export interface CompletionList {
  readonly object: 'list'
  readonly data: StoredCompletion[]
  readonly first_id: string | null
  readonly last_id: string | null
  readonly has_more: boolean
}

export const inferenceStoreProtocol = z.discriminatedUnion('type', [
  z.object({ type: z.literal('record'), completion: z.object({ id: z.string(), created: z.number(), model: z.string(), choices: z.array(z.unknown()) }).loose(), messages: z.array(z.unknown()) }),
  z.object({ type: z.literal('get'), id: z.string() }),
  z.object({
    type: z.literal('list'),
    after: z.string().optional(),
    limit: z.number().int().min(1).max(100).optional(),
    order: z.enum(['asc', 'desc']).optional(),
    model: z.string().optional(),
  }),
  /** Queue depth, writers busy, records written, store writes made: for inspection and tests. */
  z.object({ type: z.literal('stats') }),
  /**
   * The hot settings (`max_write_queue_size`, `num_writers`), applied live by a reload: a larger
   * queue admits the records waiting for room at once; a smaller one lets those queued stay.
   */
  z.object({ type: z.literal('configure'), maxQueue: z.number().int().positive(), writers: z.number().int().positive() }),
])
export type InferenceStoreMessage = z.infer<typeof inferenceStoreProtocol>

export interface InferenceStoreArgs {
  readonly store: ActorRef<TableMessage>
  readonly table: string
  readonly maxQueue: number
  readonly writers: number
}

interface Row {
  id: string
  recorded: number
  created: number
  model: string
  completion: unknown
  input_messages: unknown
}

type Log = BehaviorContext<InferenceStoreMessage>['log']

interface State {
  readonly args: InferenceStoreArgs
  /** The queue bound and writer count: args' at start, a reload's after it. */
  limits: { maxQueue: number; writers: number }
  readonly queue: Row[]
  readonly log: Log
  /** When the oldest record in the queue was queued, for the linger. */
  lingerSince: number
  lingerTimer: NodeJS.Timeout | undefined
  stopping: boolean
  /** Records waiting for room in the queue, in arrival order. */
  readonly waiting: Array<{ row: Row; admitted: () => void }>
  busyWriters: number
  written: number
  /** Writes sent to the table store: one per batch, plus one per row of a refused batch. */
  batches: number
  failures: number
  /** Resolves when the queue is empty and no writer is busy. */
  idle: Array<() => void>
  lastRecorded: number
  /** `recorded` of every record acknowledged and not yet written. */
  readonly unwritten: Set<number>
  /** Reads waiting for every record recorded up to `upTo` to be written. */
  readonly readers: Array<{ upTo: number; go: () => void }>
}

const DEFAULT_LIMIT = 20
/** Records one writer commits together, at most. */
const WRITE_BATCH = 256
/** How long a record may wait for others to share its commit. It is acknowledged before. */
const LINGER_MS = 25

export const inferenceStore = defineBehavior(import.meta.url, 'inferenceStore', {
  protocol: inferenceStoreProtocol,
  maxConcurrent: 65_536,
  async init(args: InferenceStoreArgs, ctx): Promise<State> {
    const spec: TableSpec = {
      name: args.table,
      columns: { id: { type: 'text' }, recorded: { type: 'integer' }, created: { type: 'integer' }, model: { type: 'text' }, completion: { type: 'json' }, input_messages: { type: 'json' } },
      primaryKey: ['id'],
      indexes: [['recorded'], ['model', 'recorded']],
    }
    await args.store.ask({ type: 'createTable', table: spec })
    return { args, limits: { maxQueue: args.maxQueue, writers: args.writers }, log: ctx.log, lingerSince: 0, lingerTimer: undefined, stopping: false, queue: [], waiting: [], busyWriters: 0, written: 0, batches: 0, failures: 0, idle: [], lastRecorded: 0, unwritten: new Set(), readers: [] }
  },
  receive(state, msg: InferenceStoreMessage) {
    switch (msg.type) {
      case 'record': {
        const { input_messages: _ignored, ...completion } = msg.completion
        // `created` has second resolution: `recorded` orders completions as they arrived.
        state.lastRecorded = nextSequence(state.lastRecorded)
        const row: Row = { id: msg.completion.id, recorded: state.lastRecorded, created: msg.completion.created, model: msg.completion.model, completion, input_messages: msg.messages }
        if (state.queue.length < state.limits.maxQueue) {
          enqueue(state, row)
          return null
        }
        const admitted = new Promise<null>(resolve => state.waiting.push({ row, admitted: () => resolve(null) }))
        kick(state) // a full queue is written at once
        return admitted
      }
      case 'get':
        return caughtUp(state).then(() => fetch(state, msg.id))
      case 'list':
        return caughtUp(state).then(() => list(state, msg))
      case 'stats':
        return { queued: state.queue.length, waiting: state.waiting.length, busyWriters: state.busyWriters, written: state.written, batches: state.batches, failures: state.failures, ...state.limits }
      case 'configure':
        state.limits = { maxQueue: msg.maxQueue, writers: msg.writers }
        admitWaiting(state)
        kick(state)
        return null
    }
  },
  async stop(state) {
    state.stopping = true
    if (state.queue.length === 0 && state.busyWriters === 0 && state.waiting.length === 0) return
    const idle = new Promise<void>(resolve => state.idle.push(resolve))
    kick(state)
    await idle
  },
})

function enqueue(state: State, row: Row): void {
  state.unwritten.add(row.recorded)
  if (state.queue.length === 0) state.lingerSince = performance.now()
  state.queue.push(row)
  kick(state)
}

/**
 * Whether a batch should be written now: a full batch is waiting, the oldest record has lingered
 * long enough, or someone waits on the queue (a full queue, a read, a stop).
 */
function batchDue(state: State): boolean {
  const queued = state.queue.length
  if (queued === 0) return false
  return (
    queued >= WRITE_BATCH ||
    queued >= state.limits.maxQueue ||
    state.readers.length > 0 ||
    state.stopping ||
    performance.now() - state.lingerSince >= LINGER_MS
  )
}

/** Starts a writer if a batch is due and one is free, or arms the linger timer for the records that wait. */
function kick(state: State): void {
  if (state.busyWriters >= state.limits.writers || state.queue.length === 0) return
  if (batchDue(state)) {
    void write(state)
    return
  }
  state.lingerTimer ??= setTimeout(
    () => {
      state.lingerTimer = undefined
      kick(state)
    },
    Math.max(0, LINGER_MS - (performance.now() - state.lingerSince)),
  )
}

/**
 * One writer: takes records off the queue, up to WRITE_BATCH at a time, while a batch is due.
 * A batch is one transaction, so one commit (one fsync on LMDB) covers all its rows, and records
 * linger up to LINGER_MS to share one: committed one or two at a time, each record cost about
 * 120 µs of CPU across the threads at 6k records a second, most of it per commit.
 */
async function write(state: State): Promise<void> {
  clearTimeout(state.lingerTimer)
  state.lingerTimer = undefined
  state.busyWriters++
  try {
    while (batchDue(state)) {
      const batch = state.queue.splice(0, WRITE_BATCH)
      state.lingerSince = performance.now()
      admitWaiting(state)
      await writeBatch(state, batch)
      for (const row of batch) state.unwritten.delete(row.recorded)
      releaseReaders(state)
    }
  } finally {
    state.busyWriters--
    if (state.busyWriters === 0 && state.queue.length === 0) for (const resolve of state.idle.splice(0)) resolve()
    kick(state)
  }
}

function admitWaiting(state: State): void {
  while (state.waiting.length > 0 && state.queue.length < state.limits.maxQueue) {
    const next = state.waiting.shift()!
    state.unwritten.add(next.row.recorded)
    state.queue.push(next.row)
    next.admitted()
  }
}

/** Resolves once every record acknowledged so far is in the table. */
function caughtUp(state: State): Promise<void> {
  if (state.unwritten.size === 0) return Promise.resolve()
  const written = new Promise<void>(go => state.readers.push({ upTo: state.lastRecorded, go }))
  kick(state) // a reader does not wait out the linger
  return written
}

function releaseReaders(state: State): void {
  if (state.readers.length === 0) return
  let oldest = Infinity
  for (const recorded of state.unwritten) oldest = Math.min(oldest, recorded)
  for (let i = state.readers.length - 1; i >= 0; i--) {
    const reader = state.readers[i]!
    if (oldest > reader.upTo) {
      state.readers.splice(i, 1)
      reader.go()
    }
  }
}

/** Codes for a write the store refuses outright: retrying it would fail forever. */
const REFUSED = new Set(['bad_row', 'value_too_large', 'unencodable_value'])

/**
 * A record that was acknowledged must land: transient store failures are retried with backoff.
 * A batch the store refuses (one bad row fails the whole transaction) is written row by row, so
 * only the bad row is lost, and loudly.
 */
async function writeBatch(state: State, rows: Row[]): Promise<void> {
  const { log } = state
  const { store, table } = state.args
  const message: TableMessage =
    rows.length === 1
      ? { type: 'upsert', table, row: rows[0] as unknown as Record<string, unknown> }
      : { type: 'transaction', ops: rows.map(row => ({ type: 'upsert' as const, table, row: row as unknown as Record<string, unknown> })) }
  for (let attempt = 0; ; attempt++) {
    try {
      state.batches++
      await store.ask(message)
      state.written += rows.length
      return
    } catch (error) {
      state.failures++
      const code = (error as ActorError).code
      if (REFUSED.has(code)) {
        if (rows.length > 1) {
          for (const row of rows) await writeBatch(state, [row])
          return
        }
        log.error({ err: error, id: rows[0]!.id }, 'the inference store refused a record; it is not stored')
        return
      }
      if (attempt % 10 === 0) log.error({ err: error, ids: rows.map(row => row.id), attempt }, 'writing chat completion records failed; retrying')
      await new Promise(resolve => setTimeout(resolve, Math.min(50 * 2 ** attempt, 2000)))
    }
  }
}

function toStored(row: Record<string, unknown>): StoredCompletion {
  return { ...(row['completion'] as Omit<StoredCompletion, 'input_messages'>), input_messages: row['input_messages'] as unknown[] }
}

async function fetch(state: State, id: string): Promise<StoredCompletion> {
  const row = await state.args.store.ask<Record<string, unknown> | null>({ type: 'fetchOne', table: state.args.table, where: { id } })
  if (row === null) throw new ActorError('not_found', `no chat completion with id '${id}'`)
  return toStored(row)
}

async function list(state: State, msg: Extract<InferenceStoreMessage, { type: 'list' }>): Promise<CompletionList> {
  const limit = msg.limit ?? DEFAULT_LIMIT
  const direction = msg.order ?? 'desc'
  const orderBy = [
    { column: 'recorded', direction },
    { column: 'id', direction },
  ]
  let afterRow: Record<string, unknown> | undefined
  if (msg.after !== undefined) {
    const row = await state.args.store.ask<Record<string, unknown> | null>({ type: 'fetchOne', table: state.args.table, where: { id: msg.after } })
    if (row === null) throw new ActorError('not_found', `after: no chat completion with id '${msg.after}'`)
    afterRow = row
  }
  const page = await state.args.store.ask<RowPage>({
    type: 'fetchAll',
    table: state.args.table,
    ...(msg.model === undefined ? {} : { where: { model: msg.model } }),
    orderBy,
    limit,
    ...(afterRow === undefined ? {} : { afterRow }),
  })
  const data = page.rows.map(toStored)
  return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null, has_more: page.cursor !== null }
}
