import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import OpenAI from 'openai'
import t from 'tap'
import { stackYaml, startFakeUpstreams, startTestStack, tempDir } from '../fixtures/stack.js'

// The API as llama-stack's and OpenAI's clients see it: streamed completions, bounded request
// parameters, stored streamed tool calls, and the route listing.
const { openai, ollama } = await startFakeUpstreams(t)
const stack = await startTestStack(t, stackYaml(openai, ollama, tempDir(t)))
const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'unused', maxRetries: 0 })

async function post(path: string, body: unknown): Promise<{ status: number; body: any; text: string }> {
  const response = await fetch(`${stack.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const text = await response.text()
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    parsed = undefined
  }
  return { status: response.status, body: parsed, text }
}

async function get(path: string): Promise<{ status: number; body: any }> {
  const response = await fetch(`${stack.url}${path}`)
  return { status: response.status, body: await response.json() }
}

/** The `data:` frames of an SSE body, `[DONE]` kept as the string. */
function frames(text: string): unknown[] {
  return text
    .trim()
    .split('\n\n')
    .map(frame => frame.slice('data: '.length))
    .map(data => (data === '[DONE]' ? data : JSON.parse(data)))
}

const chat = (model: string, extra: Record<string, unknown> = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], ...extra })
const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { text: { type: 'string' } } } } }]

t.test('a streamed completion is text_completion chunks ending with [DONE], through both providers', async t => {
  for (const model of ['fake-openai/gpt-test', 'llama']) {
    const response = await post('/v1/completions', { model, prompt: 'once upon a time', stream: true })
    t.equal(response.status, 200, model)
    const all = frames(response.text)
    t.equal(all.at(-1), '[DONE]', `${model}: ends with [DONE]`)
    const chunks = all.slice(0, -1) as Array<{ object: string; model: string; choices: Array<{ index: number; text: string; finish_reason: string | null; logprobs: unknown }> }>
    t.ok(chunks.length > 2, `${model}: in several chunks`)
    for (const chunk of chunks) t.match(chunk, { object: 'text_completion', model, choices: [{ index: 0, text: String, logprobs: null }] })
    t.equal(chunks.map(c => c.choices[0]!.text).join(''), 'completed: once upon a time', model)
    t.equal(chunks.at(-1)!.choices[0]!.finish_reason, 'stop', `${model}: the last chunk finishes`)
  }
  t.match(openai.requests.at(-1), { path: '/v1/completions', body: { model: 'gpt-test', stream: true } }, 'the OpenAI upstream was asked to stream')
  t.match(ollama.requests.at(-1), { path: '/api/generate', body: { model: 'llama-test:latest', stream: true } }, 'Ollama was asked to stream')
})

t.test('a streamed completion fails as a streamed chat does: JSON before the first chunk, an error frame after', async t => {
  for (const provider of ['fake-openai', 'fake-ollama']) {
    const early = await post('/v1/completions', { model: `${provider}/boom`, prompt: 'x', stream: true })
    t.match(early, { status: 502, body: { error: { code: 'upstream' } } }, `${provider}: a plain JSON error`)
    const late = await post('/v1/completions', { model: `${provider}/stream-error`, prompt: 'x', stream: true })
    t.equal(late.status, 200)
    const all = frames(late.text)
    t.ok(all.length >= 2, `${provider}: a chunk, then the error`)
    t.match(all.at(-1), { error: { code: 'upstream', message: /fell over/ } })
    t.notOk(late.text.includes('[DONE]'), `${provider}: a failed stream does not claim to be done`)
  }
})

t.test('streamed completions are not recorded in the inference store', async t => {
  const stored = async () => (await get('/v1/chat/completions?limit=1000')).body.data.length as number
  const before = await stored()
  t.equal((await post('/v1/completions', { model: 'llama', prompt: 'unrecorded', stream: true })).status, 200)
  t.equal((await post('/v1/completions', { model: 'gpt', prompt: 'unrecorded' })).status, 200)
  // A chat after them is recorded: once it is listed, anything recorded before it would be too.
  t.equal((await post('/v1/chat/completions', chat('gpt'))).status, 200)
  t.equal(await stored(), before + 1, 'only the chat completion was stored')
})

t.test('the openai client streams a completion', async t => {
  for (const model of ['gpt', 'llama']) {
    const stream = await client.completions.create({ model, prompt: 'three little words', stream: true, stream_options: { include_usage: true } })
    let text = ''
    let finish: string | null | undefined
    let usage: unknown
    for await (const chunk of stream) {
      t.equal(chunk.model, model)
      text += chunk.choices[0]?.text ?? ''
      finish = chunk.choices[0]?.finish_reason ?? finish
      usage = chunk.usage ?? usage
    }
    t.equal(text, 'completed: three little words', model)
    t.equal(finish, 'stop', model)
    t.match(usage, { total_tokens: Number }, `${model}: usage, asked for`)
  }
})

t.test('out-of-range parameters are refused with a 400 naming the field', async t => {
  const refused: Array<[string, Record<string, unknown>, string]> = [
    ['/v1/chat/completions', chat('gpt', { frequency_penalty: 2.5 }), 'frequency_penalty'],
    ['/v1/chat/completions', chat('gpt', { presence_penalty: -2.01 }), 'presence_penalty'],
    ['/v1/chat/completions', chat('gpt', { logprobs: true, top_logprobs: 21 }), 'top_logprobs'],
    ['/v1/chat/completions', chat('gpt', { top_logprobs: 3 }), 'top_logprobs'],
    ['/v1/chat/completions', chat('gpt', { logprobs: false, top_logprobs: 3 }), 'top_logprobs'],
    ['/v1/chat/completions', chat('gpt', { logit_bias: { '50256': -101 } }), 'logit_bias.50256'],
    ['/v1/chat/completions', chat('gpt', { n: 0 }), 'n'],
    ['/v1/chat/completions', chat('gpt', { temperature: 2.1 }), 'temperature'],
    ['/v1/chat/completions', chat('gpt', { top_p: -0.1 }), 'top_p'],
    ['/v1/chat/completions', chat('gpt', { max_tokens: 0 }), 'max_tokens'],
    ['/v1/chat/completions', chat('gpt', { max_completion_tokens: 1.5 }), 'max_completion_tokens'],
    ['/v1/chat/completions', chat('gpt', { safety_identifier: 'x'.repeat(65) }), 'safety_identifier'],
    ['/v1/completions', { model: 'gpt', prompt: 'x', logprobs: 6 }, 'logprobs'],
    ['/v1/completions', { model: 'gpt', prompt: 'x', best_of: 0 }, 'best_of'],
    ['/v1/completions', { model: 'gpt', prompt: 'x', n: 3, best_of: 2 }, 'best_of'],
    ['/v1/completions', { model: 'gpt', prompt: 'x', echo: 'yes' }, 'echo'],
    ['/v1/completions', { model: 'gpt', prompt: 'x', suffix: 5 }, 'suffix'],
    ['/v1/completions', { model: 'gpt', prompt: 'x', frequency_penalty: -3 }, 'frequency_penalty'],
    ['/v1/completions', { model: 'gpt', prompt: 'x', logit_bias: { '1': 100.5 } }, 'logit_bias.1'],
    ['/v1/completions', { model: 'gpt', prompt: 'x', temperature: 3 }, 'temperature'],
    ['/v1/completions', { model: 'gpt', prompt: 'x', stream: 'yes' }, 'stream'],
  ]
  for (const [path, body, param] of refused) {
    const answer = await post(path, body)
    t.match(answer, { status: 400, body: { error: { code: 'invalid_request', param, type: 'invalid_request_error' } } }, `${path} ${JSON.stringify(body)}: ${param}`)
    t.ok(answer.body.error.message.startsWith(`${param}: `), `the message names ${param}`)
  }
})

t.test('parameters at their bounds, null ones and unknown ones are served and passed on', async t => {
  const atBounds = chat('gpt', { frequency_penalty: -2, presence_penalty: 2, logprobs: true, top_logprobs: 20, logit_bias: { '1': -100, '2': 100 }, temperature: null, top_p: 1, vendor_knob: { deep: true } })
  t.equal((await post('/v1/chat/completions', atBounds)).status, 200)
  t.match(openai.requests.at(-1), { body: { top_logprobs: 20, logit_bias: { '2': 100 }, vendor_knob: { deep: true } } }, 'unknown fields reach the upstream')
  const completion = { model: 'gpt', prompt: 'x', logprobs: 5, best_of: 3, n: 3, echo: true, suffix: '!', presence_penalty: -2 }
  t.equal((await post('/v1/completions', completion)).status, 200)
  t.equal((await post('/v1/completions', { model: 'gpt', prompt: 'x', logprobs: true })).status, 200, 'logprobs as llama-stack types it, a boolean')
})

t.test('a streamed chat with tool calls is stored with them', async t => {
  const response = await post('/v1/chat/completions', chat('fake-openai/tool-call', { stream: true, tools: [...tools, { type: 'function', function: { name: 'other' } }] }))
  t.equal(response.status, 200)
  const chunks = frames(response.text).slice(0, -1) as Array<{ id: string; choices: Array<{ delta: { tool_calls?: unknown[] } }> }>
  t.ok(chunks.filter(c => c.choices[0]?.delta.tool_calls !== undefined).length > 2, 'the tool calls came in fragments')
  const stored = await get(`/v1/chat/completions/${chunks[0]!.id}`)
  t.equal(stored.status, 200)
  t.same(stored.body.choices, [
    {
      index: 0,
      message: {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'call_0', type: 'function', function: { name: 'lookup', arguments: '{"text":"hi"}' } },
          { id: 'call_1', type: 'function', function: { name: 'other', arguments: '{"text":"hi"}' } },
        ],
      },
      finish_reason: 'tool_calls',
    },
  ])
})

t.test("the openai client's stream of a tool call assembles to what was stored", async t => {
  const stream = client.chat.completions.stream({ model: 'fake-openai/tool-call', messages: [{ role: 'user', content: 'weather' }], tools: tools as OpenAI.ChatCompletionTool[] })
  const final = await stream.finalChatCompletion()
  t.match(final.choices[0], { finish_reason: 'tool_calls', message: { tool_calls: [{ id: 'call_0', function: { name: 'lookup', arguments: '{"text":"weather"}' } }] } })
  const stored = await client.chat.completions.retrieve(final.id)
  t.same(stored.choices[0]?.message.tool_calls, final.choices[0]?.message.tool_calls)
})

t.test("Ollama's streamed tool calls come out in OpenAI's shape, and are stored", async t => {
  // Ollama sends a tool call whole, its arguments an object: the provider numbers it, names it, and serialises the arguments.
  const upstream = createServer((req, res) => {
    if (req.url === '/api/tags') return void res.end(JSON.stringify({ models: [] }))
    res.writeHead(200, { 'content-type': 'application/x-ndjson' })
    const line = (value: unknown) => res.write(`${JSON.stringify(value)}\n`)
    line({ model: 'm', message: { role: 'assistant', content: '', tool_calls: [{ function: { name: 'lookup', arguments: { text: 'hi' } } }] }, done: false })
    line({ model: 'm', message: { role: 'assistant', content: '', tool_calls: [{ function: { name: 'other', arguments: {} } }] }, done: false })
    line({ model: 'm', message: { role: 'assistant', content: '' }, done: true, done_reason: 'stop', prompt_eval_count: 1, eval_count: 1 })
    res.end()
  })
  await new Promise<void>(resolve => upstream.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => upstream.close(() => resolve())))
  const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`
  const withTools = await startTestStack(t, stackYaml(openai, { ...ollama, url }, tempDir(t)))
  const response = await fetch(`${withTools.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(chat('llama', { stream: true, tools })) })
  const chunks = frames(await response.text()).slice(0, -1) as Array<{ id: string; choices: Array<{ delta: { tool_calls?: unknown[] }; finish_reason: string | null }> }>
  t.match(chunks[0]!.choices[0]!.delta.tool_calls, [{ index: 0, id: /^call_/, type: 'function', function: { name: 'lookup', arguments: '{"text":"hi"}' } }])
  t.match(chunks[1]!.choices[0]!.delta.tool_calls, [{ index: 1, function: { name: 'other', arguments: '{}' } }], 'a later call is numbered on')
  t.equal(chunks.at(-1)!.choices[0]!.finish_reason, 'tool_calls')
  const stored = (await (await fetch(`${withTools.url}/v1/chat/completions/${chunks[0]!.id}`)).json()) as { choices: Array<{ message: unknown }> }
  t.match(stored.choices[0]!.message, { content: null, tool_calls: [{ function: { name: 'lookup' } }, { function: { name: 'other' } }] })
})

t.test("Ollama's tool calls in a whole (non-streamed) reply come out in OpenAI's shape too", async t => {
  const upstream = createServer((req, res) => {
    if (req.url === '/api/tags') return void res.end(JSON.stringify({ models: [] }))
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ model: 'm', message: { role: 'assistant', content: '', tool_calls: [{ function: { name: 'lookup', arguments: { text: 'hi' } } }] }, done: true, done_reason: 'stop', prompt_eval_count: 1, eval_count: 1 }))
  })
  await new Promise<void>(resolve => upstream.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => upstream.close(() => resolve())))
  const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`
  const withTools = await startTestStack(t, stackYaml(openai, { ...ollama, url }, tempDir(t)))
  const reply = (await (await fetch(`${withTools.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(chat('llama', { tools })) })).json()) as { choices: Array<Record<string, unknown>> }
  t.match(reply.choices[0], { finish_reason: 'tool_calls', message: { role: 'assistant', content: null, tool_calls: [{ id: /^call_/, type: 'function', function: { name: 'lookup', arguments: '{"text":"hi"}' } }] } })
  t.notOk('index' in ((reply.choices[0]!['message'] as { tool_calls: Array<Record<string, unknown>> }).tool_calls[0] ?? {}), 'a whole message has no stream index')
})

t.test('inspect/routes lists provider_types, and filters by API level as llama-stack does', async t => {
  const all = (await get('/v1/inspect/routes')).body.data as Array<{ route: string; method: string; provider_types: string[]; api: string }>
  const find = (method: string, route: string) => all.find(r => r.method === method && r.route === route)
  t.same(find('POST', '/v1/chat/completions'), { route: '/v1/chat/completions', method: 'POST', provider_types: ['remote::openai', 'remote::ollama'], api: 'inference' })
  t.same(find('GET', '/v1/models')?.provider_types, [], "troupe's own APIs have no providers")
  t.same(find('GET', '/v1/inspect/routes')?.provider_types, [])
  t.same(find('POST', '/v1/conversations')?.provider_types, [])
  t.ok(all.every(r => Array.isArray(r.provider_types) && typeof r.api === 'string'))

  const v1 = (await get('/v1/inspect/routes?api_filter=v1')).body.data as typeof all
  t.same(v1, all, 'every route troupe serves is at v1, or outside the versioned tree')
  const alpha = (await get('/v1/inspect/routes?api_filter=v1alpha')).body.data as typeof all
  t.ok(alpha.length > 0 && alpha.every(r => !r.route.startsWith('/v1/')), 'v1alpha lists only the routes outside the versioned tree (the workflows protocol)')
  t.ok(alpha.some(r => r.route === '/workflows'))
  t.same((await get('/v1/inspect/routes?api_filter=deprecated')).body.data, [], 'no route is deprecated')
  t.match(await get('/v1/inspect/routes?api_filter=v2'), { status: 400, body: { error: { code: 'invalid_request', param: 'api_filter' } } })
})
