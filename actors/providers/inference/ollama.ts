import { randomUUID } from 'node:crypto'
import { z } from 'zod'
import { ActorError, defineBehavior } from '../../../src/index.js'
import { lines, Upstream } from '../upstream.js'
import {
  inferenceProtocol,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatMessage,
  type InferenceMessage,
  type UpstreamModel,
} from './protocol.js'

export const ollamaConfigSchema = z.object({
  url: z.url({ protocol: /^https?$/ }).describe("Ollama's address, e.g. http://localhost:11434."),
  timeout_ms: z.number().int().positive().default(300_000).describe('How long to wait for headers, and between streamed chunks (model loads are slow).'),
  connections: z.number().int().positive().max(1024).default(16).describe('Keep-alive connections to Ollama.'),
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
        const reply = await upstream.json<OllamaChat>({ method: 'POST', path: '/api/chat', body: chatBody(msg.request, false), cancellation: ctx.cancellation })
        return chatCompletion(msg.request.model, reply)
      }
      case 'completion': {
        const request = msg.request
        const reply = await upstream.json<{ response: string; done_reason?: string; prompt_eval_count?: number; eval_count?: number }>({
          method: 'POST',
          path: '/api/generate',
          body: { model: request.model, prompt: promptText(request['prompt']), stream: false, options: options(request) },
          cancellation: ctx.cancellation,
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
        const tags = await upstream.json<{ models?: Array<{ name: string }> }>({ method: 'GET', path: '/api/tags', cancellation: ctx.cancellation })
        return (tags.models ?? []).map((model): UpstreamModel => ({ id: model.name, model_type: /embed/i.test(model.name) ? 'embedding' : 'llm' }))
      }
      case 'health':
        return upstream.probe('/api/tags', ctx.cancellation)
    }
  },
  async *stream(state, msg: InferenceMessage, ctx) {
    if (msg.type !== 'chat') throw new ActorError('bad_message', `provider '${state.providerId}' streams chat only, not ${msg.type}`)
    const request = msg.request
    const body = await state.upstream.body({ method: 'POST', path: '/api/chat', body: chatBody(request, true), cancellation: ctx.cancellation })
    const id = `chatcmpl-${randomUUID()}`
    const created = nowSeconds()
    const chunk = (delta: ChatCompletionChunk['choices'][0]['delta'], finish: string | null): ChatCompletionChunk => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model: request.model,
      choices: [{ index: 0, delta, finish_reason: finish }],
    })
    let first = true
    for await (const line of lines(body)) {
      if (line.trim() === '') continue
      const part = parseLine(state.providerId, line)
      if (part.message !== undefined && (part.message.content !== '' || part.message.tool_calls !== undefined || first)) {
        const delta: ChatCompletionChunk['choices'][0]['delta'] = first ? { role: 'assistant', content: part.message.content } : { content: part.message.content }
        if (part.message.tool_calls !== undefined) delta['tool_calls'] = part.message.tool_calls
        yield chunk(delta, null)
        first = false
      }
      if (part.done) {
        const last = chunk({}, finishReason(part.done_reason))
        if ((request['stream_options'] as { include_usage?: boolean } | undefined)?.include_usage === true) last.usage = usage(part)
        yield last
        return
      }
    }
    throw new ActorError('upstream', `provider '${state.providerId}': the stream ended before Ollama said done`)
  },
  async stop(state) {
    await state.upstream.close()
  },
})

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
  const message: ChatCompletion['choices'][0]['message'] = { role: 'assistant', content: reply.message?.content ?? '' }
  if (reply.message?.tool_calls !== undefined) message['tool_calls'] = reply.message.tool_calls
  return {
    id: `chatcmpl-${randomUUID()}`,
    object: 'chat.completion',
    created: nowSeconds(),
    model,
    choices: [{ index: 0, message, finish_reason: finishReason(reply.done_reason) }],
    usage: usage(reply),
  }
}

function parseLine(providerId: string, line: string): OllamaChat {
  let part: OllamaChat
  try {
    part = JSON.parse(line) as OllamaChat
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
