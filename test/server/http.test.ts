import { request as httpRequest } from 'node:http'
import t, { type Test } from 'tap'
import { fakeOpenAI, type FakeUpstream } from '../../bench/fixtures/upstreams.js'
import { stackYaml, startFakeUpstreams, startTestStack, tempDir } from '../fixtures/stack.js'
import { eventually } from '../fixtures/eventually.js'
import { parseConfig } from '../../src/config/index.js'
import { startStack } from '../../src/supervisor/stack.js'
import { quietLogger } from '../fixtures/logger.js'
import { startSystem } from '../fixtures/system.js'

const { openai, ollama } = await startFakeUpstreams(t)
const dataDir = tempDir(t)
const stack = await startTestStack(t, stackYaml(openai, ollama, dataDir))

async function call(method: string, path: string, body?: unknown, raw?: string): Promise<{ status: number; body: any; text: string }> {
  const response = await fetch(`${stack.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    ...(raw !== undefined ? { body: raw } : body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const text = await response.text()
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    parsed = undefined
  }
  return { status: response.status, body: parsed, text }
}

const chat = (model: string, extra: Record<string, unknown> = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], ...extra })

t.test('bad bodies get 400 with a JSON error naming the field', async t => {
  const notJson = await call('POST', '/v1/chat/completions', undefined, '{"model": ')
  t.equal(notJson.status, 400)
  t.match(notJson.body.error, { code: 'invalid_request', message: /not valid JSON/, type: 'invalid_request_error' })

  const badRole = await call('POST', '/v1/chat/completions', { model: 'gpt', messages: [{ role: 'wizard', content: 'x' }] })
  t.equal(badRole.status, 400)
  t.match(badRole.body.error, { code: 'invalid_request', param: 'messages[0].role', message: /^messages\[0\]\.role: / })

  const noModel = await call('POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }] })
  t.match(noModel.body.error, { param: 'model' })
  const badTemperature = await call('POST', '/v1/chat/completions', chat('gpt', { temperature: 7 }))
  t.match(badTemperature.body.error, { param: 'temperature', message: /temperature/ })
  const badLimit = await call('GET', '/v1/chat/completions?limit=1001')
  t.match(badLimit, { status: 400, body: { error: { param: 'limit' } } })
  const badMetadata = await call('POST', '/v1/conversations', { metadata: { k: 'v'.repeat(600) } })
  t.match(badMetadata, { status: 400, body: { error: { param: 'metadata.k', message: /at most 512/ } } })
})

t.test('a body over the limit gets 413', async t => {
  const huge = await call('POST', '/v1/chat/completions', chat('gpt', { pad: 'x'.repeat(11 * 1024 * 1024) }))
  t.equal(huge.status, 413)
  t.equal(huge.body.error.code, 'body_too_large')
})

t.test('a body sent in chunks past the limit gets 413 and the connection closes', async t => {
  const small = await startTestStack(t, stackYaml(openai, ollama, tempDir(t)).concat('server:\n  max_body_bytes: 1024\n'))
  const url = new URL(`${small.url}/v1/chat/completions`)
  const answer = await new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, res => {
      let body = ''
      res.on('data', chunk => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }))
    })
    req.on('error', reject)
    req.write(`{"model":"gpt","messages":[{"role":"user","content":"${'x'.repeat(2000)}`)
    // The rest never comes: the server must answer without waiting for it.
  })
  t.equal(answer.status, 413)
  t.equal(answer.connection, 'close')
  t.match(JSON.parse(answer.body), { error: { code: 'body_too_large', message: /more than 1024 bytes/ } })
})

t.test('a path that is not valid percent-encoding gets 400', async t => {
  t.match(await call('GET', '/v1/models/%E0%A4%A'), { status: 400, body: { error: { code: 'invalid_request', message: /percent-encoding/ } } })
  t.match(await call('GET', '/v1/models/no%2Fsuch'), { status: 404, body: { error: { code: 'model_not_found', message: /no\/such/ } } })
})

t.test('the model list follows registrations at once', async t => {
  const before = (await call('GET', '/v1/models')).body.data.map((m: { id: string }) => m.id)
  t.equal((await call('POST', '/v1/models', { model_id: 'listed-later', provider_id: 'fake-openai', provider_model_id: 'gpt-test' })).status, 200)
  t.same((await call('GET', '/v1/models')).body.data.map((m: { id: string }) => m.id).sort(), [...before, 'listed-later'].sort())
  t.equal((await call('DELETE', '/v1/models/listed-later')).status, 200)
  t.same((await call('GET', '/v1/models')).body.data.map((m: { id: string }) => m.id).sort(), [...before].sort())
})

t.test('unknown routes and methods get JSON 404 and 405', async t => {
  t.match(await call('GET', '/v1/nothing-here'), { status: 404, body: { error: { code: 'not_found', message: /GET \/v1\/nothing-here/ } } })
  t.match(await call('DELETE', '/v1/chat/completions'), { status: 405, body: { error: { code: 'method_not_allowed' } } })
})

t.test('unknown models, and upstream failures, map to typed errors', async t => {
  t.match(await call('POST', '/v1/chat/completions', chat('no-such-model')), { status: 404, body: { error: { code: 'model_not_found', message: /no-such-model/ } } })
  t.match(await call('POST', '/v1/chat/completions', chat('fake-openai/unauthorized')), { status: 502, body: { error: { code: 'auth' } } })
  t.match(await call('POST', '/v1/chat/completions', chat('fake-ollama/rate-limited')), { status: 429, body: { error: { code: 'rate_limit' } } })
})

t.test('a stream that fails part way ends with an error frame', async t => {
  for (const model of ['fake-openai/stream-error', 'fake-ollama/stream-error']) {
    const response = await call('POST', '/v1/chat/completions', chat(model, { stream: true }))
    t.equal(response.status, 200)
    const frames = response.text.trim().split('\n\n')
    t.ok(frames.length >= 2, `${model}: a chunk, then the error`)
    t.match(JSON.parse(frames.at(-1)!.slice('data: '.length)), { error: { code: 'upstream', message: /fell over/ } })
    t.notOk(response.text.includes('[DONE]'), 'a failed stream does not claim to be done')
  }
  const ok = await call('POST', '/v1/chat/completions', chat('gpt', { stream: true }))
  t.match(ok.text, /data: \[DONE\]\n\n$/)
})

/**
 * For each provider, sends a chat to its fake model `special` and lets `leave` make the client
 * go away; the fake upstream must then see its request aborted.
 */
async function expectUpstreamAbort(t: Test, special: string, leave: (upstream: FakeUpstream, model: string) => Promise<void>): Promise<void> {
  for (const [upstream, provider] of [
    [openai, 'fake-openai'],
    [ollama, 'fake-ollama'],
  ] as const) {
    const model = `${provider}/${special}`
    const before = upstream.aborted
    await leave(upstream, model)
    await eventually(() => upstream.aborted > before, `${model}: the upstream request to be aborted`)
    t.pass(`${model}: the upstream saw the abort`)
  }
}

t.test('a client that disconnects mid-stream aborts the upstream request', t =>
  expectUpstreamAbort(t, 'slow-stream', (_upstream, model) =>
    new Promise<void>((resolve, reject) => {
      const req = httpRequest(`${stack.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, res => {
        res.once('data', () => {
          req.destroy() // the first chunk arrived: go away
          resolve()
        })
      })
      req.on('error', () => {})
      req.once('error', reject)
      req.end(JSON.stringify(chat(model, { stream: true })))
    }),
  ),
)

t.test('a client that goes away while waiting for a whole completion aborts the upstream request', t =>
  expectUpstreamAbort(t, 'hang', async (upstream, model) => {
    const requests = upstream.requests.length
    const req = httpRequest(`${stack.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } })
    req.on('error', () => {})
    req.end(JSON.stringify(chat(model)))
    await eventually(() => upstream.requests.length > requests, `${model}: the upstream to get the request`)
    req.destroy()
  }),
)

t.test('health, version, providers, inspect', async t => {
  const health = await call('GET', '/v1/health')
  t.match(health, { status: 200, body: { status: 'OK', actors_down: [], unreachable_providers: [] } })
  t.match(await call('GET', '/v1/version'), { status: 200, body: { version: /^\d+\.\d+\.\d+/, image_name: 'test-stack' } })
  const providers = await call('GET', '/v1/providers')
  t.same(
    providers.body.data.map((p: { provider_id: string; provider_type: string; api: string; health: { status: string } }) => [p.provider_id, p.provider_type, p.api, p.health.status]),
    [
      ['fake-openai', 'remote::openai', 'inference', 'OK'],
      ['fake-ollama', 'remote::ollama', 'inference', 'OK'],
    ],
  )
  const routes = await call('GET', '/v1/inspect/routes')
  t.ok(routes.body.data.some((r: { method: string; route: string }) => r.method === 'POST' && r.route === '/v1/chat/completions'))
  const actors = await call('GET', '/v1/inspect/actors')
  const ids = JSON.stringify(actors.body.root)
  for (const id of ['store:kv', 'store:sql', 'provider:fake-openai', 'provider:fake-ollama', 'routing:models', 'inference-store', 'conversations']) t.ok(ids.includes(`"${id}"`), `the tree has ${id}`)
})

t.test('health names an unreachable provider, and the stack still serves', async t => {
  const down = await fakeOpenAI()
  const url = down.url
  await down.close()
  const yaml = stackYaml({ ...openai, url }, ollama, tempDir(t))
  const system = await startSystem(t, { workers: 1 })
  const degraded = await startStack(system, parseConfig(yaml, {}, 'down.yaml'), quietLogger(), { port: 0, host: '127.0.0.1' })
  t.teardown(() => degraded.stop())
  // The reconciler's first cycle runs in the background from start: health shows it once done.
  let health: unknown
  await eventually(async () => {
    health = await (await fetch(`${degraded.url}/v1/health`)).json()
    return (health as { status: string }).status !== 'OK'
  }, 'the first cycle to find the provider down')
  t.match(health, { status: 'Degraded', unreachable_providers: [{ provider_id: 'fake-openai', message: /upstream: .*cannot reach/ }] })
  const response = await fetch(`${degraded.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(chat('gpt')) })
  t.equal(response.status, 502)
  t.match(await response.json(), { error: { code: 'upstream', message: /cannot reach/ } })
  const viaOllama = await fetch(`${degraded.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(chat('llama')) })
  t.equal(viaOllama.status, 200, 'the other provider still serves')
})

t.test('models registered over HTTP persist in the metadata store across a restart', async t => {
  const dir = tempDir(t)
  const yaml = stackYaml(openai, ollama, dir)
  const first = await startStack(await startSystem(t, { workers: 1 }), parseConfig(yaml, {}, 'a.yaml'), quietLogger(), { port: 0, host: '127.0.0.1' })
  const registered = await fetch(`${first.url}/v1/models`, { method: 'POST', body: JSON.stringify({ model_id: 'added', provider_id: 'fake-ollama', provider_model_id: 'llama-test:latest' }) })
  t.equal(registered.status, 200)
  t.match(await (await fetch(`${first.url}/v1/models`, { method: 'POST', body: JSON.stringify({ model_id: 'x', provider_id: 'nobody' }) })).json(), { error: { code: 'unknown_provider' } })
  await first.stop()
  const second = await startStack(await startSystem(t, { workers: 1 }), parseConfig(yaml, {}, 'b.yaml'), quietLogger(), { port: 0, host: '127.0.0.1' })
  t.teardown(() => second.stop())
  const models = (await (await fetch(`${second.url}/v1/models`)).json()) as { data: Array<{ id: string }> }
  t.same(models.data.map(m => m.id).sort(), ['added', 'embedder', 'gpt', 'llama'])
  t.equal((await fetch(`${second.url}/v1/models/added`, { method: 'DELETE' })).status, 200)
  t.equal((await fetch(`${second.url}/v1/models/added`)).status, 404)
})
