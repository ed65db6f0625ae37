import { z } from 'zod'
import { ollamaConfigSchema } from '../../actors/providers/inference/ollama.js'
import { openaiConfigSchema, type OpenAIConfig } from '../../actors/providers/inference/openai.js'

/**
 * Provider configs as llama-stack writes them, read into what troupe's behaviours take. Each
 * OpenAI-compatible remote of llama-stack is served by the remote::openai behaviour under its
 * own type name, with its fields (base_url, or `url` as releases up to 0.3 had it; api_key or
 * api_token; allowed_models; max_tokens; network.tls, network.timeout, network.headers) and its
 * default base URL. troupe's own remote::openai fields (models, timeout_ms, connections, headers,
 * tls) are accepted beside them and win. Facts from llama-stack's
 * providers/remote/inference/<name>/config.py.
 */

interface OpenAICompatible {
  readonly description: string
  /** llama-stack's default base_url; without one, base_url must be set. */
  readonly baseUrl?: string
  /** An example of base_url, for the error when it is missing. */
  readonly example?: string
  /** The API root the fields of llama-stack's releases up to 0.3 named (`url`, azure's `api_base`, …), when they differ from base_url's. */
  readonly legacyRoot?: (config: LlamaStackFields) => string | undefined
  /** llama-stack's default max_tokens for requests that set none. */
  readonly maxTokens?: number
}

const joinPath = (url: string, path: string): string => `${url.replace(/\/+$/, '')}${path}`

/** The fields llama-stack's remote inference configs share (RemoteInferenceProviderConfig), and troupe's own. */
const llamaStackFields = z
  .object({
    base_url: z.string().min(1).optional(),
    url: z.string().min(1).optional(),
    api_key: z.string().min(1).optional(),
    api_token: z.string().min(1).optional(),
    allowed_models: z.array(z.string().min(1)).optional(),
    refresh_models: z.boolean().optional(),
    max_tokens: z.number().int().positive().optional(),
    /** vLLM's field before network.tls.verify. */
    tls_verify: z.union([z.boolean(), z.string().min(1)]).optional(),
    /** NVIDIA's request timeout, in seconds. */
    timeout: z.number().positive().optional(),
    network: z
      .object({
        tls: z
          .object({
            verify: z.union([z.boolean(), z.string().min(1)]).optional(),
            min_version: z.enum(['TLSv1.2', 'TLSv1.3']).optional(),
            ciphers: z.array(z.string().min(1)).optional(),
            client_cert: z.string().min(1).optional(),
            client_key: z.string().min(1).optional(),
          })
          .optional(),
        timeout: z.union([z.number().positive(), z.object({ connect: z.number().positive().optional(), read: z.number().positive().optional() })]).optional(),
        headers: z.record(z.string(), z.string()).optional(),
        proxy: z.unknown().refine(proxy => proxy === undefined, { error: "proxies are not supported by troupe's HTTP client: reach the upstream directly" }).optional(),
      })
      .optional(),
    // Fields of earlier releases, read by legacyRoot.
    append_api_version: z.boolean().optional(),
    api_base: z.string().min(1).optional(),
    openai_compat_api_base: z.string().min(1).optional(),
    // troupe's remote::openai fields, checked by its schema.
    models: z.unknown().optional(),
    timeout_ms: z.unknown().optional(),
    connections: z.unknown().optional(),
    headers: z.unknown().optional(),
    tls: z.unknown().optional(),
  })
  // Azure's api_version and api_type are read by llama-stack's config and used by none of its requests.
  .loose()
type LlamaStackFields = z.infer<typeof llamaStackFields>

/** A provider type's config schema: llama-stack's fields in, the remote::openai behaviour's config out. */
function openAICompatibleSchema(type: string, spec: OpenAICompatible): z.ZodType<OpenAIConfig> {
  const root = (config: LlamaStackFields): string | undefined => config.base_url ?? spec.legacyRoot?.(config) ?? config.url ?? spec.baseUrl
  return llamaStackFields
    .superRefine((config, ctx) => {
      if (root(config) === undefined) ctx.addIssue({ code: 'custom', path: ['base_url'], message: `${type} needs base_url${spec.example === undefined ? '' : `, e.g. ${spec.example}`}` })
    })
    .transform(config => {
      const network = config.network
      const verify = network?.tls?.verify ?? config.tls_verify
      const tls = network?.tls === undefined && verify === undefined ? undefined : { ...network?.tls, ...(verify === undefined ? {} : { verify }) }
      const timeout = typeof network?.timeout === 'number' ? network.timeout : (network?.timeout?.read ?? config.timeout)
      const maxTokens = config.max_tokens ?? spec.maxTokens
      // The values come in unchecked (troupe's own fields) or checked above; openaiConfigSchema checks them all next.
      const normalised: Record<string, unknown> = {
        base_url: root(config),
        ...defined('api_key', config.api_key ?? config.api_token),
        ...defined('models', config.models ?? config.allowed_models),
        ...defined('timeout_ms', config.timeout_ms ?? (timeout === undefined ? undefined : Math.round(timeout * 1000))),
        ...defined('connections', config.connections),
        ...defined('max_tokens', maxTokens),
        ...defined('headers', config.headers ?? network?.headers),
        ...defined('tls', config.tls ?? tls),
        ...defined('refresh_models', config.refresh_models),
      }
      return normalised as z.input<typeof openaiConfigSchema>
    })
    .pipe(openaiConfigSchema)
}

