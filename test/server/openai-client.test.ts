import OpenAI from 'openai'
import t from 'tap'
import { stackYaml, startFakeUpstreams, startTestStack, tempDir } from '../fixtures/stack.js'

// The official openai client against troupe, end to end: HTTP → (routed by the models routing
// table's registry) → provider actor on a pool worker → a local upstream speaking the real wire
// protocol.
const { openai, ollama } = await startFakeUpstreams(t)
const stack = await startTestStack(t, stackYaml(openai, ollama, tempDir(t)))
const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'unused', maxRetries: 0 })

t.test('models.list lists the registered models with their providers', async t => {
  const models = []
  for await (const model of client.models.list()) models.push(model)
  t.same(
    models.map(m => m.id),
    ['gpt', 'embedder', 'llama'],
  )
  t.match(models[0], { object: 'model', owned_by: 'fake-openai', provider_id: 'fake-openai', provider_model_id: 'gpt-test', model_type: 'llm' })
})

t.test('chat.completions.create, through remote::openai', async t => {
  const completion = await client.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'hello there' }] })
  t.equal(completion.choices[0]?.message.content, 'echo: hello there')
  t.equal(completion.model, 'gpt', 'the model is named as the client named it')
  const upstream = openai.requests.at(-1)!
  t.match(upstream, { path: '/v1/chat/completions', authorization: 'Bearer sk-test', body: { model: 'gpt-test' } }, 'the upstream saw its own model id and the key')
})

t.test('chat.completions.create with stream: true', async t => {
  const stream = await client.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'one two three' }], stream: true, stream_options: { include_usage: true } })
  let text = ''
  let finish: string | null | undefined
  let usage: unknown
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? ''
    finish = chunk.choices[0]?.finish_reason ?? finish
    usage = chunk.usage ?? usage
    t.equal(chunk.model, 'gpt')
  }
  t.equal(text, 'echo: one two three')
  t.equal(finish, 'stop')
  t.match(usage, { total_tokens: 5 })
})

t.test('remote::ollama answers in OpenAI shapes, streaming and not', async t => {
  const completion = await client.chat.completions.create({ model: 'llama', messages: [{ role: 'user', content: 'hi ollama' }], temperature: 0.2, max_tokens: 7 })
  t.equal(completion.choices[0]?.message.content, 'echo: hi ollama')
  t.match(completion.usage, { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 })
  t.match(ollama.requests.at(-1), { path: '/api/chat', body: { model: 'llama-test:latest', stream: false, options: { temperature: 0.2, num_predict: 7 } } })
  let text = ''
  for await (const chunk of await client.chat.completions.create({ model: 'llama', messages: [{ role: 'user', content: 'streamed words' }], stream: true })) {
    text += chunk.choices[0]?.delta.content ?? ''
  }
  t.equal(text, 'echo: streamed words')
  const unregistered = await client.chat.completions.create({ model: 'fake-ollama/other-model', messages: [{ role: 'user', content: 'direct' }] })
  t.equal(unregistered.choices[0]?.message.content, 'echo: direct', 'provider_id/model routes straight to the provider')
  t.match(ollama.requests.at(-1), { body: { model: 'other-model' } })
})

t.test('embeddings.create, through both providers', async t => {
  const viaOpenAI = await client.embeddings.create({ model: 'embedder', input: ['abc', 'hello'] })
  t.same(
    viaOpenAI.data.map(d => d.embedding),
    [
      [3, 0.5, -0.5],
      [5, 0.5, -0.5],
    ],
  )
  const viaOllama = await client.embeddings.create({ model: 'fake-ollama/nomic-embed-text', input: 'four' })
  t.same(viaOllama.data[0]?.embedding, [4, 0.25])
})

t.test('completions.create', async t => {
  const completion = await client.completions.create({ model: 'fake-openai/gpt-test', prompt: 'once upon' })
  t.equal(completion.choices[0]?.text, 'completed: once upon')
  const viaOllama = await client.completions.create({ model: 'llama', prompt: 'a time' })
  t.equal(viaOllama.choices[0]?.text, 'completed: a time')
})

