import { z } from 'zod'
import { ActorError, defineBehavior, type ActorRef, type BehaviorContext } from '../../src/index.js'
import type { StackConfig } from '../../src/config/index.js'
import { BatchWriter, type BatchWriterStats } from './batch-writer.js'
import type { RowPage, TableMessage, TableSpec } from './protocol.js'
import { ownerColumns, ownerOfRow, ownerSchema, OWNER_COLUMNS, type Owner } from './owner.js'
import { nextSequence } from './sequence.js'
import { putOp } from './table/rows.js'

/**
 * The inference store: every chat completion, recorded through the batched writer
 * (batch-writer.ts) on the thread that produced it. The record is encoded once, here, and
 * written as those bytes. Rows are keyed by when they were recorded (then the completion's id),
 * so a commit appends to the end of the table instead of touching pages all over it, and a
 * list walks the key itself; an index on the id serves a lookup by it.
 *
 * `writeMode` decides what a record's acknowledgement means: `async`, once queued (committed
 * within the writer's linger, 25 ms); `sync`, once committed and fsynced, with records that
 * arrive together sharing the commit. A read waits for every record acknowledged before it
 * (and cuts the linger short), so a client reads its own writes. On stop the queue is written
 * before the actor ends. `retention` trims the oldest records, by count or age, in the
 * background.
 *
 * A record keeps its caller as its owner (owner.ts), encoded with the row. The store answers
 * owners when asked (`withOwner`, `withOwners`) and filters nothing: the server's access
 * policy decides who may read what.
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

/** A completion with its owner (null: unowned): `get` answers so with `withOwner`. */
export interface OwnedCompletion {
  readonly completion: StoredCompletion
  readonly owner: Owner | null
}

/** `list` with `withOwners`: each completion's owner, in the order of `data`, and the owner of the `after` row. */
export interface OwnedCompletionList extends CompletionList {
  readonly owners: Array<Owner | null>
  /** Undefined when the list was asked without `after`. */
  readonly after_owner?: Owner | null
}

/** The list's page size limit, and so the most a server asks for at once when it filters pages. */
export const MAX_LIST_LIMIT = 1000

export const inferenceStoreProtocol = z.discriminatedUnion('type', [
  /** `owner`: the authenticated caller whose chat this was; absent, the record is unowned. */
  z.object({
    type: z.literal('record'),
    completion: z.object({ id: z.string(), created: z.number(), model: z.string(), choices: z.array(z.unknown()) }).loose(),
    messages: z.array(z.unknown()),
    owner: ownerSchema.optional(),
  }),
  /** The completion; with `withOwner`, an OwnedCompletion. */
  z.object({ type: z.literal('get'), id: z.string(), withOwner: z.boolean().optional() }),
  /** A page, newest first unless `order`; with `withOwners`, an OwnedCompletionList. */
  z.object({
    type: z.literal('list'),
    after: z.string().optional(),
    limit: z.number().int().min(1).max(MAX_LIST_LIMIT).optional(),
    order: z.enum(['asc', 'desc']).optional(),
    model: z.string().optional(),
    withOwners: z.boolean().optional(),
  }),
  /**
   * The input messages a completion was asked with, as OpenAI lists them: each with an id
   * `<completion id>-<index>`, paged by `after` (a message id), oldest first unless `order`.
   */
  z.object({
    type: z.literal('messages'),
    id: z.string(),
    after: z.string().optional(),
    limit: z.number().int().min(1).max(100).optional(),
    order: z.enum(['asc', 'desc']).optional(),
  }),
  /** The writer's queue and counters, the settings, and what retention removed: for inspection and tests. */
  z.object({ type: z.literal('stats') }),
  /** The hot settings, applied live by a reload (see InferenceSettings). */
  z.object({ type: z.literal('configure'), settings: z.custom<InferenceSettings>() }),
  /** Runs a retention pass now rather than at its next interval; replies with the records removed. */
  z.object({ type: z.literal('trim') }),
])
export type InferenceStoreMessage = z.infer<typeof inferenceStoreProtocol>

/** What `storage.stores.inference` sets that a reload may change live. */
export interface InferenceSettings {
  /** Records queued or being written, at most; past it a record waits for room. */
  readonly maxQueue: number
  /** Batches committed at once. */
  readonly writers: number
  readonly writeMode: 'async' | 'sync'
  readonly retention: { readonly maxCount?: number | undefined; readonly maxAgeMs?: number | undefined } | undefined
}

type InferenceConfig = NonNullable<StackConfig['storage']['stores']['inference']>

export function inferenceSettings(config: InferenceConfig): InferenceSettings {
  const { retention } = config
  return {
    maxQueue: config.max_write_queue_size,
    writers: config.num_writers,
    writeMode: config.write_mode,
    retention: retention === undefined || (retention.max_count === undefined && retention.max_age === undefined) ? undefined : { maxCount: retention.max_count, maxAgeMs: retention.max_age },
  }
}

