import { existsSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { loadConfigFile } from '../../src/config/index.js'
import { ActorError } from '../../src/index.js'
import { hashOfKey } from '../../src/server/auth.js'
import { sendError, sendJson, toHttpError } from '../../src/server/http.js'
import { RequestQuota } from '../../src/server/quota.js'
import { ServedRequest } from '../../src/server/served-request.js'
import { startStack, type RunningStack } from '../../src/supervisor/stack.js'
import type { FakeUpstream } from '../../bench/fixtures/upstreams.js'
import { eventually } from '../fixtures/eventually.js'
import { quietLogger } from '../fixtures/logger.js'
import { startFakeUpstreams, tempDir } from '../fixtures/stack.js'
import { startSystem } from '../fixtures/system.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

const WORKFLOWS = fileURLToPath(new URL('../fixtures/workflows.ts', import.meta.url))
const DAY_S = 86_400
/** Noon, 2026-03-10 UTC: twelve hours before the window ends. */
const NOON = Date.UTC(2026, 2, 10, 12)

interface StackFile {
  readonly openai: FakeUpstream
  readonly dir: string
  /** The `server:` section's fields, as YAML lines indented by four. */
  readonly server: string
  readonly workflows?: boolean
}

function stackYaml({ openai, dir, server, workflows = false }: StackFile): string {
  return `
version: 2
image_name: quota-test
providers:
  inference:
    - provider_id: fake-openai
      provider_type: remote::openai
      config: { base_url: '${openai.url}', api_key: sk-test }
storage:
  backends:
    kv: { type: kv_lmdb, path: '${dir}/kv' }
    sql: { type: sql_lmdb, path: '${dir}/sql' }
  stores:
    metadata: { backend: kv, namespace: registry }
    runs: { backend: sql, table_name: runs }
registered_resources:
  models:
    - { model_id: gpt, provider_id: fake-openai, provider_model_id: gpt-test }
${workflows ? `workflows:\n  - { name: human, module: '${WORKFLOWS}', export: waitsForHuman }\n  - { name: fails, module: '${WORKFLOWS}', export: fails }\n` : ''}server:
${server}
`
}

interface QuotaStack {
  readonly stack: RunningStack
  readonly file: string
  /** The time the quota's windows are read from: tests move it. */
  readonly clock: { now: number }
  call(method: string, path: string, options?: { headers?: Record<string, string>; body?: unknown; signal?: AbortSignal }): Promise<Answer>
}

interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly body: any
}

/** A stack started from a file (so that a reload re-reads it), its quota's clock at NOON; stopped with the test. */
async function quotaStack(t: Teardown, file: StackFile, options: { clock?: { now: number } } = {}): Promise<QuotaStack> {
  const path = join(file.dir, 'stack.yaml')
  writeFileSync(path, stackYaml(file))
  const clock = options.clock ?? { now: NOON }
  const system = await startSystem(t, { workers: 1 })
  const stack = await startStack(system, await loadConfigFile(path), quietLogger(), { port: 0, host: '127.0.0.1', now: () => clock.now })
  t.teardown(() => stack.stop())
  const call: QuotaStack['call'] = async (method, route, { headers = {}, body, signal } = {}) => {
    const res = await fetch(`${stack.url}${route}`, {
      method,
      headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      ...(signal === undefined ? {} : { signal }),
    })
    const text = await res.text()
    let parsed: unknown = text
    try {
      parsed = JSON.parse(text)
    } catch {
      // an event stream, or empty: kept as text
    }
    return { status: res.status, headers: res.headers, body: parsed }
  }
  return { stack, file: path, clock, call }
}

const rateLimit = (answer: Answer) => ({
  limit: answer.headers.get('ratelimit-limit'),
  remaining: answer.headers.get('ratelimit-remaining'),
  reset: answer.headers.get('ratelimit-reset'),
  policy: answer.headers.get('ratelimit-policy'),
})
const chat = (content = 'hi') => ({ model: 'gpt', messages: [{ role: 'user', content }] })
const bearer = (key: string) => ({ authorization: `Bearer ${key}` })

