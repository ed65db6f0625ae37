import { randomBytes } from 'node:crypto'
import { z } from 'zod'
import { ActorError, defineBehavior, type ActorRef } from '../../src/index.js'
import { BatchWriter } from './batch-writer.js'
import type { RowPage, TableMessage, TableSpec, WriteOp } from './protocol.js'
import { ownerColumns, ownerOfRow, ownerSchema, OWNER_COLUMNS, type Owner } from './owner.js'
import { nextSequence } from './sequence.js'
import { putOp } from './table/rows.js'

/**
 * Conversations, as OpenAI's Conversations API defines them: a conversation (id `conv_…`,
 * metadata) and its ordered items, on a table store. Items are ordered by a sequence number
 * this actor assigns (it is the only writer), and listed with keyset pagination (`after` an
 * item id). New conversations and items go through the batched writer (batch-writer.ts), each
 * call's rows in one transaction, encoded once here: `writeMode` `sync` answers once they are
 * committed and fsynced, `async` once queued. Every read and every change of existing rows
 * first waits for the writes before it, so a client reads its own writes and a delete cannot
 * overtake the items it deletes.
 *
 * A conversation and each item keep the caller who made them as their owner (owner.ts),
 * encoded with their rows. The actor answers owners when asked (`withOwner`, `withOwners`) and
 * filters nothing: the server's access policy decides who may see what.
 */

export const MAX_METADATA_PAIRS = 16
export const MAX_METADATA_KEY = 64
export const MAX_METADATA_VALUE = 512
export const MAX_ITEMS_PER_CALL = 20

/** OpenAI's metadata rules: up to 16 pairs, keys up to 64 characters, string values up to 512. */
export const metadataSchema = z
  .record(z.string().max(MAX_METADATA_KEY, `keys may be at most ${MAX_METADATA_KEY} characters`), z.string().max(MAX_METADATA_VALUE, `values may be at most ${MAX_METADATA_VALUE} characters`))
  .refine(value => Object.keys(value).length <= MAX_METADATA_PAIRS, `at most ${MAX_METADATA_PAIRS} key-value pairs`)

const contentPart = z.object({ type: z.string() }).loose()
/** An item as a client sends it: a message (role + content), or any other typed item. */
export const itemInput = z.union([
  z.object({ type: z.literal('message').optional(), role: z.enum(['user', 'assistant', 'system', 'developer']), content: z.union([z.string(), z.array(contentPart)]), id: z.string().optional() }).loose(),
  z.object({ type: z.string().refine(type => type !== 'message', 'a message needs a role and content'), id: z.string().optional() }).loose(),
])
export type ItemInput = z.infer<typeof itemInput>

export interface Conversation {
  readonly id: string
  readonly object: 'conversation'
  readonly created_at: number
  readonly metadata: Record<string, string>
}

export interface ItemList {
  readonly object: 'list'
  readonly data: unknown[]
  readonly first_id: string | null
  readonly last_id: string | null
  readonly has_more: boolean
}

/** `get` with `withOwner`: the conversation and its owner (null: unowned). */
export interface OwnedConversation {
  readonly conversation: Conversation
  readonly owner: Owner | null
}

/** `getItem` with `withOwner`: the item and its owner (null: unowned). */
export interface OwnedItem {
  readonly item: unknown
  readonly owner: Owner | null
}

/** `listItems` with `withOwners`: each item's owner, in the order of `data`, and the owner of the `after` item. */
export interface OwnedItemList extends ItemList {
  readonly owners: Array<Owner | null>
  /** Undefined when the list was asked without `after`. */
  readonly after_owner?: Owner | null
}

/** The most items `listItems` answers at once, and so the most a server asks for when it filters pages. */
export const MAX_ITEMS_LIMIT = 100

/**
 * `owner` (create, addItems): the authenticated caller, recorded with the conversation and
 * items made; absent, they are unowned. `withOwner` (get, getItem) answers `{ conversation,
 * owner }` or `{ item, owner }`.
 */
export const conversationsProtocol = z.discriminatedUnion('type', [
  z.object({ type: z.literal('create'), metadata: metadataSchema.optional(), items: z.array(itemInput).max(MAX_ITEMS_PER_CALL).optional(), owner: ownerSchema.optional() }),
  z.object({ type: z.literal('get'), id: z.string(), withOwner: z.boolean().optional() }),
  z.object({ type: z.literal('update'), id: z.string(), metadata: metadataSchema }),
  z.object({ type: z.literal('delete'), id: z.string() }),
  z.object({ type: z.literal('addItems'), id: z.string(), items: z.array(itemInput).min(1).max(MAX_ITEMS_PER_CALL), owner: ownerSchema.optional() }),
  z.object({
    type: z.literal('listItems'),
    id: z.string(),
    after: z.string().optional(),
    limit: z.number().int().min(1).max(MAX_ITEMS_LIMIT).optional(),
    order: z.enum(['asc', 'desc']).optional(),
    withOwners: z.boolean().optional(),
  }),
  z.object({ type: z.literal('getItem'), id: z.string(), itemId: z.string(), withOwner: z.boolean().optional() }),
  z.object({ type: z.literal('deleteItem'), id: z.string(), itemId: z.string() }),
])
export type ConversationsMessage = z.infer<typeof conversationsProtocol>