export interface InferenceStoreArgs {
  readonly store: ActorRef<TableMessage>
  readonly table: string
  readonly settings: InferenceSettings
  /** How often retention runs; a minute unless a test says otherwise. */
  readonly retentionIntervalMs?: number
}

interface State {
  readonly args: InferenceStoreArgs
  readonly spec: TableSpec
  readonly writer: BatchWriter
  settings: InferenceSettings
  readonly log: BehaviorContext<InferenceStoreMessage>['log']
  lastRecorded: number
  retention: { timer: NodeJS.Timeout | undefined; running: Promise<number> | undefined; removed: number }
  /** The actor is stopping: no retention pass is scheduled after the one under way. */
  stopping: boolean
}

const DEFAULT_LIMIT = 20
/**
 * How long a record waits for room in a full queue before its request fails with
 * `backpressure`: long enough to ride out a slow commit, short of any client's timeout.
 */
const RECORD_WAIT_MS = 30_000
const RETENTION_INTERVAL_MS = 60_000
/** Records one trim removes: a pass takes several, each a short transaction. */
const TRIM_BATCH = 1000

export const inferenceStore = defineBehavior(import.meta.url, 'inferenceStore', {
  protocol: inferenceStoreProtocol,
  maxConcurrent: 65_536,
  async init(args: InferenceStoreArgs, ctx): Promise<State> {
    const spec: TableSpec = {
      name: args.table,
      columns: { recorded: { type: 'integer' }, id: { type: 'text' }, created: { type: 'integer' }, model: { type: 'text' }, completion: { type: 'json' }, input_messages: { type: 'json' }, ...OWNER_COLUMNS },
      // Time first: new rows append. The id, second, keeps two records of one microsecond apart.
      primaryKey: ['recorded', 'id'],
      indexes: [['id'], ['model', 'recorded']],
    }
    await args.store.ask({ type: 'createTable', table: spec })
    const { settings } = args
    const writer = new BatchWriter(args.store, { maxQueue: settings.maxQueue, writers: settings.writers, log: ctx.log })
    const state: State = { args, spec, writer, settings, log: ctx.log, lastRecorded: 0, retention: { timer: undefined, running: undefined, removed: 0 }, stopping: false }
    startRetention(state)
    return state
  },
  receive(state, msg: InferenceStoreMessage) {
    switch (msg.type) {
      case 'record': {
        // A completion that carries input_messages of its own is stored without them (the
        // request's are stored beside it); copying only then keeps the common path copy-free.
        let completion: Record<string, unknown> = msg.completion
        if ('input_messages' in completion) completion = withoutInputMessages(completion)
        // `created` has second resolution: `recorded` orders completions as they arrived.
        state.lastRecorded = nextSequence(state.lastRecorded)
        const row = { recorded: state.lastRecorded, id: msg.completion.id, created: msg.completion.created, model: msg.completion.model, completion, input_messages: msg.messages, ...ownerColumns(msg.owner) }
        const put = putOp(state.spec, row, 'upsert')
        if (state.settings.writeMode === 'async') return state.writer.submit(put, { waitMs: RECORD_WAIT_MS }).then(() => null)
        return state.writer.write(put, { durable: true, waitMs: RECORD_WAIT_MS }).done.then(() => null)
      }
      case 'get':
        return state.writer.flush().then(async () => {
          const row = await fetchRow(state, msg.id)
          return msg.withOwner === true ? ({ completion: toStored(row), owner: ownerOfRow(row) } satisfies OwnedCompletion) : toStored(row)
        })
      case 'list':
        return state.writer.flush().then(() => list(state, msg))
      case 'messages':
        return state.writer.flush().then(() => messages(state, msg))
      case 'stats':
        return { ...state.writer.stats(), writeMode: state.settings.writeMode, retention: state.settings.retention ?? null, removed: state.retention.removed } satisfies InferenceStats
      case 'configure':
        state.settings = msg.settings
        state.writer.configure({ maxQueue: msg.settings.maxQueue, writers: msg.settings.writers })
        startRetention(state)
        return null
      case 'trim':
        return trim(state)
    }
  },
  async stop(state) {
    state.stopping = true
    clearTimeout(state.retention.timer)
    state.retention.timer = undefined
    await state.retention.running
    await state.writer.close()
  },
})

export interface InferenceStats extends BatchWriterStats {
  readonly writeMode: 'async' | 'sync'
  readonly retention: InferenceSettings['retention'] | null
  /** Records retention has removed since the actor started. */
  readonly removed: number
}

/**
 * A retention pass now (registered before this returns, so a trim asked next joins it rather
 * than racing it), then one every interval.
 */
