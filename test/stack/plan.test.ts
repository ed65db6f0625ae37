import t from 'tap'
import { diffConfig, parseConfig } from '../../src/config/index.js'
import { plan, planReload } from '../../src/stack/plan.js'

const parse = (text: string) => parseConfig(text, {}, 'plan.yaml').config

const stack = (over: { provider?: string; extraProvider?: boolean; runsBackend?: string; workflowQueue?: number; workers?: number; port?: number; inferenceTable?: string } = {}) => `
providers:
  inference:
    - { provider_id: a, provider_type: ${over.provider ?? 'remote::openai'}, config: { base_url: 'http://a/v1' } }
${over.extraProvider === true ? "    - { provider_id: c, provider_type: remote::openai, config: { base_url: 'http://c/v1' } }\n" : ''}storage:
  backends:
    kv: { type: kv_memory }
    sql: { type: sql_lmdb, path: /tmp/plan-sql }
    sql2: { type: sql_lmdb, path: /tmp/plan-sql2 }
  stores:
    metadata: { backend: kv, namespace: registry }
    inference: { backend: sql, table_name: ${over.inferenceTable ?? 'completions'} }
    runs: { backend: ${over.runsBackend ?? 'sql'}, table_name: runs }
workflows:
  - { name: w, module: ./w.js, queue_size: ${over.workflowQueue ?? 64} }
troupe: { ${over.workers === undefined ? '' : `workers: ${over.workers}`} }
server: { port: ${over.port ?? 8321} }
`

const reloadOf = (before: string, after: string) => {
  const [a, b] = [parse(before), parse(after)]
  return planReload(plan(a), plan(b), diffConfig(a, b), b)
}

t.test('the plan lists every actor after what it depends on', async t => {
  const { actors } = plan(parse(stack()))
  t.same(actors.map(a => a.id), ['store:kv', 'store:sql', 'store:sql2', 'provider:a', 'routing:models', 'inference-store', 'reconciler', 'workflow:w'])
  const position = new Map(actors.map((a, i) => [a.id, i]))
  for (const actor of actors) for (const dep of actor.dependsOn) t.ok(position.get(dep)! < position.get(actor.id)!, `${actor.id} after ${dep}`)
  t.same(actors.find(a => a.id === 'workflow:w')!.dependsOn, ['store:sql'])
})

t.test('a hot change restarts nothing', async t => {
  const steps = reloadOf(stack(), stack({ workflowQueue: 3 }))
  t.same(steps.hot.map(c => c.path), ['workflows[w].queue_size'])
  t.same([steps.restart, steps.start, steps.stop, steps.replace], [[], [], [], []])
})

t.test("a provider's config change restarts that provider only", async t => {
  const steps = reloadOf(stack({ extraProvider: true }), stack({ extraProvider: true }).replace('http://a/v1', 'http://a2/v1'))
  t.same(steps.restart, ['provider:a'])
  t.same([steps.start, steps.stop], [[], []])
})

t.test("a provider's type change replaces it: a restart in place cannot change its behaviour", async t => {
  const steps = reloadOf(stack(), stack({ provider: 'remote::ollama' }).replace("base_url: 'http://a/v1'", "url: 'http://a'"))
  t.same(steps.replace, ['provider:a'])
  t.same(steps.restart, [])
})

t.test('adding and removing a provider starts or stops just it', async t => {
  t.same(reloadOf(stack(), stack({ extraProvider: true })).start, ['provider:c'])
  const removing = reloadOf(stack({ extraProvider: true }), stack())
  t.same([removing.stop, removing.restart], [['provider:c'], []])
})

t.test('moving a store to another backend restarts its users, not the backends', async t => {
  const steps = reloadOf(stack(), stack({ runsBackend: 'sql2' }))
  t.same(steps.restart, ['workflow:w'])
  t.same(reloadOf(stack(), stack({ inferenceTable: 'other' })).restart, ['inference-store'])
})

t.test("changing a backend restarts it and, after it, everything that uses it", async t => {
  const steps = reloadOf(stack(), stack().replace('/tmp/plan-sql }', '/tmp/plan-sql-moved }'))
  t.same(steps.restart, ['store:sql', 'inference-store', 'workflow:w'])
})

t.test('the listener moves and the pool resizes; no actor restarts for either', async t => {
  const steps = reloadOf(stack(), stack({ port: 9000, workers: 3 }))
  t.equal(steps.rebind, true)
  t.equal(steps.resize, true)
  t.same(steps.unapplied, [])
  t.same(steps.restart, [])
  const redact = reloadOf(stack(), `${stack()}logging: { redact: [secret] }\n`)
  t.same([redact.hot.map(c => c.path), redact.unapplied], [['logging.redact'], []], 'the log redaction paths apply live')
})