export interface ConversationsArgs {
  readonly store: ActorRef<TableMessage>
  readonly table: string
  readonly writeMode?: 'async' | 'sync'
}

interface State {
  readonly store: ActorRef<TableMessage>
  readonly writer: BatchWriter
  readonly sync: boolean
  readonly conversations: string
  readonly items: string
  readonly itemSpec: TableSpec
  lastSeq: number
}

/** How long a write waits for room in a full queue before the call fails with `backpressure`. */
const WRITE_WAIT_MS = 30_000

export const conversations = defineBehavior(import.meta.url, 'conversations', {
  protocol: conversationsProtocol,
  maxConcurrent: 1024,
  async init({ store, table, writeMode }: ConversationsArgs, ctx): Promise<State> {
    const items = `${table}_items`
    await store.ask({
      type: 'createTable',
      table: { name: table, columns: { id: { type: 'text' }, created_at: { type: 'integer' }, metadata: { type: 'json' }, ...OWNER_COLUMNS }, primaryKey: ['id'] },
    })
    const itemSpec: TableSpec = {
      name: items,
      columns: { conversation_id: { type: 'text' }, seq: { type: 'integer' }, id: { type: 'text' }, item: { type: 'json' }, ...OWNER_COLUMNS },
      primaryKey: ['conversation_id', 'seq'],
      indexes: [['conversation_id', 'id']],
    }
    await store.ask({ type: 'createTable', table: itemSpec })
    const writer = new BatchWriter(store, { maxQueue: 10_000, writers: 4, log: ctx.log })
    return { store, writer, sync: (writeMode ?? 'sync') === 'sync', conversations: table, items, itemSpec, lastSeq: 0 }
  },
  async receive(state, msg: ConversationsMessage) {
    // Reads and changes of existing rows see every write acknowledged before them.
    if (msg.type !== 'create') await state.writer.flush()
    switch (msg.type) {
      case 'create': {
        const conversation: Conversation = { id: newId('conv'), object: 'conversation', created_at: nowSeconds(), metadata: msg.metadata ?? {} }
        const ops: WriteOp[] = [
          { type: 'insert', table: state.conversations, row: { ...row(conversation), ...ownerColumns(msg.owner) } },
          ...itemPuts(state, conversation.id, (msg.items ?? []).map(normalise), msg.owner),
        ]
        await written(state, ops)
        return conversation
      }
      case 'get': {
        if (msg.withOwner !== true) return conversationOf(state, msg.id)
        const found = await conversationRow(state, msg.id)
        return { conversation: conversationFrom(found), owner: ownerOfRow(found) } satisfies OwnedConversation
      }
      case 'update': {
        const conversation = { ...(await conversationOf(state, msg.id)), metadata: msg.metadata }
        await state.store.ask({ type: 'update', table: state.conversations, where: { id: msg.id }, values: { metadata: msg.metadata } })
        return conversation
      }
      case 'delete': {
        await conversationOf(state, msg.id)
        await state.store.ask({
          type: 'transaction',
          ops: [
            { type: 'delete', table: state.items, where: { conversation_id: msg.id } },
            { type: 'delete', table: state.conversations, where: { id: msg.id } },
          ],
        })
        return { id: msg.id, object: 'conversation.deleted', deleted: true }
      }
      case 'addItems': {
        await conversationOf(state, msg.id)
        const items = msg.items.map(normalise)
        await written(state, itemPuts(state, msg.id, items, msg.owner))
        return { object: 'list', data: items, first_id: items[0]!.id, last_id: items[items.length - 1]!.id, has_more: false } satisfies ItemList
      }
      case 'listItems':
        return listItems(state, msg)
      case 'getItem': {
        const found = await itemRow(state, msg.id, msg.itemId)
        return msg.withOwner === true ? ({ item: found['item'], owner: ownerOfRow(found) } satisfies OwnedItem) : found['item']
      }
      case 'deleteItem': {
        const found = await itemRow(state, msg.id, msg.itemId)
        await state.store.ask({ type: 'delete', table: state.items, where: { conversation_id: msg.id, seq: found['seq'] } })
        return conversationOf(state, msg.id)
      }
    }
  },
  async stop(state) {
    await state.writer.close()
  },
})

