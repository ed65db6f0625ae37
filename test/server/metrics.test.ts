import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { defineBehavior, type ActorSystem } from '../../src/index.js'
import { loadConfigFile } from '../../src/config/index.js'
import { startStack, type RunningStack } from '../../src/supervisor/stack.js'
import { StackMetrics } from '../../src/supervisor/metrics.js'
import type { ReconcilerMessage } from '../../src/stack/reconciler.js'
import { counter } from '../fixtures/behaviors.js'
import { eventually } from '../fixtures/eventually.js'
import { quietLogger } from '../fixtures/logger.js'
import { startFakeUpstreams, stackYaml, tempDir } from '../fixtures/stack.js'
import { startSystem } from '../fixtures/system.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*'
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`)
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)/y
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

/**
 * The Prometheus text format (0.0.4), checked line by line: HELP and TYPE lines, then samples
 * whose labels parse and whose family has a TYPE. Every problem is listed rather than thrown.
 */
function parseExposition(text: string): { samples: Sample[]; problems: string[] } {
  const samples: Sample[] = []
  const problems: string[] = []
  const typed = new Map<string, string>()
  if (!text.endsWith('\n')) problems.push('the text does not end with a newline')
  for (const line of text.split('\n')) {
    if (line === '') continue
    if (line.startsWith('# HELP ')) {
      if (!new RegExp(`^# HELP ${NAME} `).test(line)) problems.push(`bad HELP: ${line}`)
      continue
    }
    const type = new RegExp(`^# TYPE (${NAME}) (\\w+)$`).exec(line)
    if (type !== null) {
      if (!TYPES.has(type[2]!)) problems.push(`unknown type: ${line}`)
      typed.set(type[1]!, type[2]!)
      continue
    }
    const sample = SAMPLE.exec(line)
    if (sample === null) {
      problems.push(`not a sample: ${line}`)
      continue
    }
    const [, name, labelText = '', valueText] = sample as unknown as [string, string, string | undefined, string]
    const labels: Record<string, string> = {}
    LABEL.lastIndex = 0
    while (LABEL.lastIndex < labelText.length) {
      const label = LABEL.exec(labelText)
      if (label === null) {
        problems.push(`bad labels: ${line}`)
        break
      }
      labels[label[1]!] = label[2]!.replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1')
    }
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText)
    if (Number.isNaN(value) && valueText !== 'NaN') problems.push(`bad value: ${line}`)
    const family = typed.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '')
    if (!typed.has(family)) problems.push(`no TYPE for ${name}`)
    samples.push({ name, labels, value })
  }
  return { samples, problems }
}