const defined = <K extends string, V>(key: K, value: V | undefined): Partial<Record<K, V>> => (value === undefined ? {} : ({ [key]: value } as Record<K, V>))

/** llama-stack's OpenAI-compatible remote inference providers, by type. */
export const OPENAI_COMPATIBLE = {
  'remote::openai': { description: 'OpenAI, or any OpenAI-compatible server (vLLM, llama.cpp server, …).', baseUrl: 'https://api.openai.com/v1' },
  'remote::vllm': { description: 'A vLLM server.', example: 'http://localhost:8000/v1', maxTokens: 4096 },
  'remote::together': { description: 'Together AI.', baseUrl: 'https://api.together.xyz/v1' },
  'remote::fireworks': { description: 'Fireworks AI.', baseUrl: 'https://api.fireworks.ai/inference/v1' },
  'remote::groq': { description: 'Groq.', baseUrl: 'https://api.groq.com/openai/v1', legacyRoot: c => (c.url === undefined ? undefined : joinPath(c.url, '/openai/v1')) },
  'remote::cerebras': { description: 'Cerebras.', baseUrl: 'https://api.cerebras.ai/v1' },
  'remote::sambanova': { description: 'SambaNova Cloud.', baseUrl: 'https://api.sambanova.ai/v1' },
  'remote::nvidia': {
    description: 'NVIDIA NIM, hosted or self-hosted.',
    baseUrl: 'https://integrate.api.nvidia.com/v1',
    legacyRoot: c => (c.url === undefined ? undefined : c.append_api_version === false ? c.url : joinPath(c.url, '/v1')),
  },
  'remote::azure': {
    description: 'Azure OpenAI, on its v1 API.',
    example: 'https://<resource>.openai.azure.com/openai/v1',
    legacyRoot: c => (c.api_base === undefined ? undefined : joinPath(c.api_base, '/openai/v1')),
  },
  'remote::llama-openai-compat': { description: "Meta's Llama API, on its OpenAI-compatible endpoint.", baseUrl: 'https://api.llama.com/compat/v1/', legacyRoot: c => c.openai_compat_api_base },
  'remote::runpod': { description: 'A RunPod serverless endpoint, on its OpenAI-compatible route.', example: 'https://api.runpod.ai/v2/<endpoint id>/openai/v1' },
  'remote::llama-cpp-server': { description: "llama.cpp's server.", baseUrl: 'http://localhost:8080/v1' },
} as const satisfies Record<string, OpenAICompatible>
export type OpenAICompatibleType = keyof typeof OPENAI_COMPATIBLE

export const openAICompatibleConfigSchema = (type: OpenAICompatibleType): z.ZodType<OpenAIConfig> => openAICompatibleSchema(type, OPENAI_COMPATIBLE[type])

/** llama-stack's default Ollama address: its OpenAI-compatible root. */
const DEFAULT_OLLAMA_URL = 'http://localhost:11434'

/**
 * remote::ollama: troupe speaks Ollama's own API at `url` (its root), as llama-stack's releases
 * up to 0.3 named it; later ones write `base_url`, the root of Ollama's OpenAI-compatible API
 * (`…/v1`), from which the root is taken. `url` wins when both are set.
 */
export const ollamaLlamaStackConfigSchema: z.ZodType = z
  .object({ url: z.unknown().optional(), base_url: z.url({ protocol: /^https?$/ }).optional() })
  .loose()
  .transform(({ base_url: baseUrl, ...config }) => ({ ...config, url: config.url ?? (baseUrl === undefined ? DEFAULT_OLLAMA_URL : baseUrl.replace(/\/v1\/?$/, '')) }))
  .pipe(ollamaConfigSchema)
