import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { runCli } from '../fixtures/cli.js'
import { configIssues as issues, issuesOf } from '../fixtures/config.js'
import { parseConfig } from '../../src/config/index.js'

/** llama-stack's own starter distribution config, as published (see its header). */
const STARTER_FILE = fileURLToPath(new URL('../fixtures/llama-stack/starter-run.yaml', import.meta.url))
const STARTER = readFileSync(STARTER_FILE, 'utf8')

/** What troupe skips of the starter with no environment set: one warning each, by path. */
const STARTER_SKIPS = [
  // APIs troupe does not serve, in `apis` and under `providers`
  ...['batches', 'file_processors', 'files', 'interactions', 'messages', 'responses', 'safety', 'tool_runtime', 'vector_io'].map(api => `apis[${['batches', 'file_processors', 'files', 'inference', 'interactions', 'messages', 'responses', 'safety', 'tool_runtime', 'vector_io'].indexOf(api)}]`),
  'providers.vector_io[0]',
  'providers.vector_io[1]',
  'providers.files[0]',
  'providers.file_processors[0]',
  'providers.safety[0]',
  'providers.safety[1]',
  'providers.interactions[0]',
  'providers.messages[0]',
  'providers.responses[0]',
  'providers.tool_runtime[0]',
  'providers.tool_runtime[1]',
  'providers.tool_runtime[2]',
  'providers.tool_runtime[3]',
  'providers.batches[0]',
  // inference provider types troupe does not run: bedrock, anthropic, gemini, sentence-transformers, transformers
  'providers.inference[5]',
  'providers.inference[8]',
  'providers.inference[9]',
  'providers.inference[14]',
  'providers.inference[15]',
  'storage.stores.connectors',
  'vector_stores',
  'safety',
  'registered_resources.shields[0]',
  'registered_resources.shields[1]',
  // the Claude Code aliases, registered with provider_id 'all'
  'registered_resources.models[0]',
  'registered_resources.models[1]',
  'registered_resources.models[2]',
]


t.test("llama-stack's starter config validates with no environment, with one warning for each part troupe skips", async t => {
  const { config, warnings } = parseConfig(STARTER, { SQLITE_STORE_DIR: '/srv/llama' }, 'starter.yaml')
  const skips = warnings.filter(w => w.message.endsWith('; skipped'))
  t.same(skips.map(w => w.path).sort(), [...STARTER_SKIPS].sort(), 'every skip names its path, once')
  t.match(warnings.find(w => w.path === 'providers.safety[0]')?.message, /^the safety API is not served by troupe \(inline::llama-guard\); skipped$/)
  t.match(warnings.find(w => w.path === 'providers.inference[5]')?.message, /provider type remote::bedrock is not served by troupe/)
  t.match(warnings.find(w => w.path === 'registered_resources.models[0]')?.message, /provider_id 'all'/)
  t.same(
    warnings.filter(w => !w.message.endsWith('; skipped')),
    [
      {
        path: 'storage.backends.kv_default',
        message: "kv_sqlite is served by troupe's embedded LMDB store at /srv/llama/kvstore.db.lmdb; existing SQLite data in /srv/llama/kvstore.db is not read",
      },
      {
        path: 'storage.backends.sql_default',
        message: "sql_sqlite is served by troupe's embedded LMDB store at /srv/llama/sql_store.db.lmdb; existing SQLite data in /srv/llama/sql_store.db is not read",
      },
    ],
    'the SQLite backends are served, with a note each; no key is unknown',
  )
  t.same(
    config.providers['inference']?.map(p => p.provider_id),
    ['fireworks', 'together', 'openai', 'groq', 'sambanova'],
    'the providers enabled without environment, that troupe serves',
  )
  t.same(Object.keys(config.providers), ['inference'])
  t.same(config.apis, ['inference'])
  t.equal(config.image_name, 'starter', 'distro_name is the image name')
  t.match(config.storage.backends['kv_default'], { type: 'kv_sqlite', db_path: '/srv/llama/kvstore.db', map_size_mb: 1024 })
  t.same(Object.keys(config.storage.stores).sort(), ['conversations', 'inference', 'metadata', 'prompts'])
  t.same(config.registered_resources.models, [])
})

t.test('the starter with its providers enabled by environment: what troupe serves is kept, at its file position', async t => {
  const env = { OLLAMA_URL: 'http://127.0.0.1:11434/v1', VLLM_URL: 'http://vllm:8000/v1', NVIDIA_API_KEY: 'nv', CEREBRAS_API_KEY: 'cb' }
  const { config } = parseConfig(STARTER, env, 'starter.yaml')
  t.same(config.providers['inference']?.map(p => p.provider_id), ['cerebras', 'ollama', 'vllm', 'fireworks', 'together', 'nvidia', 'openai', 'groq', 'sambanova'])
  t.match(config.providers['inference']?.find(p => p.provider_id === 'vllm')?.config, { base_url: 'http://vllm:8000/v1', max_tokens: 4096, api_token: 'fake', network: { tls: { verify: true } } })
})

