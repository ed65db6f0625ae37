import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import type { ActorSystem } from '../../src/actor/index.js'
import { loadConfigFile } from '../../src/config/index.js'
import { reconciler, type RuntimeSnapshot } from '../../src/stack/reconciler.js'
import type { ProviderAvailability } from '../../actors/routing/models.js'
import { stubModelsTable, stubProvider } from '../fixtures/reconciler-stubs.js'
import { startStack, type RunningStack } from '../../src/supervisor/stack.js'
import { fakeOpenAI, type FakeUpstream } from '../../bench/fixtures/upstreams.js'
import { eventually } from '../fixtures/eventually.js'
import { quietLogger } from '../fixtures/logger.js'
import { startFakeUpstreams, stackYaml, tempDir } from '../fixtures/stack.js'
import { startSystem } from '../fixtures/system.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

interface Running {
  readonly stack: RunningStack
  readonly system: ActorSystem
  readonly file: string
  get(path: string): Promise<{ status: number; headers: Headers; body: any }>
  send(method: string, path: string, body?: unknown): Promise<{ status: number; headers: Headers; body: any }>
  runtime(): Promise<RuntimeSnapshot>
  /** Waits until the snapshot satisfies `check`. */
  until(check: (runtime: RuntimeSnapshot) => boolean, what: string): Promise<RuntimeSnapshot>
}

