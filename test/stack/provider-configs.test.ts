import t from 'tap'
import { z } from 'zod'
import { parseConfig } from '../../src/config/index.js'
import { BUILTIN_PROVIDERS, resolveProviders, type ProviderSpec, type ResolvedProvider } from '../../src/stack/providers.js'
import { openaiProvider } from '../../actors/providers/inference/openai.js'
import { ollamaProvider } from '../../actors/providers/inference/ollama.js'
import { issuesOf } from '../fixtures/config.js'

const CA = new URL('../fixtures/tls/cert.pem', import.meta.url).pathname


/** The one inference provider of `type` with `config` (YAML flow mapping), resolved. */
function resolve(type: string, config = '{}', env: Record<string, string> = {}): ResolvedProvider {
  const [provider] = resolveProviders(parseConfig(`providers:\n  inference:\n    - { provider_id: p, provider_type: ${type}, config: ${config} }\n`, env, 't'))
  return provider!
}

/** llama-stack's default base URLs (providers/remote/inference/<name>/config.py). */
const DEFAULT_BASE_URLS = {
  'remote::openai': 'https://api.openai.com/v1',
  'remote::together': 'https://api.together.xyz/v1',
  'remote::fireworks': 'https://api.fireworks.ai/inference/v1',
  'remote::groq': 'https://api.groq.com/openai/v1',
  'remote::cerebras': 'https://api.cerebras.ai/v1',
  'remote::sambanova': 'https://api.sambanova.ai/v1',
  'remote::nvidia': 'https://integrate.api.nvidia.com/v1',
  'remote::llama-openai-compat': 'https://api.llama.com/compat/v1/',
  'remote::llama-cpp-server': 'http://localhost:8080/v1',
}
/** The types llama-stack gives no default: base_url must be set. */
const NEEDS_BASE_URL = ['remote::vllm', 'remote::azure', 'remote::runpod']

t.test("each OpenAI-compatible type of llama-stack is served by the OpenAI adapter, at llama-stack's default base URL", async t => {
  for (const [type, url] of Object.entries(DEFAULT_BASE_URLS)) {
    const provider = resolve(type)
    t.equal(provider.spec.behavior, openaiProvider, `${type} runs the remote::openai behaviour`)
    t.match(provider.config, { base_url: url, timeout_ms: 120_000, connections: 32, refresh_models: false }, `${type}: ${url}`)
  }
  for (const type of NEEDS_BASE_URL) {
    const found = issuesOf(() => resolve(type))
    t.same(found.map(i => i.path), ['providers.inference[0].config.base_url'], `${type} needs base_url`)
    t.match(found[0]?.message, new RegExp(`${type} needs base_url, e\\.g\\. https?://`))
  }
})

t.test("llama-stack's field names are read into the adapter's: url, api_token, allowed_models, max_tokens, network", async t => {
  t.match(resolve('remote::vllm', '{ url: "http://vllm:8000/v1", api_token: tok, tls_verify: false }').config, {
    base_url: 'http://vllm:8000/v1',
    api_key: 'tok',
    max_tokens: 4096,
    tls: { verify: false },
  })
  t.match(
    resolve('remote::vllm', `{ base_url: "https://vllm/v1", max_tokens: 512, allowed_models: [m1], network: { tls: { verify: ${CA}, min_version: TLSv1.3 }, timeout: 7.5, headers: { x-team: a } } }`).config,
    { base_url: 'https://vllm/v1', max_tokens: 512, models: ['m1'], tls: { verify: CA, min_version: 'TLSv1.3' }, timeout_ms: 7500, headers: { 'x-team': 'a' } },
  )
  t.match(resolve('remote::runpod', '{ url: "https://api.runpod.ai/v2/abc/openai/v1", api_token: rp }').config, { base_url: 'https://api.runpod.ai/v2/abc/openai/v1', api_key: 'rp' })
  t.match(resolve('remote::together', '{ api_key: tk, network: { timeout: { connect: 2, read: 30 } } }').config, { base_url: 'https://api.together.xyz/v1', api_key: 'tk', timeout_ms: 30_000 })
  // llama-stack up to 0.3 named the server, and its adapters added the API path.
  t.match(resolve('remote::groq', '{ url: "https://api.groq.com" }').config, { base_url: 'https://api.groq.com/openai/v1' })
  t.match(resolve('remote::nvidia', '{ url: "http://nim:8000" }').config, { base_url: 'http://nim:8000/v1' })
  t.match(resolve('remote::nvidia', '{ url: "http://nim:8000/v2", append_api_version: false }').config, { base_url: 'http://nim:8000/v2' })
  t.match(resolve('remote::azure', '{ api_base: "https://res.openai.azure.com", api_key: az, api_version: 2024-12-01-preview }').config, {
    base_url: 'https://res.openai.azure.com/openai/v1',
    api_key: 'az',
  })
  t.match(resolve('remote::openai', '{ refresh_models: true }').config, { base_url: 'https://api.openai.com/v1', refresh_models: true })
  const vllm = resolve('remote::vllm', '{ url: "http://vllm:8000/v1" }').config as Record<string, unknown>
  t.notOk('tls' in vllm, 'no TLS settings unless some are given')
})

