import { randomUUID } from 'node:crypto'
import { z } from 'zod'
import { ActorError, defineBehavior, type Cancellation } from '../../../src/index.js'
import { lines, reportTo, Upstream, type FailureReport } from '../upstream.js'
import {
  inferenceProtocol,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatDelta,
  type ChatMessage,
  type ChatRequest,
  type InferenceMessage,
  type TextCompletion,
  type ToolCallDelta,
  type UpstreamModel,
} from './protocol.js'

export const ollamaConfigSchema = z.object({
  url: z.url({ protocol: /^https?$/ }).describe("Ollama's address, e.g. http://localhost:11434."),
  timeout_ms: z.number().int().positive().default(300_000).describe('How long to wait for headers, and between streamed chunks (model loads are slow).'),
  connections: z.number().int().positive().max(1024).default(16).describe('Keep-alive connections to Ollama.'),
  refresh_models: z.boolean().default(false).describe('List every model Ollama serves in /v1/models, as provider_id/model.'),
})
export type OllamaConfig = z.infer<typeof ollamaConfigSchema>

export interface OllamaProviderArgs {
  readonly providerId: string
  readonly config: OllamaConfig
}

interface State {
  readonly providerId: string
  readonly upstream: Upstream
}

/** What Ollama's /api/chat answers (one object, or one per NDJSON line when streaming). */
interface OllamaChat {
  model: string
  message?: { role: string; content: string; tool_calls?: unknown[] }
  done: boolean
  done_reason?: string
  prompt_eval_count?: number
  eval_count?: number
  error?: string
}

/** A model as Ollama's /api/tags lists it (its context length and capabilities need /api/show, one call per model: not asked). */
interface OllamaTag {
  readonly name: string
  readonly details?: { readonly family?: unknown; readonly families?: unknown; readonly parameter_size?: unknown; readonly quantization_level?: unknown } | null
}

function upstreamModel(model: OllamaTag): UpstreamModel {
  const details = model.details ?? {}
  const families = Array.isArray(details.families) ? details.families.filter((f): f is string => typeof f === 'string') : []
  // Ollama's embedding models are BERT-family (nomic-bert, bert) or say so in their name.
  const embedding = /embed/i.test(model.name) || families.some(f => /bert/i.test(f)) || (typeof details.family === 'string' && /bert/i.test(details.family))
  const shown = Object.fromEntries(
    (['family', 'parameter_size', 'quantization_level'] as const).filter(key => typeof details[key] === 'string').map(key => [key, details[key]]),
  )
  return { id: model.name, model_type: embedding ? 'embedding' : 'llm', ...(Object.keys(shown).length === 0 ? {} : { details: shown }) }
}

/**
 * remote::ollama: Ollama's own API (/api/chat, /api/generate, /api/embed, /api/tags, NDJSON
 * streaming), answered in OpenAI's shapes.
 */
export const ollamaProvider = defineBehavior(import.meta.url, 'ollamaProvider', {
  protocol: inferenceProtocol,
  maxConcurrent: 1024,
  init({ providerId, config }: OllamaProviderArgs): State {
    return { providerId, upstream: new Upstream({ provider: providerId, baseUrl: config.url, timeoutMs: config.timeout_ms, connections: config.connections }) }
  },
  async receive(state, msg: InferenceMessage, ctx) {
    const { upstream } = state
    switch (msg.type) {
      case 'chat': {
        const reply = await upstream.json<OllamaChat>({ method: 'POST', path: '/api/chat', body: chatBody(msg.request, false), cancellation: ctx.cancellation, report: reportTo(ctx.log, msg) })
        return chatCompletion(msg.request.model, reply)
      }
      case 'completion': {
        const request = msg.request
        const reply = await upstream.json<{ response: string; done_reason?: string; prompt_eval_count?: number; eval_count?: number }>({
          method: 'POST',
          path: '/api/generate',
          body: { model: request.model, prompt: promptText(request['prompt']), stream: false, options: options(request) },
          cancellation: ctx.cancellation,
          report: reportTo(ctx.log, msg),
        })
        return {
          id: `cmpl-${randomUUID()}`,
          object: 'text_completion',
          created: nowSeconds(),
          model: request.model,
          choices: [{ index: 0, text: reply.response, finish_reason: finishReason(reply.done_reason), logprobs: null }],
          usage: usage(reply),
        }
      }
      case 'embeddings': {
        const reply = await upstream.json<{ embeddings: number[][]; prompt_eval_count?: number }>({
          method: 'POST',
          path: '/api/embed',
          body: { model: msg.request.model, input: msg.request['input'] },
          cancellation: ctx.cancellation,
          report: reportTo(ctx.log, msg),
        })
        const tokens = reply.prompt_eval_count ?? 0
        const base64 = msg.request['encoding_format'] === 'base64'
        return {
          object: 'list',
          // OpenAI's base64 format: the little-endian float32 bytes of the vector.
          data: reply.embeddings.map((embedding, index) => ({ object: 'embedding', index, embedding: base64 ? Buffer.from(new Float32Array(embedding).buffer).toString('base64') : embedding })),
          model: msg.request.model,
          usage: { prompt_tokens: tokens, total_tokens: tokens },
        }
      }
      case 'listModels': {
        const tags = await upstream.json<{ models?: OllamaTag[] }>({ method: 'GET', path: '/api/tags', cancellation: ctx.cancellation })
        return (Array.isArray(tags.models) ? tags.models : []).filter(model => typeof model?.name === 'string').map(upstreamModel)
      }
    }
  },
  stream(state, msg: InferenceMessage, ctx) {
    if (msg.type === 'chat') return streamChat(state, msg.request, ctx.cancellation, reportTo(ctx.log, msg))
    if (msg.type === 'completion') return streamGenerate(state, msg.request, ctx.cancellation, reportTo(ctx.log, msg))
    throw new ActorError('bad_message', `provider '${state.providerId}' streams chat and completion only, not ${msg.type}`)
  },
  async stop(state) {
    await state.upstream.close()
  },
})