t.test('provider ids are unique per API: one id under two APIs is accepted, twice under one API refused with both paths', async t => {
  const twoApis = parseConfig(
    `
providers:
  inference:
    - { provider_id: builtin, provider_type: remote::ollama }
  custom:
    - { provider_id: builtin, provider_type: inline::custom }
`,
    {},
    't',
  )
  t.same(twoApis.config.providers['custom']?.map(p => p.provider_id), ['builtin'])
  const found = issues(`
providers:
  inference:
    - { provider_id: twin, provider_type: remote::ollama }
    - { provider_id: other, provider_type: remote::ollama }
    - { provider_id: twin, provider_type: remote::openai }
`)
  t.same(found.map(i => i.path), ['providers.inference[2].provider_id'])
  t.match(found[0]?.message, /provider_id 'twin' is already used by providers\.inference\[0\]\.provider_id/)
})

t.test('kv_sqlite and sql_sqlite are accepted as a kv and a sql backend, each with one note', async t => {
  const text = `
storage:
  backends:
    kv: { type: kv_sqlite, db_path: /data/kv.db }
    sql: { type: sql_sqlite, db_path: /data/sql.db, map_size_mb: 64 }
  stores:
    metadata: { backend: kv, namespace: registry }
    inference: { backend: sql, table_name: inference_store }
`
  const { config, warnings } = parseConfig(text, {}, 't')
  t.same(config.storage.backends['sql'], { type: 'sql_sqlite', db_path: '/data/sql.db', map_size_mb: 64 })
  t.same(
    warnings.map(w => w.path),
    ['storage.backends.kv', 'storage.backends.sql'],
  )
  t.match(warnings[0]?.message, /at \/data\/kv\.db\.lmdb; existing SQLite data in \/data\/kv\.db is not read/)
  t.same(parseConfig(text, {}, 't', { strict: true }).warnings.length, 2, 'served, so --strict keeps them as notes')

  const wrongFamily = issues(text.replace('metadata: { backend: kv', 'metadata: { backend: sql'))
  t.match(wrongFamily, [{ path: 'storage.stores.metadata.backend', message: /needs a kv_\* backend, but 'sql' is sql_sqlite/ }])
  t.match(issues('storage:\n  backends:\n    kv: { type: kv_sqlite }\n'), [{ path: 'storage.backends.kv.db_path' }])
})

t.test('--strict turns each skip, and each unknown key, into an error with the same path', async t => {
  const strict = issuesOf(() => parseConfig(STARTER, {}, 'starter.yaml', { strict: true }))
  t.same(strict.map(i => i.path).sort(), [...STARTER_SKIPS].sort())
  t.ok(strict.every(i => i.message.endsWith('; refused under --strict')), 'each says why it is an error')
  t.same(
    issuesOf(() => parseConfig('server: { port: 9000, colour: red }\n', {}, 't', { strict: true })),
    [{ path: 'server.colour', message: 'unknown key; refused under --strict' }],
  )
  const loaded = parseConfig('version: 2\n', {}, 't', { strict: true })
  t.equal(loaded.strict, true, 'the loaded config remembers it, for a reload to read the file the same way')
  t.equal(parseConfig('version: 2\n', {}, 't').strict, false)
})

t.test('what is skipped is not env-substituted: the variables only it uses are not required', async t => {
  const text = `
providers:
  safety:
    - { provider_id: guard, provider_type: inline::llama-guard, config: { model: '\${env.SAFETY_MODEL}' } }
  inference:
    - { provider_id: local, provider_type: remote::ollama }
    - { provider_id: st, provider_type: inline::sentence-transformers, config: { device: '\${env.DEVICE}' } }
vector_stores:
  default_provider_id: '\${env.VECTOR_PROVIDER}'
registered_resources:
  shields: [{ shield_id: '\${env.SHIELD}' }]
`
  const { warnings } = parseConfig(text, {}, 't')
  t.same(warnings.map(w => w.path).sort(), ['providers.inference[1]', 'providers.safety[0]', 'registered_resources.shields[0]', 'vector_stores'])
})