/** The value of the one sample of `name` whose labels include `labels`, or undefined. */
function sampleValue(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} samples`)
  return found[0]?.value
}

async function scrape(url: string): Promise<{ contentType: string | null; text: string; samples: Sample[]; problems: string[] }> {
  const res = await fetch(`${url}/metrics`)
  const text = await res.text()
  return { contentType: res.headers.get('content-type'), text, ...parseExposition(text) }
}

/** A stack started from a real file, so that a reload re-reads it. */
async function stackFromFile(t: Teardown, yaml: string): Promise<{ stack: RunningStack; file: string }> {
  const file = join(tempDir(t), 'stack.yaml')
  writeFileSync(file, yaml)
  const system = await startSystem(t, { workers: 1 })
  const stack = await startStack(system, await loadConfigFile(file), quietLogger(), { port: 0, host: '127.0.0.1' })
  t.teardown(() => stack.stop())
  return { stack, file }
}

const workflowsModule = fileURLToPath(new URL('../fixtures/workflows.ts', import.meta.url))

t.test('GET /metrics: requests by route and status, actors by kind, threads, the store queue, providers, workflows and reloads; no secret, no raw path', async t => {
  const { openai, ollama } = await startFakeUpstreams(t)
  const yaml = `${stackYaml(openai, ollama, tempDir(t)).replace(
    '    conversations: { backend: sql, table_name: conversations }',
    '    conversations: { backend: sql, table_name: conversations }\n    runs: { backend: sql, table_name: workflow_runs }\n    sessions: { backend: kv, namespace: workflow_sessions }',
  )}workflows:\n  - { name: one, module: ${workflowsModule}, export: oneStep }\n`
  const { stack, file } = await stackFromFile(t, yaml)
  const secretHeaders = { authorization: 'Bearer sk-secret', 'x-api-key': 'sk-secret' }

  t.equal((await fetch(`${stack.url}/v1/models/gpt`, { headers: secretHeaders })).status, 200)
  t.equal((await fetch(`${stack.url}/v1/models/private-model-name`, { headers: secretHeaders })).status, 404)
  t.equal((await fetch(`${stack.url}/nowhere/sk-secret-in-path`, { headers: secretHeaders })).status, 404)
  const chat = await fetch(`${stack.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { ...secretHeaders, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content: 'password hunter2' }] }),
  })
  t.equal(chat.status, 200)
  await chat.text()
  t.equal((await fetch(`${stack.url}/workflows/one/run`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ start_event: {} }) })).status, 200)

  t.equal((await stack.reload('api')).result, 'unchanged')
  writeFileSync(file, yaml.replace('provider_type: remote::ollama', 'provider_type: remote::nonsense'))
  t.equal((await stack.reload('api')).result, 'invalid')
  writeFileSync(file, yaml.replace('image_name: test-stack', 'image_name: renamed'))
  t.equal((await stack.reload('api')).result, 'applied')

  // The stored completion is committed after the writer's linger, and the reconciler checks in the background.
  let last = await scrape(stack.url)
  await eventually(async () => {
    last = await scrape(stack.url)
    return (sampleValue(last.samples, 'troupe_store_commits_total', { store: 'inference' }) ?? 0) >= 1 && sampleValue(last.samples, 'troupe_provider_latency_seconds', { provider: 'fake-openai' }) !== undefined
  }, 'a commit and a provider check in /metrics')
  const { contentType, text, samples, problems } = last
  const at = (name: string, labels: Record<string, string> = {}): number | undefined => sampleValue(samples, name, labels)

  t.match(contentType, /^text\/plain; version=0\.0\.4/)
  t.same(problems, [], 'the text parses as the Prometheus exposition format')

  t.equal(at('troupe_http_requests_total', { route: '/v1/models/{model_id:path}', method: 'GET', status: '200' }), 1)
  t.equal(at('troupe_http_requests_total', { route: '/v1/models/{model_id:path}', method: 'GET', status: '404' }), 1)
  t.equal(at('troupe_http_requests_total', { route: 'unmatched', method: 'GET', status: '404' }), 1)
  t.equal(at('troupe_http_requests_total', { route: '/v1/chat/completions', method: 'POST', status: '200' }), 1)
  t.equal(at('troupe_http_requests_total', { route: '/workflows/{name}/run', method: 'POST', status: '200' }), 1)
  t.ok((at('troupe_http_requests_total', { route: '/metrics', method: 'GET', status: '200' }) ?? 0) >= 1, 'scrapes count too')
  t.equal(at('troupe_http_request_duration_seconds_count', { route: '/v1/models/{model_id:path}', method: 'GET' }), 2)
  t.equal(at('troupe_http_request_duration_seconds_bucket', { route: '/v1/chat/completions', method: 'POST', le: '+Inf' }), 1)

  for (const secret of ['sk-secret', 'sk-test', 'hunter2', 'private-model-name', '/nowhere', '/v1/models/gpt"', 'Bearer']) t.notOk(text.includes(secret), `no '${secret}' in the metrics`)
  const routeLabels = new Set(samples.flatMap(s => (s.labels['route'] === undefined ? [] : [s.labels['route']])))
  t.ok([...routeLabels].every(route => route === 'unmatched' || route.startsWith('/')), 'route labels are documented paths')

  const kinds = new Set(samples.filter(s => s.name === 'troupe_actors').map(s => s.labels['kind']))
  for (const kind of ['openaiProvider', 'ollamaProvider', 'modelsRoutingTable', 'inferenceStore', 'reconciler', 'tableStore', 'kvStore', 'workflowActor']) t.ok(kinds.has(kind), `actors of kind ${kind}`)
  t.notOk([...kinds].some(kind => kind?.includes(':')), 'labelled by kind, never by actor id')
  t.equal(at('troupe_actors', { kind: 'openaiProvider', status: 'running' }), 1)
  t.equal(at('troupe_actor_mailbox_depth', { kind: 'inferenceStore' }), 0)
  t.ok((at('troupe_actor_messages_handled_total', { kind: 'inferenceStore' }) ?? 0) >= 1, 'the inference store handled the record')
  t.equal(at('troupe_actor_restarts_total', { kind: 'tableStore' }), 0)

  t.equal(at('troupe_threads', { placement: 'main' }), 1)
  t.equal(at('troupe_threads', { placement: 'pool' }), 1)
  for (const placement of ['main', 'pool']) {
    const delay = samples.find(s => s.name === 'troupe_thread_event_loop_delay_seconds' && s.labels['placement'] === placement && s.labels['quantile'] === '0.99')
    t.ok(delay !== undefined && delay.value >= 0 && delay.value < 5, `the ${placement} thread's event-loop delay`)
  }

  t.equal(at('troupe_store_write_queue', { store: 'inference', state: 'queued' }), 0)
  t.equal(at('troupe_store_write_queue_capacity', { store: 'inference' }), 100)
  t.equal(at('troupe_store_writes_total', { store: 'inference' }), 1)
  t.ok((at('troupe_store_commit_seconds_total', { store: 'inference' }) ?? 0) > 0, 'commit time is measured')

  t.equal(at('troupe_provider_reachable', { provider: 'fake-openai' }), 1)
  t.ok((at('troupe_provider_latency_seconds', { provider: 'fake-openai' }) ?? -1) >= 0)
  t.equal(at('troupe_provider_breaker_state', { provider: 'fake-openai', state: 'closed' }), 1)
  t.equal(at('troupe_provider_breaker_state', { provider: 'fake-openai', state: 'open' }), 0)

  t.equal(at('troupe_workflow_runs_finished_total', { workflow: 'one', status: 'completed' }), 1)
  t.equal(at('troupe_workflow_runs', { workflow: 'one', status: 'running' }), 0)

  t.equal(at('troupe_config_reloads_total', { result: 'unchanged' }), 1)
  t.equal(at('troupe_config_reloads_total', { result: 'invalid' }), 1)
  t.equal(at('troupe_config_reloads_total', { result: 'applied' }), 1)
  t.equal(at('troupe_config_reloads_total', { result: 'partial' }), 0)
  for (const source of ['actors', 'reconciler', 'inference_store', 'workflows']) t.equal(at('troupe_metrics_source_errors_total', { source }), 0, `no ${source} errors`)
})

