import { readFileSync } from 'node:fs'
import t from 'tap'
import { listFields, parseConfig, reloadClassOf, renderConfigDocs } from '../../src/config/index.js'

t.test('every field of the schema carries a reload class and a description', async t => {
  const fields = listFields()
  t.ok(fields.length > 50, `${fields.length} fields`)
  for (const field of fields) {
    t.ok(field.reload === 'hot' || field.reload === 'restart', `${field.path}${field.variant ? ` (${field.variant})` : ''} has a reload class`)
    t.ok(field.description && field.description.length > 3, `${field.path} has a description`)
  }
})

/** A concrete config path for a schema path: any key becomes 'k', any list item index 0. */
function concrete(path: string): Array<string | number> {
  return path.split('.').flatMap(part => {
    const name = part.replace(/\[\]/g, '')
    const items = (part.match(/\[\]/g) ?? []).map(() => 0)
    return [name === '<key>' ? 'k' : name, ...items]
  })
}

t.test('the exported lookup agrees with the schema for every field', async t => {
  for (const field of listFields()) {
    const value = field.variant === undefined ? {} : { storage: { backends: { k: { type: field.variant } } } }
    t.equal(reloadClassOf(concrete(field.path), value), field.reload, field.path)
  }
})

t.test('inside an opaque map, a path takes the class of the map', async t => {
  t.equal(reloadClassOf(['providers', 'inference', 0, 'config', 'base_url'], {}), 'restart')
  t.equal(reloadClassOf(['server', 'auth', 'provider_config', 'type'], {}), 'hot')
  t.equal(reloadClassOf(['registered_resources', 'models', 3, 'model_id'], {}), 'hot')
  t.equal(reloadClassOf(['logging', 'level'], {}), 'hot')
  t.equal(reloadClassOf(['nonsense'], {}), undefined)
})

t.test('a backend field resolves through the backend type of the config at hand', async t => {
  const { config } = parseConfig('storage:\n  backends:\n    pg: { type: kv_postgres, host: db }\n', {}, 't')
  t.equal(reloadClassOf(['storage', 'backends', 'pg', 'table_name'], config), 'restart')
})

t.test('docs/config.md is generated from the schema and up to date (npm run docs)', async t => {
  const committed = readFileSync(new URL('../../docs/config.md', import.meta.url), 'utf8')
  t.equal(committed, renderConfigDocs(), 'regenerate with npm run docs')
  t.match(committed, /\| `server\.port` \| number \| `8321` \| restart \|/)
  t.match(committed, /\| `logging\.level` \| .* \| hot \|/)
})
