import { z } from 'zod'

/**
 * What every inference provider actor answers, whatever it talks to upstream. Requests and
 * replies are OpenAI's shapes (chat completions, completions, embeddings), so the HTTP layer
 * passes them through; `model` in a request is already the provider's own model id. An
 * OpenAI-compatible upstream receives the request as is, extra fields included; others map it.
 */

/** An OpenAI chat completion request body, extra fields kept. */
export type ChatRequest = { model: string; messages: ChatMessage[]; stream?: boolean } & Record<string, unknown>
export type ChatMessage = { role: string; content?: unknown } & Record<string, unknown>
export type CompletionRequest = { model: string; prompt: unknown } & Record<string, unknown>
export type EmbeddingsRequest = { model: string; input: unknown } & Record<string, unknown>

export interface ChatCompletion {
  id: string
  object: 'chat.completion'
  created: number
  model: string
  choices: Array<{ index: number; message: { role: string; content: string | null } & Record<string, unknown>; finish_reason: string | null } & Record<string, unknown>>
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number }
}

export interface ChatCompletionChunk {
  id: string
  object: 'chat.completion.chunk'
  created: number
  model: string
  choices: Array<{ index: number; delta: ChatDelta; finish_reason: string | null; logprobs?: ChatLogprobs | null }>
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null
}

export type ChatDelta = { role?: string; content?: string | null; refusal?: string | null; tool_calls?: ToolCallDelta[] } & Record<string, unknown>

/**
 * One fragment of a streamed tool call. Fragments of one call share `index`; its first carries
 * `id`, `type` and `function.name`, and `function.arguments` arrives in pieces to concatenate.
 */
export interface ToolCallDelta {
  index: number
  id?: string
  type?: string
  function?: { name?: string; arguments?: string }
}

/** A chat choice's log probabilities: a streamed chunk carries those of its own tokens. */
export interface ChatLogprobs {
  content?: unknown[] | null
  refusal?: unknown[] | null
}

/**
 * OpenAI's legacy completion. Streamed, every chunk is one of these too (`object` stays
 * `text_completion`), each choice carrying its next piece of `text`.
 */
export interface TextCompletion {
  id: string
  object: 'text_completion'
  created: number
  model: string
  choices: Array<{ index: number; text: string; finish_reason: string | null; logprobs: unknown } & Record<string, unknown>>
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null
}

/** A model the upstream says it serves, with what it reports of it (each field only when it does). */
export interface UpstreamModel {
  readonly id: string
  readonly model_type: 'llm' | 'embedding'
  readonly context_length?: number
  readonly embedding_dimension?: number
  /** What it can do, in the backend's words (Ollama's `completion`, `tools`, `vision`, …). */
  readonly capabilities?: readonly string[]
  /** Other facts worth showing: owner, family, parameter size, quantization. */
  readonly details?: Readonly<Record<string, unknown>>
}


const request = z.object({ model: z.string() }).loose()
const chatRequest = z.object({ model: z.string(), messages: z.array(z.object({ role: z.string() }).loose()) }).loose()

/**
 * The id of the HTTP request an inference ask serves (its `x-request-id`), when it serves one:
 * the provider puts it in its log lines about the call. It rides in the message because the
 * kernel's envelope carries no per-request context.
 */
const requestId = z.string().optional()

export const inferenceProtocol = z.discriminatedUnion('type', [
  /** Replies with a ChatCompletion; streamed (ref.stream), yields ChatCompletionChunks. */
  z.object({ type: z.literal('chat'), request: chatRequest, request_id: requestId }),
  /** Replies with a TextCompletion; streamed (ref.stream), yields TextCompletion chunks. */
  z.object({ type: z.literal('completion'), request, request_id: requestId }),
  z.object({ type: z.literal('embeddings'), request, request_id: requestId }),
  /** What the upstream serves now: UpstreamModel[]. The reconciler asks it; whether it answers is the provider's health. */
  z.object({ type: z.literal('listModels') }),
])
export type InferenceMessage = z.infer<typeof inferenceProtocol>

/** Codes inference providers reject with (each is in docs/errors.md). */
export const INFERENCE_ERROR_CODES = {
  invalid_request: 'the upstream refused the request as malformed (HTTP 400/422); its message says why',
  model_not_found: 'the upstream does not serve the model (HTTP 404)',
  rate_limit: 'the upstream is rate limiting (HTTP 429); retry later',
  auth: "the upstream refused the provider's credentials (HTTP 401/403)",
  timeout: 'the upstream did not answer within the provider timeout',
  upstream: 'the upstream could not be reached, failed (HTTP 5xx), or sent something unreadable',
} as const
