import t from 'tap'
import { z } from 'zod'
import { parseConfig } from '../../src/config/index.js'
import { BUILTIN_PROVIDERS, resolveProviders, type ProviderSpec } from '../../src/stack/providers.js'
import { checkStack } from '../../src/supervisor/stack.js'
import { openaiProvider } from '../../actors/providers/inference/openai.js'
import { issuesOf } from '../fixtures/config.js'


const providersYaml = (list: string): string => `
providers:
${list}
`

t.test('provider configs are checked by their type, with the path in the file', async t => {
  const loaded = parseConfig(
    providersYaml(`
  inference:
    - provider_id: off
      provider_type: remote::openai
      config: { base_url: '\${env.NOPE:+x}' }
    - provider_id: ''
      provider_type: remote::openai
    - provider_id: bad-url
      provider_type: remote::openai
      config: { base_url: not a url }
    - provider_id: typo
      provider_type: remote::olama
    - provider_id: wrong-api
      provider_type: remote::ollama
      config: { url: 'http://x:1', timeout_ms: -5 }
  guardrails:
    - provider_id: misplaced
      provider_type: remote::openai
      config: { base_url: 'http://x' }
`).replace('off', '__disabled__'),
    {},
  )
  const issues = issuesOf(() => resolveProviders(loaded))
  t.same(
    issues.map(i => i.path),
    ['providers.inference[2].config.base_url', 'providers.inference[3].provider_type', 'providers.inference[4].config.timeout_ms', 'providers.guardrails[0].provider_type'],
    'disabled providers keep the others at their file positions',
  )
  t.match(issues[0]!.message, /URL/i)
  t.match(issues[1]!.message, /unknown provider type 'remote::olama' \(for inference: remote::openai, remote::ollama, remote::vllm, /)
  t.match(issues[3]!.message, /serves the inference API, not guardrails/)
})

t.test('providers start after the providers of the APIs they depend on; cycles and gaps are named', async t => {
  const spec = (type: string, api: string, dependsOn: string[]): ProviderSpec => ({ type, api, dependsOn, description: type, configSchema: z.object({}), behavior: openaiProvider })
  const registry = [...BUILTIN_PROVIDERS, spec('inline::planner', 'planning', ['inference', 'guarding']), spec('inline::guard', 'guarding', ['inference']), spec('inline::loop-a', 'a', ['b']), spec('inline::loop-b', 'b', ['a'])]
  const ordered = resolveProviders(
    parseConfig(
      providersYaml(`
  planning: [{ provider_id: agent, provider_type: inline::planner }]
  guarding: [{ provider_id: guard, provider_type: inline::guard }]
  inference: [{ provider_id: llm, provider_type: remote::ollama, config: { url: 'http://x:1' } }]
`),
      {},
    ),
    registry,
  )
  t.same(
    ordered.map(p => p.providerId),
    ['llm', 'guard', 'agent'],
  )

  const missing = issuesOf(() => resolveProviders(parseConfig(providersYaml(`  planning: [{ provider_id: agent, provider_type: inline::planner }]`), {}), registry))
  t.match(missing, [
    { path: 'providers.planning[0]', message: /provider 'agent' \(inline::planner\) needs the inference API, which no provider serves/ },
    { path: 'providers.planning[0]', message: /needs the guarding API/ },
  ])

  const cycle = issuesOf(() =>
    resolveProviders(parseConfig(providersYaml(`  a: [{ provider_id: first, provider_type: inline::loop-a }]\n  b: [{ provider_id: second, provider_type: inline::loop-b }]`), {}), registry),
  )
  t.match(cycle, [{ message: /cycle: first \(a\) -> second \(b\) -> first \(a\)/ }])
})

t.test('registered models must name a configured provider', async t => {
  const loaded = parseConfig(
    `
providers:
  inference: [{ provider_id: llm, provider_type: remote::ollama, config: { url: 'http://x:1' } }]
registered_resources:
  models:
    - { model_id: ok, provider_id: llm }
    - { model_id: orphan, provider_id: gone }
`,
    {},
  )
  t.match(issuesOf(() => checkStack(loaded)), [{ path: 'registered_resources.models[1].provider_id', message: /no provider 'gone' is configured \(configured: llm\)/ }])
})
