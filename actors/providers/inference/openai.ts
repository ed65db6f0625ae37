import { z } from 'zod'
import { ActorError, defineBehavior } from '../../../src/index.js'
import { sseData, Upstream } from '../upstream.js'
import { inferenceProtocol, type ChatCompletion, type ChatCompletionChunk, type InferenceMessage, type UpstreamModel } from './protocol.js'

export const openaiConfigSchema = z.object({
  base_url: z.url({ protocol: /^https?$/ }).describe('The API root, e.g. https://api.openai.com/v1 or http://localhost:8000/v1.'),
  api_key: z.string().min(1).optional().describe('Sent as a Bearer token.'),
  models: z.array(z.string().min(1)).optional().describe('Allow-list of upstream model ids; others are refused with model_not_found.'),
  timeout_ms: z.number().int().positive().default(120_000).describe('How long to wait for headers, and between streamed chunks.'),
  connections: z.number().int().positive().max(1024).default(32).describe('Keep-alive connections to the upstream.'),
})
export type OpenAIConfig = z.infer<typeof openaiConfigSchema>

export interface OpenAIProviderArgs {
  readonly providerId: string
  readonly config: OpenAIConfig
}

interface State {
  readonly providerId: string
  readonly upstream: Upstream
  readonly allowed: ReadonlySet<string> | undefined
}

/**
 * remote::openai: any server that speaks OpenAI's API (OpenAI, vLLM, llama.cpp's server, …).
 * Requests go upstream as they came, extra fields included.
 */
export const openaiProvider = defineBehavior(import.meta.url, 'openaiProvider', {
  protocol: inferenceProtocol,
  maxConcurrent: 1024,
  init({ providerId, config }: OpenAIProviderArgs): State {
    const headers: Record<string, string> = config.api_key === undefined ? {} : { authorization: `Bearer ${config.api_key}` }
    return {
      providerId,
      upstream: new Upstream({ provider: providerId, baseUrl: config.base_url, headers, timeoutMs: config.timeout_ms, connections: config.connections }),
      allowed: config.models === undefined ? undefined : new Set(config.models),
    }
  },
  async receive(state, msg: InferenceMessage, ctx) {
    const { upstream } = state
    switch (msg.type) {
      case 'chat':
        allow(state, msg.request.model)
        return upstream.json<ChatCompletion>({ method: 'POST', path: '/chat/completions', body: { ...msg.request, stream: false }, cancellation: ctx.cancellation })
      case 'completion':
        allow(state, msg.request.model)
        return upstream.json({ method: 'POST', path: '/completions', body: { ...msg.request, stream: false }, cancellation: ctx.cancellation })
      case 'embeddings':
        allow(state, msg.request.model)
        return upstream.json({ method: 'POST', path: '/embeddings', body: msg.request, cancellation: ctx.cancellation })
      case 'listModels': {
        const list = await upstream.json<{ data?: Array<{ id: string }> }>({ method: 'GET', path: '/models', cancellation: ctx.cancellation })
        return (list.data ?? [])
          .filter(model => state.allowed === undefined || state.allowed.has(model.id))
          .map((model): UpstreamModel => ({ id: model.id, model_type: /embed/i.test(model.id) ? 'embedding' : 'llm' }))
      }
      case 'health':
        return upstream.probe('/models', ctx.cancellation)
    }
  },
  async *stream(state, msg: InferenceMessage, ctx) {
    if (msg.type !== 'chat') throw new ActorError('bad_message', `provider '${state.providerId}' streams chat only, not ${msg.type}`)
    allow(state, msg.request.model)
    const body = await state.upstream.body({ method: 'POST', path: '/chat/completions', body: { ...msg.request, stream: true }, cancellation: ctx.cancellation })
    for await (const data of sseData(body)) {
      if (data === '[DONE]') return
      const chunk = parseChunk(state.providerId, data)
      yield chunk
    }
  },
  async stop(state) {
    await state.upstream.close()
  },
})

function allow(state: State, model: string): void {
  if (state.allowed !== undefined && !state.allowed.has(model)) {
    throw new ActorError('model_not_found', `provider '${state.providerId}' does not serve '${model}' (not in its models allow-list)`)
  }
}

function parseChunk(providerId: string, data: string): ChatCompletionChunk {
  let chunk: unknown
  try {
    chunk = JSON.parse(data)
  } catch {
    throw new ActorError('upstream', `provider '${providerId}': unreadable stream event: ${data.slice(0, 200)}`)
  }
  const error = (chunk as { error?: { message?: unknown } }).error
  if (error !== undefined) throw new ActorError('upstream', `provider '${providerId}': upstream failed mid-stream: ${String(error.message ?? JSON.stringify(error))}`)
  return chunk as ChatCompletionChunk
}