/** The test stack (stackYaml) with a reconciler section, edited by `edit`, started from a real file so that reloads re-read it. */
async function start(t: Teardown, reconciler: string, edit: (yaml: string) => string = yaml => yaml, fakes?: { openai: FakeUpstream; ollama: FakeUpstream }): Promise<Running> {
  const { openai, ollama } = fakes ?? (await startFakeUpstreams(t))
  const dir = tempDir(t)
  const file = join(dir, 'stack.yaml')
  writeFileSync(file, edit(`${stackYaml(openai, ollama, dir)}troupe:\n  reconciler: ${reconciler}\n`))
  const system = await startSystem(t, { workers: 1 })
  const stack = await startStack(system, await loadConfigFile(file), quietLogger(), { port: 0, host: '127.0.0.1' })
  t.teardown(() => stack.stop())
  const send = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${stack.url}${path}`, { method, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }) })
    const text = await res.text()
    return { status: res.status, headers: res.headers, body: text === '' ? undefined : JSON.parse(text) }
  }
  const runtime = async () => (await send('GET', '/v1/inspect/runtime')).body as RuntimeSnapshot
  return {
    stack,
    system,
    file,
    get: path => send('GET', path),
    send,
    runtime,
    async until(check, what) {
      let last: RuntimeSnapshot | undefined
      await eventually(async () => check((last = await runtime())), what)
      return last!
    },
  }
}

const CRASHING_PROVIDER = fileURLToPath(new URL('../fixtures/crashing-provider.ts', import.meta.url))
const provider = (runtime: RuntimeSnapshot, id: string) => runtime.providers.find(p => p.provider_id === id)!
const listings = (upstream: FakeUpstream) => upstream.requests.filter(r => r.method === 'GET' && (r.path === '/v1/models' || r.path === '/api/tags')).length
const chat = (model: string) => ({ model, messages: [{ role: 'user', content: 'hi' }] })

t.test('the snapshot keeps what each provider serves, with what the backend reports', async t => {
  const fakes = await startFakeUpstreams(t)
  fakes.openai.models = [
    { id: 'gpt-test', object: 'model', owned_by: 'fake', max_model_len: 8192 },
    { id: 'embed-test', object: 'model', owned_by: 'fake', meta: { n_embd: 768, n_ctx_train: 512 } },
  ]
  fakes.ollama.models = [{ name: 'llama-test:latest', details: { family: 'llama', parameter_size: '3B', quantization_level: 'Q4_K_M' } }, { name: 'nomic-embed-text:latest', details: { family: 'nomic-bert', families: ['nomic-bert'] } }]
  const s = await start(t, '{}', yaml => yaml, fakes)
  const runtime = await s.until(r => r.cycles >= 1, 'the first cycle')
  t.match(provider(runtime, 'fake-openai'), {
    provider_type: 'remote::openai',
    api: 'inference',
    reachable: true,
    error: null,
    breaker: { state: 'closed', consecutive_failures: 0 },
    models: [
      { id: 'gpt-test', model_type: 'llm', context_length: 8192, details: { owned_by: 'fake' } },
      { id: 'embed-test', model_type: 'embedding', context_length: 512, embedding_dimension: 768 },
    ],
    refresh_models: false,
    config: { base_url: fakes.openai.url, api_key: '********' },
  })
  t.type(provider(runtime, 'fake-openai').latency_ms, 'number')
  t.match(provider(runtime, 'fake-ollama').models, [
    { id: 'llama-test:latest', model_type: 'llm', details: { family: 'llama', parameter_size: '3B', quantization_level: 'Q4_K_M' } },
    { id: 'nomic-embed-text:latest', model_type: 'embedding' },
  ])
  t.same(runtime.settings, { interval_ms: 30_000, timeout_ms: 5000, cache_ttl_ms: 120_000, failure_threshold: 3, backoff_ms: 2000, max_backoff_ms: 60_000 })

  const models = (await s.get('/v1/models')).body.data as Array<Record<string, any>>
  t.match(models.find(m => m.id === 'gpt'), {
    object: 'model',
    owned_by: 'fake-openai',
    available: true,
    custom_metadata: { provider_id: 'fake-openai', provider_resource_id: 'gpt-test', model_type: 'llm', context_length: 8192 },
  })
  t.match(models.find(m => m.id === 'embedder'), { available: true, custom_metadata: { model_type: 'embedding', embedding_dimension: 768 } })
  t.match(models.find(m => m.id === 'llama'), { available: true, custom_metadata: { provider_resource_id: 'llama-test:latest', family: 'llama' } })
  t.notOk(models.some(m => String(m.id).startsWith('fake-')), 'without refresh_models, what a provider serves is not listed unregistered')

  const providers = (await s.get('/v1/providers')).body.data as Array<Record<string, any>>
  t.match(providers, [
    { api: 'inference', provider_id: 'fake-openai', provider_type: 'remote::openai', health: { status: 'OK' }, runtime: { reachable: true }, unavailable_models: [] },
    { api: 'inference', provider_id: 'fake-ollama', provider_type: 'remote::ollama', health: { status: 'OK' }, unavailable_models: [] },
  ])
  t.match((await s.get('/v1/providers/fake-ollama')).body, { provider_id: 'fake-ollama', health: { status: 'OK' } })
  t.match(await s.get('/v1/providers/nobody'), { status: 404, body: { error: { code: 'not_found', param: 'provider_id' } } })
  for (const path of ['/v1/providers', '/v1/inspect/runtime']) t.notMatch(JSON.stringify((await s.get(path)).body), /sk-test/, `${path} shows no secret`)
})

t.test('a registered model its provider does not serve shows as unavailable, with why, and stays registered', async t => {
  const s = await start(t, '{}', yaml => yaml.replace("    - { model_id: llama,", "    - { model_id: ghost, provider_id: fake-openai, provider_model_id: not-served }\n    - { model_id: llama,"))
  await s.until(r => r.cycles >= 1, 'the first cycle')
  await eventually(async () => (await s.get('/v1/models/ghost')).body.available === false, 'the listing to show ghost unavailable')
  const ghost = (await s.get('/v1/models')).body.data.find((m: { id: string }) => m.id === 'ghost')
  t.match(ghost, { available: false, unavailable_reason: /provider 'fake-openai' does not serve 'not-served'/ })
  const providers = (await s.get('/v1/providers')).body.data as Array<Record<string, any>>
  t.match(providers.find(p => p.provider_id === 'fake-openai')?.unavailable_models, [{ model_id: 'ghost', reason: /does not serve 'not-served'/ }])
  t.equal((await s.get('/v1/models/ghost')).status, 200, 'never unregistered')
})

t.test('refresh_models lists every model a provider serves as provider_id/model; what is listed is retrievable and routable', async t => {
  const s = await start(t, '{}', yaml => yaml.replace('        url: ', '        refresh_models: true\n        url: '))
  await s.until(r => r.cycles >= 1, 'the first cycle')
  let listed: Array<Record<string, any>> = []
  await eventually(async () => (listed = (await s.get('/v1/models')).body.data).some((m: Record<string, any>) => m.id === 'fake-ollama/llama-test:latest'), 'the served models to be listed')
  const served = listed.filter(m => String(m.id).startsWith('fake-ollama/'))
  t.same(served.map(m => [m.id, m.model_type, m.available]), [
    ['fake-ollama/llama-test:latest', 'llm', true],
    ['fake-ollama/nomic-embed-text:latest', 'embedding', true],
  ])
  t.notOk(listed.some(m => String(m.id).startsWith('fake-openai/')), 'only providers with refresh_models list what they serve')
  for (const model of served) {
    const retrieved = await s.get(`/v1/models/${model.id}`)
    t.same(retrieved.body, model, `${model.id} retrieves as listed`)
  }
  t.match((await s.get('/v1/models/fake-ollama%2Fllama-test:latest')).body, { id: 'fake-ollama/llama-test:latest' }, 'an encoded slash too')
  t.match((await s.send('POST', '/v1/chat/completions', chat('fake-ollama/llama-test:latest'))).body, { model: 'fake-ollama/llama-test:latest', choices: [{ message: { content: 'echo: hi' } }] }, 'and routes')
  t.match((await s.get('/v1/models/fake-ollama/not-pulled')).body, { id: 'fake-ollama/not-pulled', available: false, unavailable_reason: /does not serve/ }, 'a routable id that is not served says so')
  t.match(await s.get('/v1/models/nobody/x'), { status: 404, body: { error: { code: 'model_not_found' } } }, 'an unknown provider is no model')
})

t.test('a hanging provider delays nobody: the others are in the snapshot while it is still being asked', async t => {
  const hanging = await fakeOpenAI()
  t.teardown(() => hanging.close())
  hanging.listing = 'hang'
  const s = await start(t, '{ timeout_ms: 1500 }', yaml =>
    yaml.replace('storage:', `    - provider_id: hanging\n      provider_type: remote::openai\n      config:\n        base_url: ${hanging.url}\nstorage:`),
  )
  const early = await s.until(r => provider(r, 'fake-openai').reachable === true && provider(r, 'fake-ollama').reachable === true, 'the answering providers')
  t.equal(provider(early, 'hanging').reachable, null, 'the hanging one is still being asked')
  t.match((await s.get('/v1/health')).body, { status: 'OK' }, 'and health does not wait for it')
  const late = await s.until(r => provider(r, 'hanging').reachable === false, 'the hanging one to time out')
  t.match(provider(late, 'hanging'), { error: { code: 'timeout' }, breaker: { state: 'closed', consecutive_failures: 1 } })
  t.match(provider(late, 'fake-openai'), { reachable: true })
  t.match((await s.get('/v1/health')).body, { status: 'Degraded', unreachable_providers: [{ provider_id: 'hanging', message: /^timeout: / }] })
})

t.test('a provider that keeps failing opens its breaker: it is not asked, and its models are refused at once with 503 and Retry-After', async t => {
  const fakes = await startFakeUpstreams(t)
  fakes.openai.listing = 'fail'
  const s = await start(t, '{ interval_ms: 50, failure_threshold: 2, backoff_ms: 60000 }', yaml => yaml, fakes)
  const open = await s.until(r => provider(r, 'fake-openai').breaker.state === 'open', 'the breaker to open')
  t.match(provider(open, 'fake-openai'), { reachable: false, error: { code: 'upstream', message: /HTTP 500/ }, breaker: { consecutive_failures: 2 } })
  const asked = listings(fakes.openai)
  await s.until(r => r.cycles >= open.cycles + 3, 'three more cycles')
  t.equal(listings(fakes.openai), asked, 'an open breaker is not asked')
  t.ok(listings(fakes.ollama) >= 3, 'the other provider is, every cycle')

  await eventually(async () => (await s.get('/v1/models/gpt')).body.available === false, 'the routing table to have the summary')
  const chats = fakes.openai.requests.filter(r => r.path === '/v1/chat/completions').length
  const refused = await s.send('POST', '/v1/chat/completions', chat('gpt'))
  t.equal(refused.status, 503)
  t.match(refused.body, { error: { code: 'provider_unavailable', message: /model 'gpt': provider 'fake-openai' is unreachable since .*circuit open until/ } })
  t.ok(Number(refused.headers.get('retry-after')) > 50 && Number(refused.headers.get('retry-after')) <= 60, `Retry-After is the time left: ${refused.headers.get('retry-after')}`)
  t.match((await s.send('POST', '/v1/chat/completions', { ...chat('gpt'), stream: true })).status, 503, 'streamed too')
  t.match((await s.send('POST', '/v1/embeddings', { model: 'embedder', input: 'x' })).body, { error: { code: 'provider_unavailable' } }, 'and embeddings')
  t.match((await s.send('POST', '/v1/chat/completions', chat('fake-openai/gpt-test'))).status, 503, 'and provider_id/model')
  t.equal(fakes.openai.requests.filter(r => r.path === '/v1/chat/completions').length, chats, 'nothing reached the upstream')
  t.match((await s.send('POST', '/v1/chat/completions', chat('llama'))).status, 200, 'the other provider serves')
})

t.test('an open breaker tries once when its time comes, and closes when the provider answers', async t => {
  const fakes = await startFakeUpstreams(t)
  fakes.openai.listing = 'fail'
  const s = await start(t, '{ interval_ms: 3600000, failure_threshold: 1, backoff_ms: 200, max_backoff_ms: 400 }', yaml => yaml, fakes)
  await s.until(r => provider(r, 'fake-openai').breaker.state === 'open', 'the breaker to open')
  // The hour-long interval never comes: only the breaker's half-open probes ask again.
  await eventually(() => listings(fakes.openai) >= 3, 'two half-open probes')
  fakes.openai.listing = 'ok'
  const closed = await s.until(r => provider(r, 'fake-openai').breaker.state === 'closed', 'the breaker to close')
  t.match(provider(closed, 'fake-openai'), { reachable: true, error: null, breaker: { consecutive_failures: 0, retry_at: null } })
  await eventually(async () => (await s.send('POST', '/v1/chat/completions', chat('gpt'))).status === 200, 'gpt to be served again')
})

t.test('the model cache: each change path makes the reconciler ask again, only the providers it concerns', async t => {
  const fakes = await startFakeUpstreams(t)
  // An hour's interval and TTL: nothing but the change paths asks again.
  const s = await start(t, '{ interval_ms: 3600000, cache_ttl_ms: 3600000 }', yaml => yaml.replace('      provider_type: remote::openai\n', `      provider_type: remote::openai\n      module: ${CRASHING_PROVIDER}\n`), fakes)
  await s.until(r => r.cycles >= 1, 'the first cycle')
  t.same([listings(fakes.openai), listings(fakes.ollama)], [1, 1])

  t.equal((await s.send('POST', '/v1/models', { model_id: 'added', provider_id: 'fake-ollama', provider_model_id: 'llama-test:latest' })).status, 200)
  await eventually(() => listings(fakes.ollama) === 2, 'a registration to ask its provider again')
  t.match((await s.runtime()).cache.invalidations, { model_registered: 1 })
  t.equal((await s.send('DELETE', '/v1/models/added')).status, 200)
  await eventually(() => listings(fakes.ollama) === 3, 'an unregistration to ask its provider again')
  t.match((await s.runtime()).cache.invalidations, { model_unregistered: 1 })
  t.equal(listings(fakes.openai), 1, 'the other provider was not asked')

  // A crash restart of the provider actor: its module crashes on a chat for `crash`.
  const cycles = (await s.runtime()).cycles
  t.match(await s.send('POST', '/v1/chat/completions', chat('fake-openai/crash')), { status: 503, body: { error: { code: 'crashed' } } })
  await eventually(() => listings(fakes.openai) === 2, 'a restarted provider to be asked again')
  await s.until(r => r.cycles > cycles, 'that cycle to finish')
  t.match((await s.runtime()).cache.invalidations, { provider_restarted: 1 })
  t.equal(listings(fakes.ollama), 3, 'only the restarted one')

  writeFileSync(s.file, `${(await import('node:fs')).readFileSync(s.file, 'utf8').replace('interval_ms: 3600000', 'interval_ms: 3500000')}`)
  const report = await s.stack.reload('api')
  t.match(report, { result: 'applied', appliedLive: ['troupe.reconciler.interval_ms'] })
  await eventually(() => listings(fakes.openai) === 3 && listings(fakes.ollama) === 4, 'a reload to ask every provider again')
  const after = await s.runtime()
  t.match(after, { settings: { interval_ms: 3_500_000 }, cache: { invalidations: { reload: 1 } } })
})

t.test('registering an id that exists with other fields is refused with 409; the same fields again is a no-op', async t => {
  const s = await start(t, '{}')
  const model = { model_id: 'twice', provider_id: 'fake-ollama', provider_model_id: 'llama-test:latest' }
  t.equal((await s.send('POST', '/v1/models', model)).status, 200)
  t.match(await s.send('POST', '/v1/models', model), { status: 200, body: { id: 'twice', provider_model_id: 'llama-test:latest' } }, 'identical: idempotent')
  const conflict = await s.send('POST', '/v1/models', { ...model, provider_model_id: 'other' })
  t.match(conflict, { status: 409, body: { error: { code: 'conflict', param: 'provider_model_id', message: /'twice' is registered already with other fields: provider_model_id \(registered: "llama-test:latest", given: "other"\)/ } } })
  t.match((await s.get('/v1/models/twice')).body, { provider_model_id: 'llama-test:latest' }, 'unchanged')

  const withMetadata = { model_id: 'meta', provider_id: 'fake-ollama', metadata: { a: 1, b: { c: 2, d: 3 } } }
  t.equal((await s.send('POST', '/v1/models', withMetadata)).status, 200)
  t.equal((await s.send('POST', '/v1/models', { ...withMetadata, metadata: { b: { d: 3, c: 2 }, a: 1 } })).status, 200, 'the same metadata in another key order is the same')
  // Two registrations of one new id at once: one wins, the other is a conflict, never both 200.
  const racing = await Promise.all(['one', 'two'].map(provider_model_id => s.send('POST', '/v1/models', { model_id: 'raced', provider_id: 'fake-ollama', provider_model_id })))
  t.same(racing.map(r => r.status).sort(), [200, 409])
})

t.test('a model list with entries that are not models skips them: the provider neither fails nor crashes', async t => {
  const fakes = await startFakeUpstreams(t)
  fakes.openai.models = [null as never, { id: 5 }, { object: 'model' }, { id: 'kept', object: 'model' }]
  fakes.ollama.models = [null as never, { model: 'no-name' }, { name: 'kept:latest' }]
  const s = await start(t, '{}', yaml => yaml, fakes)
  const runtime = await s.until(r => r.cycles >= 1, 'the first cycle')
  t.match(provider(runtime, 'fake-openai'), { reachable: true, models: [{ id: 'kept' }] })
  t.equal(provider(runtime, 'fake-openai').models?.length, 1)
  t.match(provider(runtime, 'fake-ollama'), { reachable: true, models: [{ id: 'kept:latest' }] })
  t.equal(provider(runtime, 'fake-ollama').models?.length, 1)
})

t.test("a reload that changes a provider's config checks it at once, whatever its breaker said of the old config", async t => {
  const fakes = await startFakeUpstreams(t)
  const working = await fakeOpenAI({ apiKey: 'sk-test' })
  t.teardown(() => working.close())
  fakes.openai.listing = 'fail'
  const s = await start(t, '{ interval_ms: 3600000, failure_threshold: 1, backoff_ms: 3600000, max_backoff_ms: 3600000 }', yaml => yaml, fakes)
  await s.until(r => provider(r, 'fake-openai').breaker.state === 'open', 'the breaker to open')
  t.equal((await s.send('POST', '/v1/chat/completions', chat('gpt'))).status, 503)
  const { readFileSync } = await import('node:fs')
  writeFileSync(s.file, readFileSync(s.file, 'utf8').replace(fakes.openai.url, working.url))
  t.match(await s.stack.reload('api'), { result: 'applied', restarted: ['provider:fake-openai'] })
  const after = await s.until(r => provider(r, 'fake-openai').reachable === true, 'the new config to be checked')
  t.match(provider(after, 'fake-openai'), { breaker: { state: 'closed' }, error: null })
  await eventually(async () => (await s.send('POST', '/v1/chat/completions', chat('gpt'))).status === 200, 'gpt to be served by the new upstream')
})

t.test('a reload that only rotates a key checks the provider afresh: the breaker its bad key opened does not hold the new one back', async t => {
  const fakes = await startFakeUpstreams(t)
  const s = await start(t, '{ interval_ms: 3600000, failure_threshold: 1, backoff_ms: 3600000, max_backoff_ms: 3600000 }', yaml => yaml.replace('api_key: sk-test', 'api_key: sk-wrong'), fakes)
  const open = await s.until(r => provider(r, 'fake-openai').breaker.state === 'open', 'the breaker to open')
  t.match(provider(open, 'fake-openai').error, { code: 'auth' })
  const { readFileSync } = await import('node:fs')
  writeFileSync(s.file, readFileSync(s.file, 'utf8').replace('api_key: sk-wrong', 'api_key: sk-test'))
  t.match(await s.stack.reload('api'), { result: 'applied', restarted: ['provider:fake-openai'] })
  const after = await s.until(r => provider(r, 'fake-openai').reachable === true, 'the new key to be checked')
  t.match(provider(after, 'fake-openai'), { breaker: { state: 'closed' }, error: null })
  t.notMatch(JSON.stringify((await s.get('/v1/inspect/runtime')).body), /sk-test|sk-wrong/, 'neither key is shown')
})

t.test("a provider's list is served for the cache TTL after its last answer, then no longer listed", async t => {
  const fakes = await startFakeUpstreams(t)
  const s = await start(t, '{ interval_ms: 3600000, cache_ttl_ms: 1500 }', yaml => yaml.replace('        url: ', '        refresh_models: true\n        url: '), fakes)
  const listed = async () => ((await s.get('/v1/models')).body.data as Array<{ id: string }>).filter(m => m.id.startsWith('fake-ollama/')).length
  await eventually(async () => (await listed()) === 2, 'the served models to be listed')
  // No cycle comes for an hour: the list expires, and the table is told.
  await eventually(async () => (await listed()) === 0, 'the expired list to be dropped', 15_000)
  t.match(provider(await s.runtime(), 'fake-ollama'), { reachable: true, models: null, models_listed_at: /^\d{4}-/ })
})

t.test('a reconciler that starts again takes up what the routing table last had: a circuit-open provider stays refused, and is not asked', async t => {
  const system = await startSystem(t, { workers: 0 })
  const retryAt = Date.now() + 3_600_000
  const since = Date.now() - 60_000
  const table = await system.spawn(stubModelsTable, {
    args: {
      runtime: {
        down: { state: 'unreachable', reason: 'was down', error: { code: 'timeout', message: 'no answer', since }, refuseUntil: retryAt, refreshModels: false },
        up: { state: 'reachable', refuseUntil: 0, refreshModels: false },
      },
    },
  })
  const down = await system.spawn(stubProvider, { args: { fail: false } })
  const up = await system.spawn(stubProvider, { args: { fail: false } })
  const entry = (id: string, ref: typeof down) => ({ providerId: id, providerType: 'remote::stub', api: 'inference', ref, fingerprint: id, revision: id, refreshModels: false, config: {} })
  const settings = { intervalMs: 3_600_000, timeoutMs: 1000, cacheTtlMs: 3_600_000, failureThreshold: 3, backoffMs: 1000, maxBackoffMs: 3_600_000 }
  const rec = await system.spawn(reconciler, { args: { providers: [entry('down', down), entry('up', up)], settings, models: table } })
  let snapshot = await rec.ask<RuntimeSnapshot>({ type: 'snapshot' })
  await eventually(async () => (snapshot = await rec.ask<RuntimeSnapshot>({ type: 'snapshot' })).cycles >= 1, 'the first cycle')
  t.match(provider(snapshot, 'down'), { reachable: false, since: new Date(since).toISOString(), error: { code: 'timeout', message: 'no answer' }, breaker: { state: 'open', retry_at: new Date(retryAt).toISOString() } })
  t.match(provider(snapshot, 'up'), { reachable: true })
  t.equal(await down.ask({ type: 'asked' }), 0, 'the open one was not asked')
  const told = await table.ask<Array<Record<string, ProviderAvailability>>>({ type: 'told' })
  t.match(told.at(-1), { down: { state: 'unreachable', refuseUntil: retryAt }, up: { state: 'reachable' } }, 'and the table is told it is still refused')
})
