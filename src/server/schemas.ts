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

const sampling = {
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().min(0).max(1).optional(),
  max_tokens: z.number().int().positive().optional(),
  n: z.number().int().min(1).max(128).optional(),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).optional(),
  seed: z.number().int().optional(),
  user: z.string().optional(),
}

export const chatCompletionBody = z
  .object({
    model: z.string().min(1),
    messages: z.array(chatMessage).min(1),
    stream: z.boolean().optional(),
    stream_options: z.object({ include_usage: z.boolean().optional() }).loose().optional(),
    max_completion_tokens: z.number().int().positive().optional(),
    ...sampling,
  })
  .loose()
export type ChatCompletionBody = z.infer<typeof chatCompletionBody>

export const completionBody = z
  .object({
    model: z.string().min(1),
    prompt: z.union([z.string(), z.array(z.string()).min(1), z.array(z.number().int()).min(1), z.array(z.array(z.number().int())).min(1)]),
    stream: z.literal(false, 'streaming is served for chat completions only').optional(),
    ...sampling,
  })
  .loose()

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
