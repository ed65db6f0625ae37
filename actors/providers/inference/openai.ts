import { existsSync, readFileSync } from 'node:fs'
import { z } from 'zod'
import { ActorError, defineBehavior } from '../../../src/index.js'
import { reportTo, sseData, Upstream, type UpstreamTls } from '../upstream.js'
import { inferenceProtocol, type ChatCompletion, type ChatCompletionChunk, type InferenceMessage, type TextCompletion, type UpstreamModel } from './protocol.js'

/** A file the provider reads when it starts (a CA bundle, a client certificate): checked when the config is. */
const existingFile = z
  .string()
  .min(1)
  .refine(path => existsSync(path), { error: 'no such file' })

export const openaiConfigSchema = z.object({
  base_url: z.url({ protocol: /^https?$/ }).default('https://api.openai.com/v1').describe('The API root, e.g. https://api.openai.com/v1 (the default) or http://localhost:8000/v1.'),
  api_key: z.string().min(1).optional().describe('Sent as a Bearer token.'),
  models: z.array(z.string().min(1)).optional().describe('Allow-list of upstream model ids; others are refused with model_not_found.'),
  timeout_ms: z.number().int().positive().default(120_000).describe('How long to wait for headers, and between streamed chunks.'),
  connections: z.number().int().positive().max(1024).default(32).describe('Keep-alive connections to the upstream.'),
  max_tokens: z.number().int().positive().optional().describe('max_tokens sent with a chat or completion request that sets neither max_tokens nor max_completion_tokens.'),
  headers: z.record(z.string(), z.string()).optional().describe('Extra HTTP headers sent with every request.'),
  tls: z
    .object({
      verify: z.union([z.boolean(), existingFile]).default(true).describe("false: the upstream's certificate is not verified; a path: a PEM CA bundle it is verified against, instead of the system's."),
      client_cert: existingFile.optional().describe('PEM client certificate, for an upstream that requires one (with client_key).'),
      client_key: existingFile.optional().describe('PEM private key of client_cert.'),
      min_version: z.enum(['TLSv1.2', 'TLSv1.3']).optional().describe('Oldest TLS version accepted.'),
      ciphers: z.array(z.string().min(1)).optional().describe('Cipher suites allowed, in OpenSSL names.'),
    })
    .refine(tls => (tls.client_cert === undefined) === (tls.client_key === undefined), { error: 'client_cert and client_key go together' })
    .optional()
    .describe('How an https upstream is verified, and the client certificate.'),
  refresh_models: z.boolean().default(false).describe('List every model the provider serves in /v1/models, as provider_id/model.'),
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
  /** max_tokens for a request that sets no limit of its own. */
  readonly maxTokens: number | undefined
}

/**
 * remote::openai: any server that speaks OpenAI's API (OpenAI, vLLM, llama.cpp's server, …).
 * Requests go upstream as they came, extra fields included.
 */
export const openaiProvider = defineBehavior(import.meta.url, 'openaiProvider', {
  protocol: inferenceProtocol,
  maxConcurrent: 1024,
  init({ providerId, config }: OpenAIProviderArgs): State {
    const headers: Record<string, string> = { ...config.headers, ...(config.api_key === undefined ? {} : { authorization: `Bearer ${config.api_key}` }) }
    const tls = upstreamTls(config.tls)
    return {
      providerId,
      upstream: new Upstream({ provider: providerId, baseUrl: config.base_url, headers, timeoutMs: config.timeout_ms, connections: config.connections, ...(tls === undefined ? {} : { tls }) }),
      allowed: config.models === undefined ? undefined : new Set(config.models),
      maxTokens: config.max_tokens,
    }
  },
  async receive(state, msg: InferenceMessage, ctx) {
    const { upstream } = state
    switch (msg.type) {
      case 'chat':
        allow(state, msg.request.model)
        return upstream.json<ChatCompletion>({ method: 'POST', path: '/chat/completions', body: withDefaultMaxTokens(state, { ...msg.request, stream: false }), cancellation: ctx.cancellation, report: reportTo(ctx.log, msg) })
      case 'completion':
        allow(state, msg.request.model)
        return upstream.json({ method: 'POST', path: '/completions', body: withDefaultMaxTokens(state, { ...msg.request, stream: false }), cancellation: ctx.cancellation, report: reportTo(ctx.log, msg) })
      case 'embeddings':
        allow(state, msg.request.model)
        return upstream.json({ method: 'POST', path: '/embeddings', body: msg.request, cancellation: ctx.cancellation, report: reportTo(ctx.log, msg) })
      case 'listModels': {
        const list = await upstream.json<{ data?: ListedModel[] }>({ method: 'GET', path: '/models', cancellation: ctx.cancellation })
        // A list that is not one, or an entry without an id, is skipped, never a crash.
        const data = Array.isArray(list.data) ? list.data : []
        return data.filter(model => typeof model?.id === 'string' && (state.allowed === undefined || state.allowed.has(model.id))).map(upstreamModel)
      }
    }
  },
  async *stream(state, msg: InferenceMessage, ctx) {
    if (msg.type !== 'chat' && msg.type !== 'completion') throw new ActorError('bad_message', `provider '${state.providerId}' streams chat and completion only, not ${msg.type}`)
    allow(state, msg.request.model)
    // OpenAI streams both as server-sent events ending with [DONE]: chat.completion.chunk objects, or text_completion ones.
    const path = msg.type === 'chat' ? '/chat/completions' : '/completions'
    const body = await state.upstream.body({ method: 'POST', path, body: withDefaultMaxTokens(state, { ...msg.request, stream: true }), cancellation: ctx.cancellation, report: reportTo(ctx.log, msg) })
    for await (const data of sseData(body)) {
      if (data === '[DONE]') return
      yield parseChunk(state.providerId, data)
    }
  },
  async stop(state) {
    await state.upstream.close()
  },
})

/**
 * A model as OpenAI-compatible servers list it. OpenAI sends id, created and owned_by only;
 * the others add what they know under their own names: vLLM `max_model_len`, Together and
 * OpenRouter `context_length` (Together also `type`), Groq `context_window`, llama.cpp's server
 * `meta.n_ctx_train` and `meta.n_embd`.
 */
interface ListedModel {
  readonly id: string
  readonly owned_by?: unknown
  readonly type?: unknown
  readonly context_length?: unknown
  readonly max_model_len?: unknown
  readonly context_window?: unknown
  readonly meta?: { readonly n_ctx_train?: unknown; readonly n_embd?: unknown } | null
}

function upstreamModel(model: ListedModel): UpstreamModel {
  const positive = (value: unknown): number | undefined => (typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined)
  const embedding = model.type === 'embedding' || /embed/i.test(model.id)
  const contextLength = positive(model.context_length) ?? positive(model.max_model_len) ?? positive(model.context_window) ?? positive(model.meta?.n_ctx_train)
  const dimension = embedding ? positive(model.meta?.n_embd) : undefined
  return {
    id: model.id,
    model_type: embedding ? 'embedding' : 'llm',
    ...(contextLength === undefined ? {} : { context_length: contextLength }),
    ...(dimension === undefined ? {} : { embedding_dimension: dimension }),
    ...(typeof model.owned_by === 'string' ? { details: { owned_by: model.owned_by } } : {}),
  }
}

/** The request with the provider's max_tokens when it sets no limit (llama-stack's vLLM adapter does the same). */
export function withDefaultMaxTokens<R extends Record<string, unknown>>(state: { readonly maxTokens: number | undefined }, request: R): R {
  if (state.maxTokens === undefined || request['max_tokens'] != null || request['max_completion_tokens'] != null) return request
  return { ...request, max_tokens: state.maxTokens }
}

/** The connection options of `tls`, its files read (once, when the provider starts). */
function upstreamTls(tls: OpenAIConfig['tls']): UpstreamTls | undefined {
  if (tls === undefined) return undefined
  return {
    rejectUnauthorized: tls.verify !== false,
    ...(typeof tls.verify === 'string' ? { ca: readFileSync(tls.verify) } : {}),
    ...(tls.client_cert === undefined || tls.client_key === undefined ? {} : { cert: readFileSync(tls.client_cert), key: readFileSync(tls.client_key) }),
    ...(tls.min_version === undefined ? {} : { minVersion: tls.min_version }),
    ...(tls.ciphers === undefined ? {} : { ciphers: tls.ciphers.join(':') }),
  }
}

function allow(state: State, model: string): void {
  if (state.allowed !== undefined && !state.allowed.has(model)) {
    throw new ActorError('model_not_found', `provider '${state.providerId}' does not serve '${model}' (not in its models allow-list)`)
  }
}

function parseChunk(providerId: string, data: string): ChatCompletionChunk | TextCompletion {
  let chunk: unknown
  try {
    chunk = JSON.parse(data)
  } catch {
    throw new ActorError('upstream', `provider '${providerId}': unreadable stream event: ${data.slice(0, 200)}`)
  }
  const error = (chunk as { error?: { message?: unknown } }).error
  if (error !== undefined) throw new ActorError('upstream', `provider '${providerId}': upstream failed mid-stream: ${String(error.message ?? JSON.stringify(error))}`)
  return chunk as ChatCompletionChunk | TextCompletion
}