/** A tool call as Ollama sends it: whole in one message, its arguments an object. */
interface OllamaToolCall {
  id?: string
  function?: { name?: string; arguments?: unknown }
}

/** One NDJSON line of /api/generate. */
interface OllamaGenerate {
  response?: string
  done: boolean
  done_reason?: string
  prompt_eval_count?: number
  eval_count?: number
  error?: string
}

/** /api/chat's NDJSON as chat.completion.chunks. */
async function* streamChat(state: State, request: ChatRequest, cancellation: Cancellation, report: FailureReport): AsyncGenerator<ChatCompletionChunk> {
  const body = await state.upstream.body({ method: 'POST', path: '/api/chat', body: chatBody(request, true), cancellation, report })
  const id = `chatcmpl-${randomUUID()}`
  const created = nowSeconds()
  const chunk = (delta: ChatDelta, finish: string | null): ChatCompletionChunk => ({ id, object: 'chat.completion.chunk', created, model: request.model, choices: [{ index: 0, delta, finish_reason: finish }] })
  let first = true
  let toolCalls = 0
  for await (const line of lines(body)) {
    if (line.trim() === '') continue
    const part = parseLine<OllamaChat>(state.providerId, line)
    const calls = part.message?.tool_calls as OllamaToolCall[] | undefined
    if (part.message !== undefined && (part.message.content !== '' || calls !== undefined || first)) {
      const delta: ChatDelta = first ? { role: 'assistant', content: part.message.content } : { content: part.message.content }
      if (calls !== undefined) {
        delta.tool_calls = toolCallDeltas(calls, toolCalls)
        toolCalls += calls.length
      }
      yield chunk(delta, null)
      first = false
    }
    if (part.done) {
      // Ollama says `stop` after tool calls; OpenAI's clients look for `tool_calls`.
      const last = chunk({}, toolCalls > 0 ? 'tool_calls' : finishReason(part.done_reason))
      if (wantsUsage(request)) last.usage = usage(part)
      yield last
      return
    }
  }
  throw new ActorError('upstream', `provider '${state.providerId}': the stream ended before Ollama said done`)
}

/** /api/generate's NDJSON as text_completion chunks, as OpenAI streams a completion. */
async function* streamGenerate(state: State, request: { model: string } & Record<string, unknown>, cancellation: Cancellation, report: FailureReport): AsyncGenerator<TextCompletion> {
  const upstreamBody = { model: request.model, prompt: promptText(request['prompt']), stream: true, options: options(request) }
  const body = await state.upstream.body({ method: 'POST', path: '/api/generate', body: upstreamBody, cancellation, report })
  const id = `cmpl-${randomUUID()}`
  const created = nowSeconds()
  const chunk = (text: string, finish: string | null): TextCompletion => ({ id, object: 'text_completion', created, model: request.model, choices: [{ index: 0, text, finish_reason: finish, logprobs: null }] })
  for await (const line of lines(body)) {
    if (line.trim() === '') continue
    const part = parseLine<OllamaGenerate>(state.providerId, line)
    if (part.done) {
      const last = chunk(part.response ?? '', finishReason(part.done_reason))
      if (wantsUsage(request)) last.usage = usage(part)
      yield last
      return
    }
    if (part.response !== undefined && part.response !== '') yield chunk(part.response, null)
  }
  throw new ActorError('upstream', `provider '${state.providerId}': the stream ended before Ollama said done`)
}

