import { z } from 'zod'

/**
 * Request bodies, validated at the edge. Objects are loose: OpenAI grows new fields faster than
 * any gateway, and an OpenAI-compatible upstream should see what the client sent.
 */

const content = z.union([z.string(), z.array(z.object({ type: z.string() }).loose()), z.null()])

export const chatMessage = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
    content: content.optional(),
    name: z.string().optional(),
  })
  .loose()

/**
 * What chat completions and completions share, bounded as llama-stack's OpenAI-compatible request
 * models bound them (and OpenAI's API reference where it is stricter: `n`, `stop`). Null is taken
 * as absent, as both take it.
 */
const penalty = z.number().min(-2).max(2).nullish()
const sampling = {
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  max_tokens: z.number().int().positive().nullish(),
  n: z.number().int().min(1).max(128).nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).nullish(),
  seed: z.number().int().nullish(),
  user: z.string().nullish(),
  frequency_penalty: penalty,
  presence_penalty: penalty,
  /** Token id → bias added to its logit. */
  logit_bias: z.record(z.string(), z.number().min(-100).max(100)).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).loose().nullish(),
}

export const chatCompletionBody = z
  .object({
    model: z.string().min(1),
    messages: z.array(chatMessage).min(1),
    max_completion_tokens: z.number().int().positive().nullish(),
    logprobs: z.boolean().nullish(),
    top_logprobs: z.number().int().min(0).max(20).nullish(),
    safety_identifier: z.string().max(64).nullish(),
    prompt_cache_key: z.string().max(64).nullish(),
    ...sampling,
  })
  .loose()
  // OpenAI's reference: "logprobs must be set to true if this parameter is used".
  .refine(body => body.top_logprobs === undefined || body.top_logprobs === null || body.logprobs === true, { message: 'needs logprobs: true', path: ['top_logprobs'] })
export type ChatCompletionBody = z.infer<typeof chatCompletionBody>

export const completionBody = z
  .object({
    model: z.string().min(1),
    prompt: z.union([z.string(), z.array(z.string()).min(1), z.array(z.number().int()).min(1), z.array(z.array(z.number().int())).min(1)]),
    // OpenAI's legacy API takes how many top tokens to return (at most 5); llama-stack types it as a boolean.
    logprobs: z.union([z.boolean(), z.number().int().min(0).max(5)], 'expected a boolean, or an integer from 0 to 5').nullish(),
    best_of: z.number().int().min(1).max(20).nullish(),
    echo: z.boolean().nullish(),
    suffix: z.string().nullish(),
    ...sampling,
  })
  .loose()
  // best_of completions are generated server-side and the best n returned: n cannot exceed it.
  .refine(body => body.best_of === undefined || body.best_of === null || (body.n ?? 1) <= body.best_of, { message: 'must be at least n', path: ['best_of'] })

export const embeddingsBody = z
  .object({
    model: z.string().min(1),
    input: z.union([z.string(), z.array(z.string()).min(1), z.array(z.number().int()).min(1), z.array(z.array(z.number().int())).min(1)]),
    encoding_format: z.enum(['float', 'base64']).optional(),
    dimensions: z.number().int().positive().optional(),
  })
  .loose()

export const registerModelBody = z.object({
  model_id: z.string().min(1),
  provider_id: z.string().min(1),
  provider_model_id: z.string().min(1).optional(),
  model_type: z.enum(['llm', 'embedding']).optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
})

/**
 * GET /v1/inspect/routes's filter, as llama-stack takes it: an API level (routes at that level)
 * or `deprecated` (routes deprecated at any level).
 */
export const inspectRoutesQuery = z.object({ api_filter: z.enum(['v1', 'v1alpha', 'v1beta', 'deprecated']).optional() })

/** `limit` and `order` query parameters of a list endpoint. */
export const listQuery = z.object({
  after: z.string().min(1).optional(),
  limit: z.coerce.number().int().min(1).max(100).optional(),
  order: z.enum(['asc', 'desc']).optional(),
  model: z.string().min(1).optional(),
})

/** Stored chat completions list up to 1000 a page: llama-stack's clients and tests ask for that many. */
export const completionListQuery = listQuery.extend({ limit: z.coerce.number().int().min(1).max(1000).optional() })

/** A stored completion's input messages: paged as conversation items are, with no model to filter by. */
export const messageListQuery = listQuery.omit({ model: true })