function startRetention(state: State): void {
  clearTimeout(state.retention.timer)
  state.retention.timer = undefined
  if (state.settings.retention === undefined) return
  runPass(state)
}

function runPass(state: State): void {
  trim(state)
    .catch(error => state.log.error({ err: error }, 'removing old chat completions failed; retrying at the next interval'))
    .finally(() => {
      if (state.settings.retention === undefined || state.stopping) return
      clearTimeout(state.retention.timer)
      state.retention.timer = setTimeout(() => runPass(state), state.args.retentionIntervalMs ?? RETENTION_INTERVAL_MS)
      state.retention.timer.unref()
    })
}

/**
 * One retention pass: trims of TRIM_BATCH until none is left to remove. `recorded` is
 * microseconds since the epoch, so an age is a bound on the first key column.
 */
function trim(state: State): Promise<number> {
  // finally runs after this assignment even for a pass with nothing to do, so `running` never
  // keeps a finished pass (which would stop every later pass from running).
  state.retention.running ??= trimPass(state).finally(() => (state.retention.running = undefined))
  return state.retention.running
}

async function trimPass(state: State): Promise<number> {
  // Records acknowledged before the pass count toward the limit: write them first.
  await state.writer.flush()
  let removed = 0
  for (;;) {
    const retention = state.settings.retention
    if (retention === undefined) return removed
    const before = retention.maxAgeMs === undefined ? undefined : (Date.now() - retention.maxAgeMs) * 1000
    const count = await state.args.store.ask<number>({ type: 'trim', table: state.spec.name, limit: TRIM_BATCH, ...(before === undefined ? {} : { before }), ...(retention.maxCount === undefined ? {} : { keep: retention.maxCount }) })
    removed += count
    state.retention.removed += count
    if (count < TRIM_BATCH) return removed
  }
}

function withoutInputMessages({ input_messages: _ignored, ...rest }: Record<string, unknown>): Record<string, unknown> {
  return rest
}

function toStored(row: Record<string, unknown>): StoredCompletion {
  return { ...(row['completion'] as Omit<StoredCompletion, 'input_messages'>), input_messages: row['input_messages'] as unknown[] }
}

/** The answer to a completion that does not exist: the server gives it for one the caller may not read too. */
export function completionNotFound(id: string): ActorError {
  return new ActorError('not_found', `no chat completion with id '${id}'`)
}

/** The answer to a list `after` a completion that does not exist (or that the caller may not read). */
export function afterNotFound(id: string): ActorError {
  return new ActorError('not_found', `after: no chat completion with id '${id}'`)
}

async function fetchRow(state: State, id: string): Promise<Record<string, unknown>> {
  const row = await state.args.store.ask<Record<string, unknown> | null>({ type: 'fetchOne', table: state.args.table, where: { id } })
  if (row === null) throw completionNotFound(id)
  return row
}

export interface MessageList {
  readonly object: 'list'
  readonly data: Array<Record<string, unknown> & { id: string }>
  readonly first_id: string | null
  readonly last_id: string | null
  readonly has_more: boolean
}

async function messages(state: State, msg: Extract<InferenceStoreMessage, { type: 'messages' }>): Promise<MessageList> {
  const stored = toStored(await fetchRow(state, msg.id))
  const all = stored.input_messages.map((message, i) => ({ ...(message as Record<string, unknown>), id: `${msg.id}-${i}` }))
  if (msg.order === 'desc') all.reverse()
  let start = 0
  if (msg.after !== undefined) {
    start = all.findIndex(message => message.id === msg.after) + 1
    if (start === 0) throw new ActorError('not_found', `after: chat completion '${msg.id}' has no message '${msg.after}'`)
  }
  const data = all.slice(start, start + (msg.limit ?? DEFAULT_LIMIT))
  return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null, has_more: start + data.length < all.length }
}

async function list(state: State, msg: Extract<InferenceStoreMessage, { type: 'list' }>): Promise<CompletionList | OwnedCompletionList> {
  const limit = msg.limit ?? DEFAULT_LIMIT
  const direction = msg.order ?? 'desc'
  const orderBy = [
    { column: 'recorded', direction },
    { column: 'id', direction },
  ]
  let afterRow: Record<string, unknown> | undefined
  if (msg.after !== undefined) {
    const row = await state.args.store.ask<Record<string, unknown> | null>({ type: 'fetchOne', table: state.args.table, where: { id: msg.after } })
    if (row === null) throw afterNotFound(msg.after)
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
  const list: CompletionList = { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null, has_more: page.cursor !== null }
  if (msg.withOwners !== true) return list
  return { ...list, owners: page.rows.map(ownerOfRow), ...(afterRow === undefined ? {} : { after_owner: ownerOfRow(afterRow) }) } satisfies OwnedCompletionList
}