/** The items' rows, checked and encoded here (putOp); a bad one throws before anything is written. */
function itemPuts(state: State, conversationId: string, items: ReadonlyArray<Record<string, unknown> & { id: string }>, owner: Owner | undefined): WriteOp[] {
  const owned = ownerColumns(owner)
  return items.map(item => putOp(state.itemSpec, { conversation_id: conversationId, seq: nextSeq(state), id: item.id, item, ...owned }, 'insert'))
}

/** One call's writes, in one transaction: resolves once queued (async) or committed and fsynced (sync). */
async function written(state: State, ops: readonly WriteOp[]): Promise<void> {
  const write = state.writer.write(ops, { durable: state.sync, waitMs: WRITE_WAIT_MS })
  await (state.sync ? write.done : write.queued)
}

function row(conversation: Conversation): Record<string, unknown> {
  return { id: conversation.id, created_at: conversation.created_at, metadata: conversation.metadata }
}

/** The answer to a conversation that does not exist: the server gives it for one the caller may not read too. */
export function conversationNotFound(id: string): ActorError {
  return new ActorError('not_found', `no conversation with id '${id}'`)
}

/** The answer to an item that does not exist: the server gives it for one the caller may not read too. */
export function itemNotFound(conversationId: string, itemId: string): ActorError {
  return new ActorError('not_found', `conversation '${conversationId}' has no item '${itemId}'`)
}

async function conversationRow(state: State, id: string): Promise<Record<string, unknown>> {
  const found = await state.store.ask<Record<string, unknown> | null>({ type: 'fetchOne', table: state.conversations, where: { id } })
  if (found === null) throw conversationNotFound(id)
  return found
}

function conversationFrom(found: Record<string, unknown>): Conversation {
  return { id: found['id'] as string, object: 'conversation', created_at: found['created_at'] as number, metadata: found['metadata'] as Record<string, string> }
}

async function conversationOf(state: State, id: string): Promise<Conversation> {
  return conversationFrom(await conversationRow(state, id))
}

async function itemRow(state: State, conversationId: string, itemId: string): Promise<Record<string, unknown>> {
  await conversationOf(state, conversationId)
  const found = await state.store.ask<Record<string, unknown> | null>({ type: 'fetchOne', table: state.items, where: { conversation_id: conversationId, id: itemId } })
  if (found === null) throw itemNotFound(conversationId, itemId)
  return found
}

async function listItems(state: State, msg: Extract<ConversationsMessage, { type: 'listItems' }>): Promise<ItemList | OwnedItemList> {
  await conversationOf(state, msg.id)
  let afterRow: Record<string, unknown> | undefined
  if (msg.after !== undefined) afterRow = await itemRow(state, msg.id, msg.after)
  const page = await state.store.ask<RowPage>({
    type: 'fetchAll',
    table: state.items,
    where: { conversation_id: msg.id },
    orderBy: [{ column: 'seq', direction: msg.order ?? 'desc' }],
    limit: msg.limit ?? 20,
    ...(afterRow === undefined ? {} : { afterRow }),
  })
  const data = page.rows.map(r => r['item'])
  const ids = page.rows.map(r => r['id'] as string)
  const list: ItemList = { object: 'list', data, first_id: ids[0] ?? null, last_id: ids[ids.length - 1] ?? null, has_more: page.cursor !== null }
  if (msg.withOwners !== true) return list
  return { ...list, owners: page.rows.map(ownerOfRow), ...(afterRow === undefined ? {} : { after_owner: ownerOfRow(afterRow) }) } satisfies OwnedItemList
}

/** A stored item: an id of its kind, and a message's string content as one text part. */
function normalise(input: ItemInput): Record<string, unknown> & { id: string } {
  const type = input.type ?? 'message'
  if (type !== 'message') return { ...input, type, id: input.id ?? newId(type === 'function_call' ? 'fc' : 'item') }
  const message = input as Extract<ItemInput, { role: string }>
  const partType = message.role === 'assistant' ? 'output_text' : 'input_text'
  const content = typeof message.content === 'string' ? [{ type: partType, text: message.content }] : message.content
  return { ...message, type: 'message', id: message.id ?? newId('msg'), status: 'completed', content }
}

function nextSeq(state: State): number {
  return (state.lastSeq = nextSequence(state.lastSeq))
}

function newId(prefix: string): string {
  return `${prefix}_${randomBytes(24).toString('hex')}`
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000)
}
