import type { ActorRef } from '../../actor/index.js'
import { afterNotFound, completionNotFound, MAX_LIST_LIMIT, type CompletionList, type InferenceStoreMessage, type OwnedCompletion, type OwnedCompletionList, type StoredCompletion } from '../../../actors/stores/inference-store.js'
import { validate } from '../http.js'
import { accessPolicyOf, authorizeAction, storedRecord } from '../ownership.js'
import { readablePage } from '../readable-page.js'
import type { Route } from '../route.js'
import { completionListQuery, messageListQuery } from '../schemas.js'
import type { ServedRequest } from '../served-request.js'

/** As OpenAI's list of stored chat completions pages by default. */
const DEFAULT_LIMIT = 20

/**
 * The stored chat completions: GET /v1/chat/completions, /{id} and /{id}/messages. Each is
 * `sql_record::chat_completions::<id>` to the access policy, owned by whoever chatted: an
 * authenticated caller lists only those they may read, and one they may not is answered as one
 * that does not exist. `store` throws the route's not-configured error when there is none.
 */
export function storedCompletionRoutes(store: () => ActorRef<InferenceStoreMessage>): Route[] {
  return [
    {
      method: 'GET',
      path: '/v1/chat/completions',
      api: 'inference',
      handle: async request => {
        const { after, limit, order, model } = validate(completionListQuery, Object.fromEntries(request.query), 'query')
        const filters = { ...(order === undefined ? {} : { order }), ...(model === undefined ? {} : { model }) }
        const user = request.principal
        if (user === undefined) return store().ask<CompletionList>({ type: 'list', ...filters, ...(after === undefined ? {} : { after }), ...(limit === undefined ? {} : { limit }) })
        const inference = store()
        const policy = accessPolicyOf(request)
        return readablePage<StoredCompletion>({
          after,
          limit: limit ?? DEFAULT_LIMIT,
          maxBatch: MAX_LIST_LIMIT,
          read: (from, batch) => inference.ask<OwnedCompletionList>({ type: 'list', withOwners: true, limit: batch, ...filters, ...(from === undefined ? {} : { after: from }) }),
          idOf: completion => completion.id,
          mayRead: (id, owner) => policy.allows('read', storedRecord('chat_completions', id, owner), user),
          afterNotFound,
        })
      },
    },
    {
      method: 'GET',
      path: '/v1/chat/completions/{completion_id}',
      api: 'inference',
      handle: request => readableCompletion(store(), request),
    },
    {
      method: 'GET',
      path: '/v1/chat/completions/{completion_id}/messages',
      api: 'inference',
      handle: async request => {
        const { after, limit, order } = validate(messageListQuery, Object.fromEntries(request.query), 'query')
        const inference = store()
        // Its messages are the completion's: another's are not there to the caller.
        if (request.principal !== undefined) await readableCompletion(inference, request)
        const id = request.params['completion_id']!
        return inference.ask({ type: 'messages', id, ...(after === undefined ? {} : { after }), ...(limit === undefined ? {} : { limit }), ...(order === undefined ? {} : { order }) })
      },
    },
  ]
}

/** The completion of the request's path, when its caller may read it; else the answer to a missing id. */
async function readableCompletion(inference: ActorRef<InferenceStoreMessage>, request: ServedRequest): Promise<StoredCompletion> {
  const id = request.params['completion_id']!
  const user = request.principal
  if (user === undefined) return inference.ask<StoredCompletion>({ type: 'get', id })
  const { completion, owner } = await inference.ask<OwnedCompletion>({ type: 'get', id, withOwner: true })
  authorizeAction(accessPolicyOf(request), 'read', storedRecord('chat_completions', id, owner), user, () => completionNotFound(id))
  return completion
}