t.test('anonymous clients are counted by address: past the quota 429 with Retry-After, RateLimit-* headers and an OpenAI error body', async t => {
  const { openai } = await startFakeUpstreams(t)
  const q = await quotaStack(t, { openai, dir: tempDir(t), server: '  quota: { kvstore: { backend: kv, namespace: quota }, anonymous_max_requests: 3 }' })
  const answers = [await q.call('GET', '/v1/models'), await q.call('POST', '/v1/chat/completions', { body: chat() }), await q.call('GET', '/v1/models/gpt')]
  t.same(answers.map(a => a.status), [200, 200, 200])
  t.same(answers.map(rateLimit), [2, 1, 0].map(remaining => ({ limit: '3', remaining: String(remaining), reset: String(DAY_S / 2), policy: `3;w=${DAY_S}` })), 'each answer says what is left, and when the window ends')

  const upstreamCalls = openai.requests.length
  const refused = await q.call('POST', '/v1/chat/completions', { body: chat() })
  t.equal(refused.status, 429)
  t.match(refused.body, { error: { code: 'quota_exceeded', type: 'rate_limit_error', param: null, message: /^Quota exceeded: the unauthenticated client at .*127\.0\.0\.1 may make 3 requests a day \(server\.quota\.anonymous_max_requests\); the quota renews at 2026-03-11T00:00:00\.000Z, in 43200 s$/ } })
  t.equal(refused.headers.get('retry-after'), String(DAY_S / 2), 'Retry-After: seconds to the end of the window')
  t.same(rateLimit(refused), { limit: '3', remaining: '0', reset: String(DAY_S / 2), policy: `3;w=${DAY_S}` })
  t.equal(openai.requests.length, upstreamCalls, 'a refused request reaches no provider')
  t.equal((await q.call('GET', '/workflows')).status, 429, 'the workflow routes are counted too')

  for (const route of ['/v1/health', '/v1/version', '/metrics', '/health']) {
    const answer = await q.call('GET', route)
    t.equal(answer.status, 200, `${route} is served past the quota: routes without credentials are not counted`)
    t.equal(answer.headers.get('ratelimit-limit'), null, `${route} carries no quota headers`)
  }

  q.clock.now = Date.UTC(2026, 2, 11, 0, 0, 1)
  const renewed = await q.call('GET', '/v1/models')
  t.equal(renewed.status, 200, 'at midnight UTC the window rolls over')
  t.same(rateLimit(renewed), { limit: '3', remaining: '2', reset: String(DAY_S - 1), policy: `3;w=${DAY_S}` }, 'and the count starts again')
})

t.test('authenticated principals are counted each on their own, by principal rather than by key', async t => {
  const { openai } = await startFakeUpstreams(t)
  const keys = { alice: 'tr-alice-key', alice2: 'tr-alice-second-key', bob: 'tr-bob-key' }
  const server = `  auth:
    provider_config:
      type: api_keys
      keys:
        - { hash: '${hashOfKey(keys.alice)}', principal: alice }
        - { hash: '${hashOfKey(keys.alice2)}', principal: alice }
        - { hash: '${hashOfKey(keys.bob)}', principal: bob }
  quota: { kvstore: { backend: kv, namespace: quota }, anonymous_max_requests: 0, authenticated_max_requests: 2 }`
  const q = await quotaStack(t, { openai, dir: tempDir(t), server })
  t.equal((await q.call('GET', '/v1/models', { headers: bearer(keys.alice) })).status, 200)
  const second = await q.call('GET', '/v1/models', { headers: bearer(keys.alice2) })
  t.same([second.status, rateLimit(second).remaining], [200, '0'], "alice's second key counts against alice")
  const refused = await q.call('GET', '/v1/models', { headers: bearer(keys.alice) })
  t.match(refused, { status: 429, body: { error: { code: 'quota_exceeded', message: /principal 'alice' may make 2 requests a day \(server\.quota\.authenticated_max_requests\)/ } } })
  t.same(rateLimit(await q.call('GET', '/v1/models', { headers: bearer(keys.bob) })), { limit: '2', remaining: '1', reset: String(DAY_S / 2), policy: `2;w=${DAY_S}` }, 'bob counts on his own')
  const anonymous = await q.call('GET', '/v1/models')
  t.equal(anonymous.status, 401, 'without credentials: refused by authentication first, not counted')
  t.equal(anonymous.headers.get('ratelimit-limit'), null)
  t.equal((await q.call('GET', '/v1/health')).status, 200, 'public routes stay public')
})

