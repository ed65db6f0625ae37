import type { ActorRef } from '../../actor/index.js'
import {
  conversationNotFound,
  conversationsProtocol,
  itemNotFound,
  MAX_ITEMS_LIMIT,
  type ConversationsMessage,
  type OwnedConversation,
  type OwnedItem,
  type OwnedItemList,
} from '../../../actors/stores/conversations.js'
import type { Action } from '../access-policy.js'
import { readJson, validate } from '../http.js'
import { accessPolicyOf, authorizeAction, ownerOf, storedRecord } from '../ownership.js'
import { readablePage } from '../readable-page.js'
import type { Route } from '../route.js'
import { listQuery } from '../schemas.js'
import type { ServedRequest } from '../served-request.js'

/** As OpenAI's list of conversation items pages by default. */
const DEFAULT_LIMIT = 20

/**
 * OpenAI's Conversations API. A conversation is `sql_record::openai_conversations::<id>` to the
 * access policy and each item `sql_record::conversation_items::<id>`, owned by whoever made
 * it. An authenticated caller reaches a conversation they may read (update it, add items to it:
 * `update`; delete it: `delete`), and within it only the items they may read; anything else is
 * answered as an id that does not exist. `conversations` throws the routes' not-configured
 * error when there is none.
 */
export function conversationRoutes(conversations: () => ActorRef<ConversationsMessage>, maxBodyBytes: number): Route[] {
  const shapeOf = (type: ConversationsMessage['type']) => conversationsProtocol.options.find(o => o.shape.type.value === type)!
  /** Validates a body against the fields of one conversations message. */
  const body = async (request: ServedRequest, type: ConversationsMessage['type'], fixed: Record<string, unknown>): Promise<ConversationsMessage> => {
    const raw = await readJson(request.req, maxBodyBytes)
    const fields = typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? raw : { __body: raw }
    return validate(shapeOf(type), { ...fields, ...fixed, type }, 'body') as ConversationsMessage
  }
  /** The request's owner to record, as the message's `owner` field. */
  const owned = (request: ServedRequest): { owner?: NonNullable<ReturnType<typeof ownerOf>> } => {
    const owner = ownerOf(request.principal)
    return owner === undefined ? {} : { owner }
  }
  return [
    {
      method: 'POST',
      path: '/v1/conversations',
      api: 'conversations',
      handle: async request => conversations().ask({ ...(await body(request, 'create', {})), ...owned(request) }),
    },
    {
      method: 'GET',
      path: '/v1/conversations/{conversation_id}',
      api: 'conversations',
      handle: async request => {
        const id = request.params['conversation_id']!
        if (request.principal === undefined) return conversations().ask({ type: 'get', id })
        return (await authorized(conversations(), request, 'read'))!.conversation
      },
    },
    {
      method: 'POST',
      path: '/v1/conversations/{conversation_id}',
      api: 'conversations',
      handle: async request => {
        const update = await body(request, 'update', { id: request.params['conversation_id'] })
        const store = conversations()
        await authorized(store, request, 'update')
        return store.ask(update)
      },
    },
    {
      method: 'DELETE',
      path: '/v1/conversations/{conversation_id}',
      api: 'conversations',
      handle: async request => {
        const store = conversations()
        await authorized(store, request, 'delete')
        return store.ask({ type: 'delete', id: request.params['conversation_id']! })
      },
    },
    {
      method: 'POST',
      path: '/v1/conversations/{conversation_id}/items',
      api: 'conversations',
      handle: async request => {
        const add = await body(request, 'addItems', { id: request.params['conversation_id'] })
        const store = conversations()
        // Adding to a conversation changes it.
        await authorized(store, request, 'update')
        return store.ask({ ...add, ...owned(request) })
      },
    },
    {
      method: 'GET',
      path: '/v1/conversations/{conversation_id}/items',
      api: 'conversations',
      handle: async request => {
        const id = request.params['conversation_id']!
        const { after, limit, order } = validate(listQuery, Object.fromEntries(request.query), 'query')
        const paging = { ...(order === undefined ? {} : { order }) }
        const store = conversations()
        const user = request.principal
        if (user === undefined) return store.ask({ type: 'listItems', id, ...paging, ...(after === undefined ? {} : { after }), ...(limit === undefined ? {} : { limit }) })
        await authorized(store, request, 'read')
        const policy = accessPolicyOf(request)
        return readablePage<{ id: string }>({
          after,
          limit: limit ?? DEFAULT_LIMIT,
          maxBatch: MAX_ITEMS_LIMIT,
          read: async (from, batch) => {
            const page = await store.ask<OwnedItemList>({ type: 'listItems', id, withOwners: true, limit: batch, ...paging, ...(from === undefined ? {} : { after: from }) })
            return { ...page, data: page.data as Array<{ id: string }> }
          },
          idOf: item => item.id,
          mayRead: (itemId, owner) => policy.allows('read', storedRecord('conversation_items', itemId, owner), user),
          afterNotFound: itemId => itemNotFound(id, itemId),
        })
      },
    },
    {
      method: 'GET',
      path: '/v1/conversations/{conversation_id}/items/{item_id}',
      api: 'conversations',
      handle: async request => {
        const id = request.params['conversation_id']!
        const itemId = request.params['item_id']!
        if (request.principal === undefined) return conversations().ask({ type: 'getItem', id, itemId })
        return (await authorizedItem(conversations(), request, 'read'))!.item
      },
    },
    {
      method: 'DELETE',
      path: '/v1/conversations/{conversation_id}/items/{item_id}',
      api: 'conversations',
      handle: async request => {
        const store = conversations()
        await authorizedItem(store, request, 'delete')
        return store.ask({ type: 'deleteItem', id: request.params['conversation_id']!, itemId: request.params['item_id']! })
      },
    },
  ]
}

/**
 * The conversation of the request's path, once its caller may `action` it: the answer to a
 * missing id when they may not read it, 403 when they may read it but not this. Undefined,
 * and nothing asked, without authentication.
 */
async function authorized(store: ActorRef<ConversationsMessage>, request: ServedRequest, action: Exclude<Action, 'create'>): Promise<OwnedConversation | undefined> {
  if (request.principal === undefined) return undefined
  const id = request.params['conversation_id']!
  const owned = await store.ask<OwnedConversation>({ type: 'get', id, withOwner: true })
  authorizeAction(accessPolicyOf(request), action, storedRecord('openai_conversations', id, owned.owner), request.principal, () => conversationNotFound(id))
  return owned
}

/** The item of the request's path, once its caller may read its conversation and `action` the item (as `authorized`); undefined without authentication. */
async function authorizedItem(store: ActorRef<ConversationsMessage>, request: ServedRequest, action: 'read' | 'delete'): Promise<OwnedItem | undefined> {
  if (request.principal === undefined) return undefined
  const id = request.params['conversation_id']!
  const itemId = request.params['item_id']!
  // Deleting an item changes its conversation, as adding one does: that takes `update` on it.
  await authorized(store, request, action === 'delete' ? 'update' : 'read')
  const owned = await store.ask<OwnedItem>({ type: 'getItem', id, itemId, withOwner: true })
  authorizeAction(accessPolicyOf(request), action, storedRecord('conversation_items', itemId, owned.owner), request.principal, () => itemNotFound(id, itemId))
  return owned
}
