import { mkdirSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import t from 'tap'
import { ConfigError, loadConfigFile, parseConfig, type ConfigIssue } from '../../src/config/index.js'
import { resolveWorkflows, workflowActorName, workflowChildSpecs } from '../../src/stack/workflows.js'
import { checkStackWithWorkflows, startStack } from '../../src/supervisor/stack.js'
import { actorNodes, type ActorRef, type SupervisorNode } from '../../src/index.js'
import type { WorkflowActorArgs } from '../../actors/workflows/protocol.js'
import { counter } from '../fixtures/behaviors.js'
import { quietLogger } from '../fixtures/logger.js'
import { runCli } from '../fixtures/cli.js'
import { startSystem } from '../fixtures/system.js'
import { tempDir } from '../fixtures/stack.js'

const fixtures = fileURLToPath(new URL('../fixtures/workflows.ts', import.meta.url))
const srcIndex = new URL('../../src/index.ts', import.meta.url).href
const zodUrl = import.meta.resolve('zod')

async function issuesOf(fn: () => Promise<unknown>): Promise<ConfigIssue[]> {
  try {
    await fn()
  } catch (error) {
    if (error instanceof ConfigError) return [...error.issues]
    throw error
  }
  return []
}

/** A config file in `dir` with a runs store on LMDB in it, and these workflows entries (YAML list items). */
function writeConfig(dir: string, workflows: string, options: { runs?: boolean; extra?: string } = {}): string {
  const file = join(dir, 'stack.yaml')
  writeFileSync(
    file,
    `
storage:
  backends:
    kv: { type: kv_lmdb, path: ${dir}/kv }
    sql: { type: sql_lmdb, path: ${dir}/sql }
  stores:
${options.runs === false ? '' : '    runs: { backend: sql, table_name: workflow_runs }\n'}    sessions: { backend: kv, namespace: workflow_sessions }
workflows:
${workflows}
${options.extra ?? ''}`,
  )
  return file
}

/** A workflow module next to the config, as a user writes one (importing troupe's source here). */
const workflowModule = (exportName: string): string => `import { z } from '${zodUrl}'
import { defineWorkflow } from '${srcIndex}'
export const ${exportName} = defineWorkflow(import.meta.url, '${exportName}', { start: z.object({}), run: () => ({}) })
export const notAWorkflow = 42
`

t.test('every workflow problem is reported at once, each with its path', async t => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'wf.mjs'), workflowModule('greet'))
  writeFileSync(join(dir, 'throws.mjs'), "throw new Error('no config for me')\n")
  mkdirSync(join(dir, 'flows'))
  writeFileSync(join(dir, 'flows', 'bare.mjs'), workflowModule('bare'))
  const file = writeConfig(
    dir,
    `  - { name: x, module: ./wf.mjs, export: foo }
  - { name: y, module: ./missing.mjs }
  - { name: x, module: ./wf.mjs, export: greet }
  - { name: z, module: ./wf.mjs, export: notAWorkflow }
  - { name: w, module: ./throws.mjs }
  - { name: v, module: flows/bare.mjs, export: bare }
  - { name: u, module: no-such-package-troupe }`,
    { runs: false },
  )
  const found = await issuesOf(async () => resolveWorkflows(await loadConfigFile(file)))
  const byPath = new Map(found.map(issue => [issue.path, issue.message]))
  t.same([...byPath.keys()].sort(), [
    'storage.stores.runs',
    'workflows[0].export',
    'workflows[1].module',
    'workflows[2].name',
    'workflows[3].export',
    'workflows[4].module',
    'workflows[5].module',
    'workflows[6].module',
  ])
  t.match(byPath.get('storage.stores.runs'), /workflows need a runs store \(a sql_\* backend\)/)
  t.equal(byPath.get('workflows[0].export'), "./wf.mjs exports no workflow 'foo' (it exports: greet)")
  t.match(byPath.get('workflows[1].module'), /^cannot load \.\/missing\.mjs: ENOENT \(.*missing\.mjs\)$/)
  t.equal(byPath.get('workflows[2].name'), "'x' is configured twice (first at workflows[0])")
  t.match(byPath.get('workflows[3].export'), /exports 'notAWorkflow', but it is not a workflow: make it with defineWorkflow \(its workflows: greet\)/)
  t.match(byPath.get('workflows[4].module'), /^cannot load \.\/throws\.mjs: no config for me$/)
  t.match(byPath.get('workflows[5].module'), /cannot load flows\/bare\.mjs: .*write \.\/flows\/bare\.mjs/, 'a path without ./ is a package name; the message says how to name the file')
  t.match(byPath.get('workflows[6].module'), /cannot load no-such-package-troupe: .*Cannot find module 'no-such-package-troupe'/)
})