/** OpenAI's shape of Ollama's tool calls, numbered on from `from` (the calls already streamed). */
function toolCallDeltas(calls: OllamaToolCall[], from: number): ToolCallDelta[] {
  return calls.map((call, i) => {
    const args = call.function?.arguments
    return {
      index: from + i,
      id: call.id ?? `call_${randomUUID()}`,
      type: 'function',
      function: { name: call.function?.name ?? '', arguments: typeof args === 'string' ? args : JSON.stringify(args ?? {}) },
    }
  })
}

function wantsUsage(request: Record<string, unknown>): boolean {
  return (request['stream_options'] as { include_usage?: boolean } | null | undefined)?.include_usage === true
}

function chatBody(request: { model: string; messages: ChatMessage[] } & Record<string, unknown>, stream: boolean): Record<string, unknown> {
  const body: Record<string, unknown> = {
    model: request.model,
    messages: request.messages.map(message => {
      const out: Record<string, unknown> = { role: message.role, content: promptText(message.content ?? '') }
      if (message['tool_calls'] !== undefined) out['tool_calls'] = message['tool_calls']
      return out
    }),
    stream,
    options: options(request),
  }
  if (request['tools'] !== undefined) body['tools'] = request['tools']
  const format = (request['response_format'] as { type?: string; json_schema?: { schema?: unknown } } | undefined)
  if (format?.type === 'json_object') body['format'] = 'json'
  else if (format?.type === 'json_schema' && format.json_schema?.schema !== undefined) body['format'] = format.json_schema.schema
  return body
}

/** OpenAI sampling fields as Ollama options. */
function options(request: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const copy = (from: string, to: string): void => {
    if (request[from] !== undefined && request[from] !== null) out[to] = request[from]
  }
  copy('temperature', 'temperature')
  copy('top_p', 'top_p')
  copy('seed', 'seed')
  copy('stop', 'stop')
  copy('frequency_penalty', 'frequency_penalty')
  copy('presence_penalty', 'presence_penalty')
  copy('max_tokens', 'num_predict')
  copy('max_completion_tokens', 'num_predict')
  if (typeof out['stop'] === 'string') out['stop'] = [out['stop']]
  return out
}

/** Text of a string, or of OpenAI content parts (text parts joined). */
function promptText(content: unknown): string {
  if (typeof content === 'string') return content
  if (Array.isArray(content)) {
    return content.map(part => (typeof part === 'string' ? part : (part as { type?: string; text?: string }).type === 'text' ? ((part as { text?: string }).text ?? '') : '')).join('')
  }
  return String(content ?? '')
}

function chatCompletion(model: string, reply: OllamaChat): ChatCompletion {
  const calls = reply.message?.tool_calls as OllamaToolCall[] | undefined
  const message: ChatCompletion['choices'][0]['message'] = { role: 'assistant', content: reply.message?.content ?? '' }
  if (calls !== undefined && calls.length > 0) {
    // OpenAI's shape, as the stream gives it: an id per call, arguments as a JSON string.
    message['tool_calls'] = toolCallDeltas(calls, 0).map(({ index: _index, ...call }) => call)
    if (message.content === '') message.content = null
  }
  return {
    id: `chatcmpl-${randomUUID()}`,
    object: 'chat.completion',
    created: nowSeconds(),
    model,
    choices: [{ index: 0, message, finish_reason: calls !== undefined && calls.length > 0 ? 'tool_calls' : finishReason(reply.done_reason) }],
    usage: usage(reply),
  }
}

function parseLine<T extends { error?: string }>(providerId: string, line: string): T {
  let part: T
  try {
    part = JSON.parse(line) as T
  } catch {
    throw new ActorError('upstream', `provider '${providerId}': unreadable stream line: ${line.slice(0, 200)}`)
  }
  if (part.error !== undefined) throw new ActorError('upstream', `provider '${providerId}': Ollama failed mid-stream: ${part.error}`)
  return part
}

function finishReason(doneReason: string | undefined): string {
  return doneReason === 'length' ? 'length' : 'stop'
}

function usage(reply: { prompt_eval_count?: number; eval_count?: number }): { prompt_tokens: number; completion_tokens: number; total_tokens: number } {
  const prompt = reply.prompt_eval_count ?? 0
  const completion = reply.eval_count ?? 0
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000)
}