for (const [what, quota] of [
  ['a kv_lmdb backend', '{ backend: kv, namespace: quota }'],
  ["llama-stack's inline sqlite kvstore, served from <db_path>.lmdb", "{ type: sqlite, db_path: 'DIR/quotas.db' }"],
] as const) {
  t.test(`counts survive a restart of the stack on the same data (${what})`, async t => {
    const { openai } = await startFakeUpstreams(t)
    const dir = tempDir(t)
    const file: StackFile = { openai, dir, server: `  quota: { kvstore: ${quota.replace('DIR', dir)}, anonymous_max_requests: 3 }` }
    const clock = { now: NOON }
    const first = await quotaStack(t, file, { clock })
    t.same([(await first.call('GET', '/v1/models')).status, (await first.call('GET', '/v1/models')).status], [200, 200])
    await first.stack.stop()

    const second = await quotaStack(t, file, { clock })
    const third = await second.call('GET', '/v1/models')
    t.same([third.status, rateLimit(third).remaining], [200, '0'], 'the two requests before the restart still count')
    t.equal((await second.call('GET', '/v1/models')).status, 429, 'and the quota is spent')
    if (quota.includes('sqlite')) t.ok(existsSync(join(dir, 'quotas.db.lmdb')), 'kept in an LMDB environment beside the SQLite file')
  })
}

/** Reads an SSE or NDJSON response until its first chunk: the stream is open at the server. */
async function openStream(q: QuotaStack, method: string, route: string, body?: unknown): Promise<{ status: number; close(): void }> {
  const controller = new AbortController()
  const res = await fetch(`${q.stack.url}${route}`, {
    method,
    signal: controller.signal,
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  })
  if (res.status === 200) await res.body!.getReader().read()
  else await res.text()
  return { status: res.status, close: () => controller.abort() }
}

/** Retries `attempt` until its status is not 429, within a bounded deadline: a slot is released once its response has closed at the server. */
async function admittedSoon(attempt: () => Promise<{ status: number }>, what: string): Promise<number> {
  let status = 429
  await eventually(async () => (status = (await attempt()).status) !== 429, what)
  return status
}

t.test('streams are limited per client, and a slot is released on completion, on failure and when the client goes away', async t => {
  const { openai } = await startFakeUpstreams(t)
  const q = await quotaStack(t, { openai, dir: tempDir(t), server: '  quota: { kvstore: { backend: kv, namespace: quota }, max_concurrent_streams: 1 }', workflows: true })
  const stream = (model: string) => q.call('POST', '/v1/chat/completions', { body: { ...chat(), model, stream: true } })

  const open = await openStream(q, 'POST', '/v1/chat/completions', { ...chat(), model: 'fake-openai/slow-stream', stream: true })
  t.equal(open.status, 200, 'a stream is open')
  const refused = await stream('gpt')
  t.match(refused, { status: 429, body: { error: { code: 'concurrency_limit', type: 'rate_limit_error', message: /has 1 streams open, the most server\.quota\.max_concurrent_streams allows \(1\)/ } } })
  t.equal(refused.headers.get('retry-after'), '1')
  t.match(await q.call('POST', '/v1/completions', { body: { model: 'gpt', prompt: 'hi', stream: true } }), { status: 429 }, 'legacy completions streams are counted too')
  t.equal((await q.call('POST', '/v1/chat/completions', { body: chat() })).status, 200, 'a request that does not stream holds no slot')

  open.close()
  t.equal(await admittedSoon(() => stream('gpt'), 'a stream admitted once the client went away'), 200, 'released when the client goes away')
  t.equal(await admittedSoon(() => stream('gpt'), 'a stream admitted after one completed'), 200, 'released on completion')
  t.equal((await stream('fake-openai/stream-error')).status, 200, 'a stream that fails part way (an error frame)')
  t.equal(await admittedSoon(() => stream('gpt'), 'a stream admitted after one failed part way'), 200, 'released on failure part way')
  t.equal((await stream('fake-openai/boom')).status, 502, 'a stream that fails before its first chunk')
  t.equal(await admittedSoon(() => stream('gpt'), 'a stream admitted after one failed at once'), 200, 'released on failure at once')

  // A workflow's event stream holds a slot as long as it is open.
  const run = await q.call('POST', '/workflows/human/run-nowait', { body: { start_event: {} } })
  t.equal(run.status, 200)
  const events = await openStream(q, 'GET', `/events/${run.body.handler_id}?after_sequence=-1`)
  t.equal(events.status, 200, 'an event stream is open')
  t.match(await q.call('GET', `/events/${run.body.handler_id}`), { status: 429, body: { error: { code: 'concurrency_limit' }, detail: /max_concurrent_streams/ } }, 'a second one is refused, in the workflow routes’ error shape')
  t.equal((await stream('gpt')).status, 429, 'and so is a chat stream')
  events.close()
  t.equal(await admittedSoon(() => stream('gpt'), 'a stream admitted once the event stream was closed'), 200)
  await q.call('POST', `/handlers/${run.body.handler_id}/cancel?purge=true`)
})