t.test('a registered model is skipped when its provider is disabled or skipped; its neighbours keep their file paths', async t => {
  const text = `
providers:
  inference:
    - { provider_id: local, provider_type: remote::ollama }
    - { provider_id: claude, provider_type: remote::anthropic }
registered_resources:
  models:
    - { model_id: a, provider_id: '\${env.USE_A:+local}' }
    - { model_id: b, provider_id: claude }
    - { model_id: rr, provider_id: local, model_type: rerank }
    - { model_id: c, provider_id: local, model_type: sideways }
    - { model_id: d, provider_id: local }
`
  const found = issues(text)
  t.same(found.map(i => i.path), ['registered_resources.models[3].model_type'], 'paths after skipped models are the file positions')
  const { config, warnings } = parseConfig(text.replace('sideways', 'llm'), {}, 't')
  t.same(config.registered_resources.models.map(m => m.model_id), ['c', 'd'])
  t.same(
    warnings.map(w => [w.path, w.message]),
    [
      ['providers.inference[1]', 'provider type remote::anthropic is not served by troupe; skipped'],
      ['registered_resources.models[0]', 'its provider is disabled (provider_id is empty); skipped'],
      ['registered_resources.models[1]', "its provider 'claude' is skipped: provider type remote::anthropic is not served by troupe; skipped"],
      ['registered_resources.models[2]', 'rerank models are not served by troupe; skipped'],
    ],
  )
})

t.test('what neither troupe nor llama-stack knows is still an error or an unknown key, not a skip', async t => {
  const { config, warnings } = parseConfig('providers:\n  inferense:\n    - { provider_id: a, provider_type: remote::openai }\n  inference:\n    - { provider_id: b, provider_type: remote::olama }\n', {}, 't')
  t.same(warnings, [], 'left for the provider registry, which refuses both (test/stack/providers.test.ts)')
  t.same(Object.keys(config.providers).sort(), ['inference', 'inferense'])
})

t.test("llama-stack's spellings of what troupe serves: server.tls_*, server.quota, a kv_redis host and port", async t => {
  const { config, warnings } = parseConfig(
    `
server: { port: 8443, tls_certfile: /etc/cert.pem, tls_keyfile: /etc/key.pem, quota: { kvstore: { backend: cache, namespace: quota } }, workers: 4 }
storage:
  backends:
    cache: { type: kv_redis, host: redis.internal, port: 6380 }
`,
    {},
    't',
  )
  t.same(config.server.tls, { certfile: '/etc/cert.pem', keyfile: '/etc/key.pem' })
  t.match(config.storage.backends['cache'], { type: 'kv_redis', url: 'redis://redis.internal:6380' })
  t.match(config.server.quota, { kvstore: { backend: 'cache', namespace: 'quota' }, anonymous_max_requests: 100, authenticated_max_requests: 1000, period: 'day' }, 'server.quota is served, with llama-stack defaults')
  t.same(warnings.map(w => w.path), ['server.workers'])
})

t.test("llama-stack's server.registry_refresh_interval_seconds is the reconciler's interval, unless troupe sets one", async t => {
  const interval = (text: string) => parseConfig(text, { REFRESH: '90' }, 't')
  t.equal(interval('server: { registry_refresh_interval_seconds: 300 }').config.troupe.reconciler.interval_ms, 300_000)
  t.equal(interval('server: { registry_refresh_interval_seconds: "${env.REFRESH}" }').config.troupe.reconciler.interval_ms, 90_000, 'from the environment too')
  t.same(interval('server: { registry_refresh_interval_seconds: 300 }').warnings, [], 'served, so no warning')
  t.equal(interval('server: { registry_refresh_interval_seconds: 300 }\ntroupe: { reconciler: { interval_ms: 5000 } }').config.troupe.reconciler.interval_ms, 5000, "troupe's own setting wins")
  t.same(interval('server: { registry_refresh_interval_seconds: soon }').warnings.map(w => w.path), ['server.registry_refresh_interval_seconds'], 'not a number: named as an unknown key')
})

t.test('troupe validate prints one warning line per skip and exits 0; with --strict, one error line each and exits 1', async t => {
  const env = { SQLITE_STORE_DIR: '/srv/llama', OLLAMA_URL: '', VLLM_URL: '', NVIDIA_API_KEY: '', CEREBRAS_API_KEY: '', AZURE_API_KEY: '', VERTEX_AI_PROJECT: '' }
  const lenient = await runCli(['validate', '--config', STARTER_FILE], env)
  t.equal(lenient.code, 0)
  t.match(lenient.stdout, /starter-run\.yaml: valid \(5 providers, 2 backends, 4 stores, 0 models, 0 workflows\), 38 warnings/)
  t.match(lenient.stderr, /^warning: providers\.safety\[0\]: the safety API is not served by troupe \(inline::llama-guard\); skipped$/m)
  t.equal(lenient.stderr.trim().split('\n').length, 38, 'one line each')
  const strict = await runCli(['validate', '--strict', '--config', STARTER_FILE], env)
  t.equal(strict.code, 1)
  t.match(strict.stderr, /^providers\.safety\[0\]: the safety API is not served by troupe \(inline::llama-guard\); refused under --strict$/m)
  t.match(strict.stderr, /starter-run\.yaml: 36 errors/)
})