/** Never answers: a hung reconciler. */
const silent = defineBehavior(import.meta.url, 'silent', {
  init: () => null,
  receive: (_state, _msg: ReconcilerMessage) => new Promise<never>(() => undefined),
})

t.test('a source that does not answer is left out of the scrape and counted; actors of one kind make one series', async t => {
  const system: ActorSystem = await startSystem(t, { workers: 1 })
  const hung = await system.spawn(silent, { placement: 'main', shutdownMs: 10 })
  for (let i = 0; i < 50; i++) await system.spawn(counter)
  const metrics = new StackMetrics({ system, sources: () => ({ reconciler: hung }), log: quietLogger(), sourceTimeoutMs: 100 })

  const started = performance.now()
  const { contentType, text } = await metrics.scrape()
  const tookMs = performance.now() - started
  const { samples, problems } = parseExposition(text)
  t.equal(contentType, metrics.registry.contentType)
  t.same(problems, [])
  t.ok(tookMs < 1000, `the scrape is bounded by the source timeout (took ${Math.round(tookMs)} ms)`)
  t.equal(sampleValue(samples, 'troupe_metrics_source_errors_total', { source: 'reconciler' }), 1)
  t.equal(sampleValue(samples, 'troupe_provider_latency_seconds'), undefined, 'nothing from the silent reconciler')
  t.equal(sampleValue(samples, 'troupe_actors', { kind: 'counter', status: 'running' }), 50)
  t.equal(samples.filter(s => s.name === 'troupe_actor_mailbox_depth').length, 2, 'one series per kind (counter, silent), none per actor')
})