t.test("troupe's own remote::openai fields keep working, and win over llama-stack's", async t => {
  t.same(resolve('remote::openai', '{ base_url: "http://h:1/v1", api_key: k, models: [a], timeout_ms: 5, connections: 2 }').config, {
    base_url: 'http://h:1/v1',
    api_key: 'k',
    models: ['a'],
    timeout_ms: 5,
    connections: 2,
    refresh_models: false,
  })
  t.match(resolve('remote::vllm', '{ base_url: "http://a/v1", url: "http://b/v1", models: [x], allowed_models: [y] }').config, { base_url: 'http://a/v1', models: ['x'] })
})

t.test('a required field that comes out empty after substitution, and fields troupe cannot honour, are errors naming their path', async t => {
  const empty = issuesOf(() => resolve('remote::vllm', '{ base_url: "${env.VLLM_URL:=}" }'))
  t.same(empty.map(i => i.path), ['providers.inference[0].config.base_url'])
  t.match(issuesOf(() => resolve('remote::openai', '{ network: { proxy: { url: "http://proxy:3128" } } }')), [{ path: 'providers.inference[0].config.network.proxy', message: /proxies are not supported/ }])
  t.match(issuesOf(() => resolve('remote::vllm', '{ url: "http://v/v1", tls_verify: /no/such/ca.pem }')), [{ path: 'providers.inference[0].config.tls.verify', message: /no such file/ }])
  t.match(issuesOf(() => resolve('remote::groq', '{ base_url: "not a url" }')), [{ path: 'providers.inference[0].config.base_url' }])
})

t.test("remote::ollama reads llama-stack's base_url (Ollama's /v1) as its root, and defaults as llama-stack does", async t => {
  const fromBase = resolve('remote::ollama', '{ base_url: "http://gpu:11434/v1" }')
  t.equal(fromBase.spec.behavior, ollamaProvider)
  t.same(fromBase.config, { url: 'http://gpu:11434', timeout_ms: 300_000, connections: 16, refresh_models: false })
  t.match(resolve('remote::ollama').config, { url: 'http://localhost:11434' })
  t.match(resolve('remote::ollama', '{ url: "http://a:1", base_url: "http://b:2/v1", refresh_models: true }').config, { url: 'http://a:1', refresh_models: true }, 'troupe\'s url wins')
  t.match(issuesOf(() => resolve('remote::ollama', '{ base_url: nope }')), [{ path: 'providers.inference[0].config.base_url' }])
})

t.test('two providers that troupe runs may not share an id, even under two APIs', async t => {
  const guard: ProviderSpec = { type: 'inline::guard', api: 'guarding', dependsOn: [], description: 'guard', configSchema: z.object({}), behavior: openaiProvider }
  const loaded = parseConfig('providers:\n  inference: [{ provider_id: same, provider_type: remote::ollama }]\n  guarding: [{ provider_id: same, provider_type: inline::guard }]\n', {}, 't')
  const found = issuesOf(() => resolveProviders(loaded, [...BUILTIN_PROVIDERS, guard]))
  t.match(found, [{ path: 'providers.guarding[0].provider_id', message: /'same' is also used by providers\.inference\[0\] \(inference\)/ }])
})
