import t from 'tap'
import { ConfigError, listFields, parseConfig, type ConfigIssue } from '../../src/config/index.js'
import { ownerOfField } from '../../src/stack/plan.js'
import { servedBackend } from '../../src/stack/stores.js'

/** The issues of a config that is refused (the test fails if it loads). */
function refusal(text: string, options: { strict?: boolean } = {}): ConfigIssue[] {
  try {
    parseConfig(text, {}, 'quota.yaml', options)
  } catch (error) {
    if (error instanceof ConfigError) return [...error.issues]
    throw error
  }
  throw new Error('the config loaded')
}

const KV = 'storage: { backends: { kv: { type: kv_lmdb, path: /tmp/quota-kv }, sql: { type: sql_lmdb, path: /tmp/quota-sql } } }\n'

t.test("server.quota takes llama-stack's fields and defaults, counting in a named kv backend", async t => {
  const { config, warnings } = parseConfig(`${KV}server: { quota: { kvstore: { backend: kv, namespace: quota } } }`, {}, 'quota.yaml')
  t.same(config.server.quota, { kvstore: { backend: 'kv', namespace: 'quota' }, anonymous_max_requests: 100, authenticated_max_requests: 1000, period: 'day' })
  t.same(warnings, [])
  const limited = parseConfig(`${KV}server: { quota: { kvstore: { backend: kv, namespace: q }, max_concurrent_streams: 2, max_concurrent_runs: 3 } }`, {}, 'quota.yaml')
  t.match(limited.config.server.quota, { max_concurrent_streams: 2, max_concurrent_runs: 3 }, "troupe's concurrency limits")
})

t.test("an inline llama-stack kvstore becomes a backend of its own, served as troupe serves that type", async t => {
  const sqlite = parseConfig('server: { quota: { kvstore: { type: sqlite, db_path: /srv/llama/quotas.db, namespace: null } } }', {}, 'quota.yaml')
  t.same(sqlite.config.server.quota?.kvstore, { backend: 'server.quota.kvstore', namespace: 'quota' }, 'without a namespace, `quota`')
  const backend = sqlite.config.storage.backends['server.quota.kvstore']!
  t.match(backend, { type: 'kv_sqlite', db_path: '/srv/llama/quotas.db' })
  t.same(servedBackend(backend), { type: 'kv_lmdb', path: '/srv/llama/quotas.db.lmdb', map_size_mb: 1024 }, 'served by LMDB beside the file, as every kv_sqlite backend is')
  t.same(sqlite.warnings.map(w => w.path), ['server.quota.kvstore'], 'the SQLite note names the quota, where the file wrote it')

  const renamed = parseConfig('server: { quota: { kvstore: { type: kv_sqlite, db_path: /tmp/q.db, namespace: counts } } }', {}, 'quota.yaml')
  t.same(renamed.config.server.quota?.kvstore, { backend: 'server.quota.kvstore', namespace: 'counts' }, 'the kv_-prefixed spelling, and its namespace kept')

  const redis = parseConfig('server: { quota: { kvstore: { type: redis, port: 6380 } } }', {}, 'quota.yaml')
  t.match(redis.config.storage.backends['server.quota.kvstore'], { type: 'kv_redis', url: 'redis://localhost:6380' }, "llama-stack's default host")

  const postgres = parseConfig('server: { quota: { kvstore: { type: postgres, user: llama, password: secret } } }', {}, 'quota.yaml')
  t.match(postgres.config.storage.backends['server.quota.kvstore'], { type: 'kv_postgres', host: 'localhost', db: 'llamastack', table_name: 'llamastack_kvstore', user: 'llama' }, "llama-stack's defaults, not troupe's")
})

t.test('a quota troupe cannot serve is refused, each problem at its path', async t => {
  t.match(refusal('server: { quota: { kvstore: { type: mongodb, connection_str: "mongodb://x" } } }'), [{ path: 'server.quota.kvstore.type', message: /mongodb.*not served by troupe/ }], 'an inline type troupe has no backend for')
  t.match(refusal('server: { quota: { kvstore: { type: postgres, port: many } } }'), [{ path: 'server.quota.kvstore.port' }], "an inline kvstore's field, at its place in the file")
  t.match(refusal(`${KV}server: { quota: { kvstore: { backend: missing, namespace: q } } }`), [{ path: 'server.quota.kvstore.backend', message: /no backend named 'missing' \(storage.backends has kv, sql\)/ }])
  t.match(refusal(`${KV}server: { quota: { kvstore: { backend: sql, namespace: q } } }`), [{ path: 'server.quota.kvstore.backend', message: /kv_\* backend, but 'sql' is sql_lmdb/ }])
  t.match(refusal(`${KV}server: { quota: { kvstore: { backend: kv } } }`), [{ path: 'server.quota.kvstore.namespace' }])
  t.match(refusal(`${KV}server: { quota: { kvstore: { backend: kv, namespace: q }, period: week } }`), [{ path: 'server.quota.period' }], "llama-stack's only period is day")
  t.match(refusal(`${KV}server: { quota: { kvstore: { backend: kv, namespace: q }, anonymous_max_requests: -1, max_concurrent_streams: 0 } }`), [
    { path: 'server.quota.anonymous_max_requests' },
    { path: 'server.quota.max_concurrent_streams' },
  ])
  t.match(refusal('server: { quota: { anonymous_max_requests: 5 } }'), [{ path: 'server.quota.kvstore' }], 'a quota needs its kvstore')
  t.match(
    refusal('storage: { backends: { server.quota.kvstore: { type: kv_memory } } }\nserver: { quota: { kvstore: { type: sqlite, db_path: /tmp/q.db } } }'),
    [{ path: 'server.quota.kvstore', message: /already uses/ }],
    'the name an inline kvstore takes is taken',
  )
})

t.test('server.quota is served, not skipped, under --strict too', async t => {
  const { config } = parseConfig(`${KV}server: { quota: { kvstore: { backend: kv, namespace: q } } }`, {}, 'quota.yaml', { strict: true })
  t.ok(config.server.quota)
})

t.test('every server.quota field is hot, applied by the server', async t => {
  const fields = listFields().filter(field => field.path.startsWith('server.quota'))
  t.ok(fields.length >= 9, `${fields.length} fields`)
  for (const field of fields) {
    t.equal(field.reload, 'hot', `${field.path} is hot`)
    t.equal(ownerOfField(field.path)?.owner, 'server', `${field.path} is the server's`)
  }
})