t.test('stored chat completions: list (paginated with after) and retrieve', async t => {
  const ids: string[] = []
  for (const word of ['alpha', 'beta', 'gamma']) {
    ids.push((await client.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: word }] })).id)
  }
  const stored = await client.chat.completions.retrieve(ids[1]!)
  t.equal(stored.id, ids[1])
  t.equal(stored.choices[0]?.message.content, 'echo: beta')
  t.match((stored as unknown as { input_messages: unknown[] }).input_messages, [{ role: 'user', content: 'beta' }])

  const firstPage = await client.chat.completions.list({ limit: 2, order: 'asc', model: 'gpt' })
  t.equal(firstPage.data.length, 2)
  t.ok(firstPage.hasNextPage(), 'there is more after the first page')
  const seen: string[] = []
  for await (const completion of client.chat.completions.list({ limit: 2, order: 'asc', model: 'gpt' })) seen.push(completion.id)
  t.same(
    seen.filter(id => ids.includes(id)),
    ids,
    'auto-pagination walks every page, oldest first',
  )
  t.equal(new Set(seen).size, seen.length, 'no completion appears twice')
  t.ok((await client.chat.completions.list({ limit: 1000 })).data.length >= 3, 'a page of 1000, as llama-stack clients ask for')
})

t.test("stored chat completions: a completion's input messages, listed and paged as OpenAI lists them", async t => {
  const messages = [
    { role: 'system' as const, content: 'be brief' },
    { role: 'user' as const, content: 'one' },
    { role: 'user' as const, content: 'two' },
  ]
  const { id } = await client.chat.completions.create({ model: 'gpt', messages })
  const all: Array<{ id: string; role: string; content: unknown }> = []
  for await (const message of client.chat.completions.messages.list(id, { limit: 2 })) all.push(message as unknown as { id: string; role: string; content: unknown })
  t.same(
    all.map(m => [m.id, m.role, m.content]),
    messages.map((m, i) => [`${id}-${i}`, m.role, m.content]),
    'every message once, in order, with an id of its own, across pages of two',
  )
  const newest = await client.chat.completions.messages.list(id, { order: 'desc', limit: 1 })
  t.match(newest, { data: [{ id: `${id}-2`, content: 'two' }] })
  t.ok(newest.hasNextPage(), 'more after the newest')
  await t.rejects(async () => await client.chat.completions.messages.list('chatcmpl-missing'), { status: 404, code: 'not_found' }, 'an unknown completion is a 404')
})

t.test('conversations and their items', async t => {
  const conversation = await client.conversations.create({ metadata: { topic: 'testing' }, items: [{ type: 'message', role: 'user', content: 'first' }] })
  t.match(conversation, { object: 'conversation', metadata: { topic: 'testing' } })
  t.match(conversation.id, /^conv_/)
  t.same((await client.conversations.retrieve(conversation.id)).metadata, { topic: 'testing' })
  t.same((await client.conversations.update(conversation.id, { metadata: { topic: 'changed' } })).metadata, { topic: 'changed' })

  const added = await client.conversations.items.create(conversation.id, {
    items: Array.from({ length: 4 }, (_, i) => ({ type: 'message' as const, role: 'assistant' as const, content: `reply ${i}` })),
  })
  t.equal(added.data.length, 4)
  const texts: string[] = []
  const pages = await client.conversations.items.list(conversation.id, { limit: 2, order: 'asc' })
  t.equal(pages.data.length, 2)
  for await (const item of client.conversations.items.list(conversation.id, { limit: 2, order: 'asc' })) {
    const content = (item as { content: Array<{ text: string }> }).content
    texts.push(content[0]!.text)
  }
  t.same(texts, ['first', 'reply 0', 'reply 1', 'reply 2', 'reply 3'], 'every item, in order, across pages')

  const itemId = added.data[0]!.id!
  t.match(await client.conversations.items.retrieve(itemId, { conversation_id: conversation.id }), { id: itemId, type: 'message', role: 'assistant' })
  await client.conversations.items.delete(itemId, { conversation_id: conversation.id })
  await t.rejects(client.conversations.items.retrieve(itemId, { conversation_id: conversation.id }), { status: 404, code: 'not_found' })
  const deleted = await client.conversations.delete(conversation.id)
  t.match(deleted, { id: conversation.id, deleted: true })
  await t.rejects(client.conversations.retrieve(conversation.id), { status: 404, code: 'not_found' })
})

t.test('errors come back as OpenAI errors with the right status', async t => {
  await t.rejects(client.chat.completions.create({ model: 'nobody', messages: [{ role: 'user', content: 'x' }] }), { status: 404, code: 'model_not_found' })
  await t.rejects(client.chat.completions.create({ model: 'fake-openai/rate-limited', messages: [{ role: 'user', content: 'x' }] }), { status: 429, code: 'rate_limit' })
  await t.rejects(client.chat.completions.create({ model: 'fake-openai/boom', messages: [{ role: 'user', content: 'x' }] }), { status: 502, code: 'upstream' })
  await t.rejects(client.embeddings.create({ model: 'gpt', input: 'x' }), { status: 400, code: 'invalid_request', message: /llm model/ })
})
