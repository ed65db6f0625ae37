import t from 'tap'
import { listFields, parseConfig, type ConfigChange } from '../../src/config/index.js'
import { FIELD_OWNERS, HOT_OWNERS, ownerOf, ownerOfField, plan, planReload } from '../../src/stack/plan.js'

/**
 * The reload boundary, drift-tested: every field of the schema has an owner in plan.ts, the
 * owner agrees with the field's reload class, and a change of the field plans what the class
 * promises (applied live, or its owners restarted, or reported as needing a new process). The
 * owners themselves are exercised live in test/supervisor/reload.test.ts.
 */

const fields = [...new Map(listFields().map(field => [field.path, field])).values()]

t.test('every field has an owner, and the owner agrees with its reload class', async t => {
  for (const field of fields) {
    const rule = ownerOfField(field.path)
    if (rule === undefined) {
      t.fail(`${field.path} has no owner in FIELD_OWNERS`)
      continue
    }
    if (field.reload === 'hot') t.ok(HOT_OWNERS.has(rule.owner), `${field.path} is hot and owned by '${rule.owner}', which applies live`)
    else t.notOk(HOT_OWNERS.has(rule.owner), `${field.path} is restart-class and owned by '${rule.owner}', which does not apply live`)
    if (rule.owner === 'process' || rule.owner === 'none') t.ok(rule.why, `${field.path}: '${rule.owner}' says why`)
  }
})

t.test('every entry of the owner table names a field of the schema', async t => {
  const paths = new Set(fields.map(field => field.path))
  for (const path of Object.keys(FIELD_OWNERS)) t.ok(paths.has(path), `${path} is a schema field`)
})

const CONFIG = parseConfig(
  `
providers:
  inference:
    - { provider_id: p, provider_type: remote::openai, config: { base_url: 'http://p/v1' } }
storage:
  backends:
    b: { type: sql_lmdb, path: /tmp/boundary }
    k: { type: kv_memory }
  stores:
    metadata: { backend: k, namespace: registry }
    inference: { backend: b, table_name: completions }
    conversations: { backend: b, table_name: conversations }
    runs: { backend: b, table_name: runs }
    sessions: { backend: k, namespace: sessions }
registered_resources:
  models: [{ model_id: m, provider_id: p }]
workflows:
  - { name: w, module: ./w.js }
`,
  {},
  'boundary.yaml',
).config

/** A change at a schema path, made concrete with the names above (`<key>` → the item's map key). */
function changeAt(path: string, reload: 'hot' | 'restart'): ConfigChange {
  const segments = path
    .replace('providers.<key>[]', 'providers.inference.p')
    .replace('storage.backends.<key>', 'storage.backends.b')
    .replace('workflows[]', 'workflows.w')
    .replace('registered_resources.models[]', 'registered_resources.models.m')
    .split('.')
  return { segments, path, reload, before: 1, after: 2 }
}

/**
 * Collections (providers, backends, workflows) and the sections that hold them change only item
 * by item: the diff names the item or a field of it, and an added or removed item is a start or
 * a stop of the plans (tested in plan.test.ts), never a change of the collection itself.
 */
const holdsCollection = (path: string): boolean => fields.some(f => f.path.startsWith(`${path}.<key>`) || f.path.startsWith(`${path}[]`)) || path === 'storage' || path === 'storage.stores'

t.test('a change of each field plans what its reload class promises', async t => {
  const current = plan(CONFIG)
  for (const field of fields.filter(f => !holdsCollection(f.path))) {
    const change = changeAt(field.path, field.reload!)
    const steps = planReload(current, current, [change], CONFIG)
    const { owner } = ownerOf(change)
    if (field.reload === 'hot') {
      t.same([steps.hot.length, steps.restart, steps.replace, steps.rebind], [1, [], [], false], `${field.path}: applied live by '${owner}', nothing restarted`)
      continue
    }
    const effects = steps.restart.length + steps.replace.length + (steps.rebind ? 1 : 0) + (steps.resize ? 1 : 0) + steps.unapplied.length
    if (owner === 'none') t.equal(effects, 0, `${field.path}: nothing runs from it`)
    else t.ok(effects > 0 && steps.hot.length === 0, `${field.path}: '${owner}' restarts ${[...steps.restart, ...steps.replace].join(', ') || (steps.rebind ? 'the listener' : steps.resize ? 'the pool' : 'nothing, reported as needing a new process')}`)
  }
})
