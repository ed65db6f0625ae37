import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { parseConfig } from '../../src/config/index.js'
import { subtreeSpec } from '../../src/stack/plan.js'
import { storeActorName, storeChildSpec } from '../../src/stack/stores.js'
import type { KvMessage, TableMessage } from '../../actors/stores/protocol.js'
import { startSystem } from '../fixtures/system.js'

t.test('each configured backend runs as one store actor, shared by the stores that reference it', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-stack-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const { config } = parseConfig(
    `
storage:
  backends:
    kv_default: { type: kv_lmdb, path: ${dir}/kv }
    cache: { type: kv_memory }
    sql_default: { type: sql_lmdb, path: ${dir}/sql }
  stores:
    metadata: { backend: kv_default, namespace: registry }
    sessions: { backend: kv_default, namespace: sessions }
    inference: { backend: sql_default, table_name: inference_store }
`,
    {},
    'test.yaml',
  )
  const system = await startSystem(t)
  await system.supervise(subtreeSpec('stores', Object.entries(config.storage.backends).map(([name, backend]) => storeChildSpec(name, backend, config.troupe.drain_timeout_ms))), { id: 'stores' })
  const snapshot = await system.inspect()
  const stores = snapshot.root.children.find(node => node.id === 'stores')
  t.match(stores, {
    kind: 'supervisor',
    strategy: 'one_for_one',
    children: [
      { name: 'store:kv_default', placement: 'pool', status: 'running' },
      { name: 'store:cache', status: 'running' },
      { name: 'store:sql_default', status: 'running' },
    ],
  })
  const kv = await system.lookup<KvMessage>(storeActorName('kv_default'))
  await kv!.ask({ type: 'set', namespace: 'registry', key: 'model', value: { id: 'm' } })
  await kv!.ask({ type: 'set', namespace: 'sessions', key: 'model', value: 'other store, same backend' })
  t.same(await kv!.ask({ type: 'get', namespace: 'registry', key: 'model' }), { id: 'm' })
  const sql = await system.lookup<TableMessage>(storeActorName('sql_default'))
  await sql!.ask({ type: 'createTable', table: { name: 'inference_store', columns: { id: { type: 'text' } }, primaryKey: ['id'] } })
  t.equal(await sql!.ask({ type: 'insert', table: 'inference_store', row: { id: 'chatcmpl-1' } }), 1)
})
