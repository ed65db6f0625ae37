// Inference is routed from the registry listing the API server watches, straight to the provider
// actor; only while no watch is live (the first request) does it go through the models routing
// table. Either way it routes as the table does.
import t from 'tap'
import { actorNodes, type SystemSnapshot } from '../../src/index.js'
import { modelNotFound, type Model, type ModelOwner } from '../../actors/routing/models.js'
import { eventually } from '../fixtures/eventually.js'
import { stackYaml, startFakeUpstreams, startTestStack, tempDir } from '../fixtures/stack.js'

const { openai, ollama } = await startFakeUpstreams(t)
const stack = await startTestStack(t, stackYaml(openai, ollama, tempDir(t)))
// The reconciler's first cycle tells the table what it found: after it, the table handles no message these tests do not send.
await eventually(async () => ((await (await fetch(`${stack.url}/v1/inspect/runtime`)).json()) as { cycles: number }).cycles >= 1, 'the first reconciler cycle')

async function post(path: string, body: unknown): Promise<{ status: number; body: any; text: string }> {
  const response = await fetch(`${stack.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const text = await response.text()
  return { status: response.status, body: text.startsWith('{') ? JSON.parse(text) : undefined, text }
}

const chat = (model: string, extra: Record<string, unknown> = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], ...extra })

/** Messages the models routing table has handled so far. */
async function tableHandled(): Promise<number> {
  const snapshot = (await (await fetch(`${stack.url}/v1/inspect/actors`)).json()) as SystemSnapshot
  return actorNodes(snapshot.root).find(actor => actor.id === 'routing:models')!.messagesHandled
}

t.test('the first request goes through the table, and starts the watch; the rest go straight to the provider', async t => {
  const before = await tableHandled()
  t.match(await post('/v1/chat/completions', chat('gpt')), { status: 200, body: { model: 'gpt', choices: [{ message: { content: 'echo: hi' } }] } })
  t.equal((await tableHandled()) - before, 2, 'the table routed the chat, and opened the watch')

  // The watch delivers its first listing a moment later; from then on the table sees no inference.
  let settled = await tableHandled()
  await eventually(async () => {
    t.equal((await post('/v1/chat/completions', chat('gpt'))).status, 200)
    const now = await tableHandled()
    const direct = now === settled
    settled = now
    return direct
  }, 'a chat routed without the table')

  t.match(await post('/v1/chat/completions', chat('llama')), { status: 200, body: { model: 'llama', choices: [{ message: { content: 'echo: hi' } }] } })
  const streamed = await post('/v1/chat/completions', chat('gpt', { stream: true }))
  t.equal(streamed.status, 200)
  const frames = streamed.text.trim().split('\n\n')
  t.equal(frames.at(-1), 'data: [DONE]')
  for (const frame of frames.slice(0, -1)) t.equal(JSON.parse(frame.slice('data: '.length)).model, 'gpt', 'each chunk names the model as asked for')
  t.match(await post('/v1/completions', { model: 'gpt', prompt: 'hi' }), { status: 200, body: { model: 'gpt' } })
  t.match(await post('/v1/embeddings', { model: 'embedder', input: ['abc'] }), { status: 200, body: { model: 'embedder' } })
  t.equal(await tableHandled(), settled, 'none of them went through the table')
})

t.test("routing from the watched listing follows this server's registrations at once, and routes as the table does", async t => {
  t.equal((await post('/v1/models', { model_id: 'routed-later', provider_id: 'fake-ollama', provider_model_id: 'llama-test:latest' })).status, 200)
  t.match(await post('/v1/chat/completions', chat('routed-later')), { status: 200, body: { model: 'routed-later', choices: [{ message: { content: 'echo: hi' } }] } })
  t.equal((await fetch(`${stack.url}/v1/models/routed-later`, { method: 'DELETE' })).status, 200)
  t.match(await post('/v1/chat/completions', chat('routed-later')), { status: 404, body: { error: { code: 'model_not_found', message: /'routed-later' is not registered/ } } })

  t.match(await post('/v1/chat/completions', chat('fake-openai/gpt-test')), { status: 200, body: { model: 'fake-openai/gpt-test' } })
  t.match(await post('/v1/chat/completions', chat('nobody/gpt-test')), { status: 404, body: { error: { code: 'model_not_found', message: modelNotFound('nobody/gpt-test').message } } })
  t.match(await post('/v1/chat/completions', chat('embedder')), { status: 400, body: { error: { code: 'invalid_request', message: /'embedder' is an embedding model/ } } })
  t.match(await post('/v1/embeddings', { model: 'gpt', input: ['abc'] }), { status: 400, body: { error: { code: 'invalid_request', message: /'gpt' is an llm model/ } } })
})

t.test('the table routes the same way when asked itself (other actors, or the server before its watch)', async t => {
  const chunks: Array<{ model: string }> = []
  for await (const chunk of stack.models.stream<{ model: string }>({ type: 'chat', request: chat('gpt') })) chunks.push(chunk)
  t.ok(chunks.length > 0, 'the chat streamed')
  t.ok(chunks.every(chunk => chunk.model === 'gpt'), 'each chunk names the model as asked for')
  t.match(await stack.models.ask({ type: 'embeddings', request: { model: 'embedder', input: ['abc'] } }), { model: 'embedder' })
  await t.rejects(stack.models.ask({ type: 'chat', request: chat('embedder') }), { code: 'invalid_request', message: /'embedder' is an embedding model/ })
})

const alice: ModelOwner = { principal: 'alice', attributes: { teams: ['ml'] } }

t.test('unregister with expectOwner removes the model only while it has that owner: one registered anew in between stays', async t => {
  const model = { model_id: 'owned-once', provider_id: 'fake-openai', provider_model_id: 'gpt-test' }
  t.match(await stack.models.ask<Model>({ type: 'register', model, owner: alice }), { identifier: 'owned-once', owner: alice })
  t.equal(await stack.models.ask({ type: 'unregister', model_id: 'owned-once', expectOwner: null }), null, 'checked as unowned: not removed')
  t.equal(await stack.models.ask({ type: 'unregister', model_id: 'owned-once', expectOwner: { principal: 'bob', attributes: {} } }), null, 'checked as bob’s: not removed')
  t.equal(await stack.models.ask({ type: 'unregister', model_id: 'owned-once', expectOwner: { principal: 'alice', attributes: { teams: ['web'] } } }), null, 'alice as she was at another time: not the owner checked')
  t.match(await stack.models.ask({ type: 'get', model_id: 'owned-once' }), { owner: alice }, 'still registered, to alice')
  t.match(await stack.models.ask({ type: 'unregister', model_id: 'owned-once', expectOwner: alice }), { identifier: 'owned-once' }, 'checked as alice’s: removed')
  t.equal(await stack.models.ask({ type: 'get', model_id: 'owned-once' }), null)
  await stack.models.ask({ type: 'register', model })
  t.match(await stack.models.ask({ type: 'unregister', model_id: 'owned-once', expectOwner: null }), { identifier: 'owned-once' }, 'an unowned one, checked as unowned')
})

t.test('inference through the table with expect routes only the model that was checked', async t => {
  await stack.models.ask({ type: 'register', model: { model_id: 'checked-alias', provider_id: 'fake-openai', provider_model_id: 'gpt-test' }, owner: alice })
  t.teardown(() => stack.models.ask({ type: 'unregister', model_id: 'checked-alias' }))
  const missing = (id: string) => ({ code: 'model_not_found', message: modelNotFound(id).message })
  t.match(await stack.models.ask({ type: 'chat', request: chat('checked-alias'), expect: { kind: 'registered', owner: alice } }), { model: 'checked-alias' })
  await t.rejects(stack.models.ask({ type: 'chat', request: chat('checked-alias'), expect: { kind: 'registered', owner: null } }), missing('checked-alias'), 'checked as unowned, owned now: not routed')
  await t.rejects(stack.models.ask({ type: 'chat', request: chat('checked-alias'), expect: { kind: 'listed' } }), missing('checked-alias'), 'checked as a provider model, registered now: not routed')
  await t.rejects(stack.models.ask({ type: 'chat', request: chat('fake-openai/gpt-test'), expect: { kind: 'registered', owner: null } }), missing('fake-openai/gpt-test'))
  t.match(await stack.models.ask({ type: 'embeddings', request: { model: 'fake-openai/embed-test', input: ['abc'] }, expect: { kind: 'listed' } }), { model: 'fake-openai/embed-test' }, 'a model the provider lists')
  await t.rejects(stack.models.ask({ type: 'chat', request: chat('fake-openai/unlisted'), expect: { kind: 'listed' } }), missing('fake-openai/unlisted'), 'one it does not list')
  const streamed = stack.models.stream({ type: 'chat', request: chat('checked-alias'), expect: { kind: 'registered', owner: null } })
  await t.rejects((async () => {
    for await (const _chunk of streamed) t.fail('no chunk of a model that was not checked')
  })(), missing('checked-alias'), 'streamed alike')
})

t.test("a provider's namespace is not registrable over the API: provider_id/… ids name what it lists", async t => {
  const refused = await post('/v1/models', { model_id: 'fake-openai/gpt-test', provider_id: 'fake-openai', provider_model_id: 'other' })
  t.match(refused, { status: 400, body: { error: { code: 'invalid_request', param: 'model_id', message: /model_id 'fake-openai\/gpt-test' is in provider 'fake-openai''s namespace/ } } })
  t.match(await post('/v1/models', { model_id: 'fake-ollama/mine', provider_id: 'fake-openai' }), { status: 400, body: { error: { param: 'model_id' } } }, 'whichever provider the model is on')
  t.match(await post('/v1/chat/completions', chat('fake-openai/gpt-test')), { status: 200, body: { model: 'fake-openai/gpt-test' } }, 'the id still names the provider’s model')
  t.match(await post('/v1/models', { model_id: 'meta-llama/not-a-provider', provider_id: 'fake-openai', provider_model_id: 'gpt-test' }), { status: 200 }, 'a prefix that is no provider’s is an id like any other')
  t.equal((await fetch(`${stack.url}/v1/models/meta-llama/not-a-provider`, { method: 'DELETE' })).status, 200)
  t.match(await stack.models.ask({ type: 'register', model: { model_id: 'fake-openai/from-config', provider_id: 'fake-openai' }, replace: true }), { identifier: 'fake-openai/from-config' }, 'the config may (replace: its own models)')
  t.ok(await stack.models.ask({ type: 'unregister', model_id: 'fake-openai/from-config' }))
})
