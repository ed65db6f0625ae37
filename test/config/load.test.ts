import { readFileSync } from 'node:fs'
import t from 'tap'
import { configIssues as issues } from '../fixtures/config.js'
import { parseConfig } from '../../src/config/index.js'

const minimal = `
version: 2
storage:
  backends:
    kv: { type: kv_lmdb, path: /tmp/kv }
    sql: { type: sql_lmdb, path: /tmp/sql }
  stores:
    metadata: { backend: kv, namespace: registry }
    inference: { backend: sql, table_name: inference_store }
`

t.test('a minimal config gets every default', async t => {
  const { config, warnings } = parseConfig(minimal, {}, 'test.yaml')
  t.same(warnings, [])
  t.equal(config.server.port, 8321)
  t.equal(config.server.host, '0.0.0.0')
  t.match(config.storage.stores.inference, { max_write_queue_size: 10000, num_writers: 4 })
  t.equal(config.troupe.drain_timeout_ms, 30000)
  t.same(config.registered_resources.models, [])
})

t.test('the repository stack.yaml is valid with no environment, and enables openai only with a key', async t => {
  const text = readFileSync(new URL('../../stack.yaml', import.meta.url), 'utf8')
  const bare = parseConfig(text, {}, 'stack.yaml')
  t.same(bare.config.providers['inference']?.map(p => p.provider_id), ['ollama'])
  t.same(bare.warnings, [])
  const withKey = parseConfig(text, { OPENAI_API_KEY: 'sk-test', TROUPE_DATA_DIR: '/var/troupe' }, 'stack.yaml')
  t.same(withKey.config.providers['inference']?.map(p => p.provider_id), ['ollama', 'openai'])
  t.match(withKey.config.storage.backends['kv_default'], { type: 'kv_lmdb', path: '/var/troupe/kv' })
})

t.test('every error is reported at once, each with its path', async t => {
  const found = issues(`
providers:
  inference:
    - provider_id: a
      provider_type: remote::openai
      config: { base_url: '\${env.BASE}' }
    - provider_id: b
      provider_type: nonsense
server: { port: 0 }
storage:
  backends:
    kv: { type: kv_lmdb, path: /tmp/kv }
    weird: { type: kv_cassandra }
  stores:
    metadata: { backend: nowhere, namespace: r }
    conversations: { backend: kv, table_name: conv }
`)
  const paths = found.map(i => i.path).sort()
  t.same(paths, [
    'providers.inference[0].config.base_url',
    'providers.inference[1].provider_type',
    'server.port',
    'storage.backends.weird.type',
    'storage.stores.conversations.backend',
    'storage.stores.metadata.backend',
  ])
  t.match(found.find(i => i.path === 'storage.stores.conversations.backend')?.message, /needs a sql_\* backend, but 'kv' is kv_lmdb/)
  t.match(found.find(i => i.path === 'storage.stores.metadata.backend')?.message, /no backend named 'nowhere'/)
  t.match(found.find(i => i.path === 'providers.inference[0].config.base_url')?.message, /BASE is not set/)
})

t.test('a disabled provider is dropped before its config is expanded; later paths keep their file positions', async t => {
  const text = `
providers:
  inference:
    - provider_id: \${env.USE_A:+a}
      provider_type: remote::openai
      config: { api_key: '\${env.A_KEY}' }
    - provider_id: __disabled__
      provider_type: remote::openai
      config: { api_key: '\${env.B_KEY}' }
    - provider_id: c
      provider_type: broken
`
  t.same(issues(text), [{ path: 'providers.inference[2].provider_type', message: 'must look like inline::name or remote::name' }])
  const ok = parseConfig(text.replace('broken', 'remote::ollama'), {}, 't')
  t.same(ok.config.providers['inference']?.map(p => p.provider_id), ['c'])
})

t.test('YAML syntax errors give line and column', async t => {
  const found = issues('version: 2\nserver:\n  port: [1\n  host: x\n')
  t.match(found[0]?.path, /^test\.yaml:\d+:\d+$/)
})

t.test('unknown keys are warnings naming their path, not errors', async t => {
  const { warnings } = parseConfig(`${minimal}\nserver: { port: 9000, colour: red }\nextra: 1\n`, {}, 't')
  t.same(warnings.map(w => w.path).sort(), ['extra', 'server.colour'])
  t.ok(warnings.every(w => w.message === 'unknown key, ignored'))
  const backend = parseConfig(minimal.replace('path: /tmp/kv }', 'path: /tmp/kv, bogus: 1 }'), {}, 't')
  t.same(backend.warnings, [{ path: 'storage.backends.kv.bogus', message: 'unknown key, ignored' }])
})

t.test('null and empty substitutions mean unset', async t => {
  const { config } = parseConfig(`${minimal}\nserver: { port: '\${env.PORT:=}', host: null }\n`, {}, 't')
  t.equal(config.server.port, 8321)
  t.equal(config.server.host, '0.0.0.0')
})