t.test('a valid config resolves each workflow to a module URL and export, from paths and packages alike', async t => {
  const dir = tempDir(t)
  const pkg = join(dir, 'node_modules', 'my-flows')
  mkdirSync(pkg, { recursive: true })
  writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'my-flows', type: 'module', exports: { './approve': './approve.js' } }))
  writeFileSync(join(pkg, 'approve.js'), workflowModule('approve'))
  writeFileSync(join(dir, 'local.mjs'), workflowModule('local'))
  const file = writeConfig(
    dir,
    `  - { name: three, module: ${fixtures}, export: threeSteps, retention: 24h, timeout_ms: 5000 }
  - { name: local, module: ./local.mjs, export: local, resumable: false }
  - { name: packaged, module: my-flows/approve, export: approve }`,
  )
  const resolved = await resolveWorkflows(await loadConfigFile(file))
  t.same(
    resolved.map(({ name, url, exportName, path }) => ({ name, url, exportName, path })),
    [
      { name: 'three', url: pathToFileURL(fixtures).href, exportName: 'threeSteps', path: 'workflows[0]' },
      { name: 'local', url: pathToFileURL(join(dir, 'local.mjs')).href, exportName: 'local', path: 'workflows[1]' },
      { name: 'packaged', url: pathToFileURL(join(pkg, 'approve.js')).href, exportName: 'approve', path: 'workflows[2]' },
    ],
  )
  t.same(await resolveWorkflows(parseConfig('{}', {}, join(dir, 'empty.yaml'))), [], 'no workflows, nothing to check: no runs store needed')
})

t.test('each workflow is a permanent pool actor given its limits, the stores, the models table and this node as owner', async t => {
  const dir = tempDir(t)
  const file = writeConfig(
    dir,
    `  - { name: three, module: ${fixtures}, export: threeSteps, retention: 24h, timeout_ms: 5000, max_concurrent_tasks: 2, queue_size: 0 }
  - { name: one, module: ${fixtures}, export: oneStep, resumable: false }`,
  )
  const loaded = await loadConfigFile(file)
  const resolved = await resolveWorkflows(loaded)
  const system = await startSystem(t)
  // Any refs do: the specs only carry them.
  const ref = (await system.spawn(counter, { placement: 'main', args: { start: 0 } })) as ActorRef<never>
  const specs = workflowChildSpecs(resolved, { ...loaded.config, troupe: { ...loaded.config.troupe, drain_timeout_ms: 1234 } }, { runs: ref, sessions: ref, models: ref })
  t.same(
    specs.map(({ id, name, placement, restart, shutdownMs }) => ({ id, name, placement, restart, shutdownMs })),
    [
      { id: 'workflow:three', name: 'workflow:three', placement: 'pool', restart: 'permanent', shutdownMs: 1234 },
      { id: 'workflow:one', name: 'workflow:one', placement: 'pool', restart: 'permanent', shutdownMs: 1234 },
    ],
  )
  const [three, one] = specs.map(spec => spec.args as WorkflowActorArgs)
  t.match(three, {
    name: 'three',
    url: pathToFileURL(fixtures).href,
    exportName: 'threeSteps',
    runs: { table: 'workflow_runs' },
    sessions: { namespace: 'workflow_sessions' },
    owner: hostname(),
    maxConcurrent: 2,
    queueSize: 0,
    timeoutMs: 5000,
    resumable: true,
    retentionMs: 86_400_000,
    leaseMs: 15_000,
  })
  t.equal(three?.runs.store, ref)
  t.equal(three?.models, ref)
  t.match(one, { maxConcurrent: 8, queueSize: 64, resumable: false })
  t.notOk(one !== undefined && 'timeoutMs' in one, 'no timeout unless configured')
  t.notOk(one !== undefined && 'retentionMs' in one, 'history kept unless retention is configured')

  const owned = workflowChildSpecs(resolved, { ...loaded.config, troupe: { ...loaded.config.troupe, node_id: 'node-a', lease_ms: 5000 } }, { runs: ref })
  t.match(owned[0]?.args, { owner: 'node-a', leaseMs: 5000 })
  t.notOk('sessions' in (owned[0]?.args as object), 'without a sessions ref, sessions stay in the runs store')
})

