import t from 'tap'
import { configIssues as issues } from '../fixtures/config.js'
import { parseConfig, reloadClassOf } from '../../src/config/index.js'

t.test('a workflow entry needs a name and a module, and gets every other default', async t => {
  const { config, warnings } = parseConfig('workflows:\n  - { name: approve, module: ./approve.js }\n', {}, 'test.yaml')
  t.same(warnings, [])
  t.same(config.workflows, [{ name: 'approve', module: './approve.js', export: 'default', max_concurrent_tasks: 8, queue_size: 64, resumable: true }])
  t.equal(config.troupe.lease_ms, 15_000)
  t.equal(config.troupe.node_id, undefined, 'the host name is the default, applied where runs are owned')
  t.equal(config.server.workflows_context_secret, undefined)
})

t.test('bad workflow fields are reported with their paths', async t => {
  const found = issues(`
workflows:
  - { module: ./a.js }
  - { name: 'has space', module: '' }
  - { name: ok, module: ./b.js, max_concurrent_tasks: 0, queue_size: -1, timeout_ms: 0, resumable: maybe }
server: { workflows_context_secret: short }
troupe: { lease_ms: 999, node_id: '' }
`)
  t.same(found.map(i => i.path).sort(), [
    'server.workflows_context_secret',
    'troupe.lease_ms',
    'troupe.node_id',
    'workflows[0].name',
    'workflows[1].module',
    'workflows[1].name',
    'workflows[2].max_concurrent_tasks',
    'workflows[2].queue_size',
    'workflows[2].resumable',
    'workflows[2].timeout_ms',
  ])
  t.match(found.find(i => i.path === 'workflows[1].name')?.message, /letters, digits/)
})

t.test('the placeholder workflow fields are gone: workflow_id and config are unknown keys', async t => {
  const { warnings } = parseConfig('workflows:\n  - { name: a, module: ./a.js, workflow_id: a, config: {} }\n', {}, 'test.yaml')
  t.same(warnings, [
    { path: 'workflows[0].workflow_id', message: 'unknown key, ignored' },
    { path: 'workflows[0].config', message: 'unknown key, ignored' },
  ])
})

t.test('workflow limits apply live; what loads the workflow, and the ownership settings, restart', async t => {
  const at = (...path: Array<string | number>): string | undefined => reloadClassOf(path, {})
  for (const field of ['max_concurrent_tasks', 'queue_size', 'timeout_ms', 'resumable', 'retention']) t.equal(at('workflows', 0, field), 'hot', field)
  for (const field of ['name', 'module', 'export']) t.equal(at('workflows', 0, field), 'restart', field)
  t.equal(at('troupe', 'node_id'), 'restart')
  t.equal(at('troupe', 'lease_ms'), 'restart')
  t.equal(at('server', 'workflows_context_secret'), 'hot')
})
