import t from 'tap'
import { diffConfig, parseConfig, type ConfigChange } from '../../src/config/index.js'

const parse = (text: string) => parseConfig(text, {}, 'diff.yaml').config
const BASE = `
providers:
  inference:
    - { provider_id: a, provider_type: remote::openai, config: { base_url: 'http://a/v1' } }
    - { provider_id: b, provider_type: remote::ollama, config: { url: 'http://b' } }
storage:
  backends:
    kv: { type: kv_memory }
  stores:
    metadata: { backend: kv, namespace: registry }
registered_resources:
  models:
    - { model_id: m1, provider_id: a }
    - { model_id: m2, provider_id: b }
`
const summary = (changes: ConfigChange[]) => changes.map(c => `${c.path} ${c.reload}`).sort()

t.test('the same config, or the same one reordered, has no changes', async t => {
  t.same(diffConfig(parse(BASE), parse(BASE)), [])
  const reordered = BASE.replace(/(    - \{ provider_id: a.*\n)(    - \{ provider_id: b.*\n)/, '$2$1').replace(/(    - \{ model_id: m1.*\n)(    - \{ model_id: m2.*\n)/, '$2$1')
  t.not(reordered, BASE)
  t.same(diffConfig(parse(BASE), parse(reordered)), [], 'lists with an identity are matched by it, not by position')
})

t.test('a change names its field by path, items by their identity, with its reload class', async t => {
  const after = parse(`${BASE.replace("http://a/v1", "http://a2/v1")}\nlogging: { level: debug }\nimage_name: renamed\n`)
  t.same(summary(diffConfig(parse(BASE), after)), ['image_name hot', 'logging.level hot', 'providers.inference[a].config.base_url restart'])
  const change = diffConfig(parse(BASE), after).find(c => c.path.startsWith('providers'))!
  t.same(change.segments, ['providers', 'inference', 'a', 'config', 'base_url'])
  t.equal(change.before, 'http://a/v1')
  t.equal(change.after, 'http://a2/v1')
})

t.test('added and removed items and sections are one change each, with before or after undefined', async t => {
  const after = parse(BASE.replace("    - { model_id: m2, provider_id: b }\n", '').replace('    metadata: { backend: kv, namespace: registry }\n', "    metadata: { backend: kv, namespace: registry }\n    sessions: { backend: kv, namespace: s }\n"))
  const changes = diffConfig(parse(BASE), after)
  t.same(summary(changes), ['registered_resources.models[m2] hot', 'storage.stores.sessions restart'])
  t.equal(changes.find(c => c.path === 'registered_resources.models[m2]')!.after, undefined)
  t.equal(changes.find(c => c.path === 'storage.stores.sessions')!.before, undefined)
})

t.test('a hot field inside a restart-class section keeps its own class', async t => {
  const stores = (inference: string) => `
storage:
  backends:
    sql: { type: sql_lmdb, path: /tmp/x }
  stores:
    inference: ${inference}
`
  const before = parse(stores('{ backend: sql, table_name: c }'))
  t.same(summary(diffConfig(before, parse(stores('{ backend: sql, table_name: c, num_writers: 2 }')))), ['storage.stores.inference.num_writers hot'])
  t.same(summary(diffConfig(before, parse(stores('{ backend: sql, table_name: d }')))), ['storage.stores.inference.table_name restart'])
})

t.test('a removed optional section returns to its default: the change says so', async t => {
  const before = parse(`${BASE}server: { cors: true }\n`)
  const changes = diffConfig(before, parse(BASE))
  t.same(summary(changes), ['server.cors hot'])
  t.equal(changes[0]!.after, undefined)
})