t.test('startStack starts a workflows supervisor after the apis and hands the HTTP server its entries', async t => {
  const dir = tempDir(t)
  const file = writeConfig(dir, `  - { name: three, module: ${fixtures}, export: threeSteps }\n  - { name: human, module: ${fixtures}, export: waitsForHuman }`)
  const system = await startSystem(t)
  const stack = await startStack(system, await loadConfigFile(file), quietLogger(), { port: 0, host: '127.0.0.1' })
  t.teardown(() => stack.stop())
  const snapshot = await system.inspect()
  t.same(
    snapshot.root.children.map(child => child.id),
    ['stores', 'providers', 'apis', 'runtime', 'workflows', 'stack'],
    'workflows start after the subtrees they use, so they stop before them; the stack actor, which reloads them, comes last',
  )
  const workflows = snapshot.root.children.find(child => child.id === 'workflows')
  t.equal(workflows?.kind, 'supervisor')
  t.match(workflows, { strategy: 'one_for_one' })
  t.same(
    actorNodes(workflows as SupervisorNode).map(actor => [actor.id, actor.placement]),
    [
      [workflowActorName('three'), 'pool'],
      [workflowActorName('human'), 'pool'],
    ],
  )
  t.ok(await system.lookup(workflowActorName('three')), 'registered under its name')
})

t.test('a stack with no workflows starts no workflows supervisor', async t => {
  const system = await startSystem(t)
  const stack = await startStack(system, parseConfig('{}', {}, 'test.yaml'), quietLogger(), { port: 0, host: '127.0.0.1' })
  t.teardown(() => stack.stop())
  t.notOk((await system.inspect()).root.children.some(child => child.id === 'workflows'))
})

t.test('checkStackWithWorkflows reports stack and workflow problems together', async t => {
  const dir = tempDir(t)
  const file = writeConfig(dir, '  - { name: gone, module: ./gone.mjs }', { extra: 'registered_resources:\n  models:\n    - { model_id: m, provider_id: nobody }\n' })
  const found = await issuesOf(async () => checkStackWithWorkflows(await loadConfigFile(file)))
  t.same(found.map(issue => issue.path), ['registered_resources.models[0].provider_id', 'workflows[0].module'])
})

t.test('validate loads each workflow module: a bad one is reported with its path, exit 1; a good one counts', async t => {
  const dir = tempDir(t)
  const bad = await runCli(['validate', '--config', writeConfig(dir, `  - { name: ok, module: ${fixtures}, export: oneStep }\n  - { name: broken, module: ./nowhere.js }`)])
  t.equal(bad.code, 1)
  t.match(bad.stderr, /workflows\[1\]\.module: cannot load \.\/nowhere\.js: ENOENT/)
  t.match(bad.stderr, /stack\.yaml: 1 error\n/)
  const good = await runCli(['validate', '--config', writeConfig(dir, `  - { name: ok, module: ${fixtures}, export: oneStep }`)])
  t.equal(good.code, 0, good.stderr)
  t.match(good.stdout, /stack\.yaml: valid \(0 providers, 2 backends, 2 stores, 0 models, 1 workflow\)/)
})
