import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { loadConfigFile, parseConfig } from '../../src/config/index.js'
import { storeChildSpec } from '../../src/stack/stores.js'
import { checkStackWithWorkflows, startStack } from '../../src/supervisor/stack.js'
import { quietLogger } from '../fixtures/logger.js'
import { startFakeUpstreams, tempDir } from '../fixtures/stack.js'
import { startSystem } from '../fixtures/system.js'

/** llama-stack's own starter distribution config, as published (see its header). */
const STARTER = readFileSync(new URL('../fixtures/llama-stack/starter-run.yaml', import.meta.url), 'utf8')

t.test("llama-stack's starter config starts, and /v1/providers lists what troupe serves of it", async t => {
  const { openai, ollama } = await startFakeUpstreams(t)
  const dir = tempDir(t)
  // Ollama and OpenAI on the local fakes (Ollama as llama-stack names it: its OpenAI root, /v1).
  const env = { SQLITE_STORE_DIR: dir, FILES_STORAGE_DIR: join(dir, 'files'), OLLAMA_URL: `${ollama.url}/v1`, OPENAI_BASE_URL: openai.url, OPENAI_API_KEY: 'sk-test' }
  const loaded = parseConfig(STARTER, env, join(dir, 'starter.yaml'))
  t.ok(loaded.warnings.length > 0 && loaded.warnings.every(w => /; skipped$|is not read$/.test(w.message)), 'warnings only: skips and the SQLite notes')
  const checked = await checkStackWithWorkflows(loaded)
  t.same(checked.providers.map(p => p.providerId), ['ollama', 'fireworks', 'together', 'openai', 'groq', 'sambanova'], 'validate passes: every served provider resolves')

  const system = await startSystem(t, { workers: 1 })
  const stack = await startStack(system, loaded, quietLogger(), { port: 0, host: '127.0.0.1' })
  t.teardown(() => stack.stop())

  const res = await fetch(`${stack.url}/v1/providers`)
  t.equal(res.status, 200)
  const { data } = (await res.json()) as { data: Array<{ provider_id: string; api: string; provider_type: string }> }
  t.same(
    data.map(p => ({ provider_id: p.provider_id, api: p.api, provider_type: p.provider_type })).sort((a, b) => a.provider_id.localeCompare(b.provider_id)),
    [
      { provider_id: 'fireworks', api: 'inference', provider_type: 'remote::fireworks' },
      { provider_id: 'groq', api: 'inference', provider_type: 'remote::groq' },
      { provider_id: 'ollama', api: 'inference', provider_type: 'remote::ollama' },
      { provider_id: 'openai', api: 'inference', provider_type: 'remote::openai' },
      { provider_id: 'sambanova', api: 'inference', provider_type: 'remote::sambanova' },
      { provider_id: 'together', api: 'inference', provider_type: 'remote::together' },
    ],
  )

  const chat = async (model: string) =>
    fetch(`${stack.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }) })
  t.equal((await chat('ollama/llama-test:latest')).status, 200, 'ollama serves, at the root of the OLLAMA_URL llama-stack gives')
  t.equal((await chat('openai/gpt-test')).status, 200, 'openai serves, at OPENAI_BASE_URL')
  t.ok(existsSync(join(dir, 'kvstore.db.lmdb', 'data.mdb')) && existsSync(join(dir, 'sql_store.db.lmdb', 'data.mdb')), 'the SQLite backends are LMDB environments beside their files')
  t.notOk(existsSync(join(dir, 'kvstore.db')), 'and the SQLite files are not touched')
})

t.test('a SQLite backend runs as the LMDB store of its family, in <db_path>.lmdb', async t => {
  const kv = storeChildSpec('kv', { type: 'kv_sqlite', db_path: '/data/kv.db', map_size_mb: 64 }, 1000)
  t.match(kv, { id: 'store:kv', args: { name: 'kv', config: { type: 'kv_lmdb', path: '/data/kv.db.lmdb', map_size_mb: 64 } } })
  const sql = storeChildSpec('sql', { type: 'sql_sqlite', db_path: '/data/sql.db', map_size_mb: 1024 }, 1000)
  t.match(sql, { args: { config: { type: 'sql_lmdb', path: '/data/sql.db.lmdb' } } })
  t.not(kv.behavior, sql.behavior, 'a kv store and a table store')
})

t.test('a stack started with --strict reloads with --strict: a section it would skip is refused', async t => {
  const dir = tempDir(t)
  const file = join(dir, 'stack.yaml')
  const yaml = `storage:\n  backends:\n    kv: { type: kv_sqlite, db_path: ${join(dir, 'kv.db')} }\n  stores:\n    metadata: { backend: kv, namespace: registry }\n`
  writeFileSync(file, yaml)
  const system = await startSystem(t, { workers: 1 })
  const stack = await startStack(system, await loadConfigFile(file, {}, { strict: true }), quietLogger(), { port: 0, host: '127.0.0.1' })
  t.teardown(() => stack.stop())
  writeFileSync(file, `${yaml}safety: { default_shield_id: llama-guard }\n`)
  const report = await stack.reload()
  t.equal(report.result, 'invalid')
  t.match(report.errors, [{ path: 'safety', message: /the safety section is not served by troupe; refused under --strict/ }])
})