t.test('workflow runs are limited per client: a waiting run until its answer, a run-nowait until the run finishes', async t => {
  const { openai } = await startFakeUpstreams(t)
  const q = await quotaStack(t, { openai, dir: tempDir(t), server: '  quota: { kvstore: { backend: kv, namespace: quota }, max_concurrent_runs: 1 }', workflows: true })
  const runningHuman = async (): Promise<string> => {
    let id = ''
    await eventually(async () => {
      const handlers = (await q.call('GET', '/handlers?workflow_name=human&status=running')).body.handlers as Array<{ handler_id: string }>
      id = handlers[0]?.handler_id ?? ''
      return id !== ''
    }, 'the waiting run')
    return id
  }
  const answer = (id: string) => q.call('POST', `/events/${id}`, { body: { event: { type: 'HumanResponseEvent', value: { response: 'yes' } } } })

  // A waiting run holds its slot until it is answered.
  const waiting = q.call('POST', '/workflows/human/run', { body: { start_event: {} } })
  const id = await runningHuman()
  t.match(await q.call('POST', '/workflows/human/run-nowait', { body: { start_event: {} } }), { status: 429, body: { error: { code: 'concurrency_limit', message: /has 1 workflow runs going, the most server\.quota\.max_concurrent_runs allows \(1\)/ } } })
  t.equal((await q.call('POST', '/workflows/fails/run', { body: { start_event: {} } })).status, 429, 'any workflow')
  await answer(id)
  t.equal((await waiting).status, 200, 'the waiting run completed')

  // A failed run releases its slot; the next run is admitted.
  t.equal(await admittedSoon(() => q.call('POST', '/workflows/fails/run', { body: { start_event: {} } }), 'a run admitted after one completed'), 500, 'released on completion (the next run fails, 500)')
  const nowait = await admittedSoon(() => q.call('POST', '/workflows/human/run-nowait', { body: { start_event: {} } }), 'a run admitted after one failed')
  t.equal(nowait, 200, 'released on failure')

  // run-nowait answered at once, and its run holds the slot until it finishes.
  const nowaitId = await runningHuman()
  t.equal((await q.call('POST', '/workflows/fails/run', { body: { start_event: {} } })).status, 429, 'a run-nowait run holds its slot after its answer')
  await q.call('POST', `/handlers/${nowaitId}/cancel`)
  t.equal(await admittedSoon(() => q.call('POST', '/workflows/fails/run', { body: { start_event: {} } }), 'a run admitted after the run-nowait run was cancelled'), 500, 'released when the run finishes (cancelled)')

  // A client that stops waiting releases the slot; its run goes on.
  const controller = new AbortController()
  const abandoned = fetch(`${q.stack.url}/workflows/human/run`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ start_event: {} }), signal: controller.signal }).catch(() => 'aborted')
  const abandonedId = await runningHuman()
  controller.abort()
  t.equal(await abandoned, 'aborted')
  t.equal(await admittedSoon(() => q.call('POST', '/workflows/fails/run', { body: { start_event: {} } }), 'a run admitted after its client went away'), 500, 'released when the client goes away')
  await q.call('POST', `/handlers/${abandonedId}/cancel?purge=true`)
})

t.test('a hot reload changes the limits live and keeps the counts; a bad quota is refused with its path', async t => {
  const { openai } = await startFakeUpstreams(t)
  const dir = tempDir(t)
  const q = await quotaStack(t, { openai, dir, server: '  quota: { kvstore: { backend: kv, namespace: quota }, anonymous_max_requests: 5 }' })
  const reload = async (server: string) => {
    writeFileSync(q.file, stackYaml({ openai, dir, server }))
    return q.stack.reload()
  }
  t.same([(await q.call('GET', '/v1/models')).status, (await q.call('GET', '/v1/models')).status], [200, 200])

  const lowered = await reload('  quota: { kvstore: { backend: kv, namespace: quota }, anonymous_max_requests: 3 }')
  t.match(lowered, { result: 'applied', appliedLive: ['server.quota.anonymous_max_requests'], restarted: [] })
  const third = await q.call('GET', '/v1/models')
  t.same([third.status, rateLimit(third).limit, rateLimit(third).remaining], [200, '3', '0'], 'the new limit, and the two counted before it')
  t.equal((await q.call('GET', '/v1/models')).status, 429)

  const bad = await reload('  quota: { kvstore: { backend: nowhere, namespace: quota }, anonymous_max_requests: 10 }')
  t.equal(bad.result, 'invalid')
  t.match(bad.errors, [{ path: 'server.quota.kvstore.backend', message: /no backend named 'nowhere'/ }], 'the refusal names the path')
  t.equal((await q.call('GET', '/v1/models')).status, 429, 'and the quota in force stays')

  const raised = await reload('  quota: { kvstore: { backend: kv, namespace: quota }, anonymous_max_requests: 4, max_concurrent_streams: 1 }')
  t.equal(raised.result, 'applied')
  t.same(rateLimit(await q.call('GET', '/v1/models')), { limit: '4', remaining: '0', reset: String(DAY_S / 2), policy: `4;w=${DAY_S}` }, 'raised live: one more')

  const elsewhere = await reload('  quota: { kvstore: { backend: kv, namespace: other }, anonymous_max_requests: 4 }')
  t.equal(elsewhere.result, 'applied')
  t.equal(rateLimit(await q.call('GET', '/v1/models')).remaining, '3', 'another namespace holds other counts')

  const removed = await reload('  max_body_bytes: 10485760')
  t.match(removed, { result: 'applied', appliedLive: ['server.quota'] })
  const free = await q.call('GET', '/v1/models')
  t.same([free.status, free.headers.get('ratelimit-limit')], [200, null], 'without a quota nothing is counted')
})

t.test('a count the store cannot give is 503 quota_unavailable with Retry-After, and the next request reads it again', async t => {
  let down = true
  const store = {
    ask: <R>(): Promise<R> => (down ? Promise.reject(new ActorError('backend_unavailable', 'the quota backend is down')) : Promise.resolve(null as R)),
  }
  const settings = { store, backend: 'kv', namespace: 'quota', anonymousMaxRequests: 2, authenticatedMaxRequests: 2, periodMs: DAY_S * 1000 }
  const quota = RequestQuota.reconfigure(undefined, settings, { now: () => NOON, log: quietLogger() })!
  t.teardown(() => quota.close())
  const server = createServer((req, res) => {
    const request = new ServedRequest(req, res, 'test-request')
    Promise.resolve(quota.admit(request)).then(
      () => sendJson(res, 200, { served: true }),
      (error: unknown) => sendError(res, toHttpError(error)),
    )
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => (server.closeAllConnections(), server.close(() => resolve()))))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`

  const refused = await fetch(url)
  t.equal(refused.status, 503)
  t.equal(refused.headers.get('retry-after'), '1')
  t.match(await refused.json(), { error: { code: 'quota_unavailable', type: 'api_error', message: /the quota backend is down; retry shortly/ } }, 'neither admitted nor refused on a guess')
  down = false
  const served = await fetch(url)
  t.same([served.status, served.headers.get('ratelimit-remaining')], [200, '1'], 'read again once the store answers')
})
