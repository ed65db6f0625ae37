import { once } from 'node:events'
import { connect } from 'node:net'
import t, { type Test } from 'tap'
import { parseConfig } from '../../src/config/index.js'
import { MAX_REQUEST_ID_LENGTH, RequestIds } from '../../src/server/request-id.js'
import { startStack } from '../../src/supervisor/stack.js'
import { eventually } from '../fixtures/eventually.js'
import { capturingLogger } from '../fixtures/logger.js'
import { stackYaml, startFakeUpstreams, startTestStack, tempDir } from '../fixtures/stack.js'
import { startSystem } from '../fixtures/system.js'

/** One request id per HTTP request: answered in `x-request-id`, logged with every line about the request, the provider's included. */

const { openai, ollama } = await startFakeUpstreams(t)

/** The test stack, its main thread's and its workers' log lines captured. */
async function loggedStack(t: Test, extra = ''): Promise<{ url: string; records: Array<Record<string, unknown>> }> {
  const { logger, records } = capturingLogger('debug')
  const system = await startSystem(t, { workers: 1, logger })
  const stack = await startStack(system, parseConfig(stackYaml(openai, ollama, tempDir(t)).concat(extra), {}, 'test.yaml'), logger, { port: 0, host: '127.0.0.1' })
  t.teardown(() => stack.stop())
  return { url: stack.url, records }
}

const chat = (model: string, extra: Record<string, unknown> = {}) => JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], ...extra })
const post = (url: string, body: string, headers: Record<string, string> = {}) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body })

t.test('a new id is made for each request; a sane client id is kept, any other is replaced', async t => {
  const ids = new RequestIds()
  const first = ids.of({})
  t.match(first, /^[\w-]+-1$/)
  t.not(ids.of({}), first, 'every request gets its own')
  t.not(new RequestIds().of({}), first, 'another source (process) has another prefix')
  t.equal(ids.of({ 'x-request-id': 'trace-7f3a.b_c~1' }), 'trace-7f3a.b_c~1', 'a sane id is kept')
  const longest = 'a'.repeat(MAX_REQUEST_ID_LENGTH)
  t.equal(ids.of({ 'x-request-id': longest }), longest, 'up to the limit it is kept')
  for (const insane of ['a'.repeat(MAX_REQUEST_ID_LENGTH + 1), '', 'two words', 'line\nbreak', '"quoted"', 'semi;colon', 'x, y', 'é']) {
    t.not(ids.of({ 'x-request-id': insane }), insane, `${JSON.stringify(insane).slice(0, 30)} is replaced`)
  }
})

t.test('every answer carries x-request-id: success, 4xx, 413 and a request node:http could not parse', async t => {
  const stack = await startTestStack(t, stackYaml(openai, ollama, tempDir(t)).concat('server:\n  max_body_bytes: 1024\n'))
  const one = await fetch(`${stack.url}/v1/version`)
  const two = await fetch(`${stack.url}/v1/version`)
  t.equal(one.status, 200)
  t.ok(one.headers.get('x-request-id'), 'a 200 has one')
  t.not(one.headers.get('x-request-id'), two.headers.get('x-request-id'), 'each request its own')

  const kept = await fetch(`${stack.url}/v1/version`, { headers: { 'x-request-id': 'client-chosen-42' } })
  t.equal(kept.headers.get('x-request-id'), 'client-chosen-42', "the client's own id comes back")
  const replaced = await fetch(`${stack.url}/v1/version`, { headers: { 'x-request-id': 'x'.repeat(MAX_REQUEST_ID_LENGTH + 1) } })
  t.match(replaced.headers.get('x-request-id'), /^[\w-]+-[0-9a-z]+$/, 'an id over the limit is replaced by a new one')

  for (const [what, answer] of [
    ['404', await fetch(`${stack.url}/v1/nowhere`)],
    ['405', await fetch(`${stack.url}/v1/version`, { method: 'DELETE' })],
    ['400', await post(`${stack.url}/v1/chat/completions`, '{"model":')],
    ['413', await post(`${stack.url}/v1/chat/completions`, chat('gpt', { pad: 'x'.repeat(2048) }))],
  ] as const) {
    await answer.text()
    t.equal(String(answer.status), what)
    t.ok(answer.headers.get('x-request-id'), `a ${what} has one`)
  }

  const { port } = new URL(stack.url)
  const socket = connect(Number(port), '127.0.0.1')
  await once(socket, 'connect')
  let raw = ''
  socket.setEncoding('utf8').on('data', (chunk: string) => (raw += chunk))
  socket.write('NOT HTTP AT ALL\r\n\r\n')
  await once(socket, 'close')
  t.match(raw, /^HTTP\/1\.1 400 /)
  t.match(raw, /\r\nx-request-id: [\w-]+-[0-9a-z]+\r\n/, 'a request refused before it was parsed has one too')
})

t.test("an upstream failure: the 502 carries the id, and both the server's line and the provider's (on its worker) log it", async t => {
  const { url, records } = await loggedStack(t)
  const failed = await post(`${url}/v1/chat/completions`, chat('fake-openai/boom'), { 'x-request-id': 'boom-request-1' })
  t.equal(failed.status, 502)
  t.equal(failed.headers.get('x-request-id'), 'boom-request-1')
  await failed.text()
  await eventually(() => records.some(r => r['msg'] === 'upstream call failed'), "the provider's line to arrive from its worker")
  t.match(
    records.find(r => r['msg'] === 'upstream call failed'),
    { request_id: 'boom-request-1', provider: 'fake-openai', code: 'upstream', actor: 'provider:fake-openai' },
    "the provider's line names the request",
  )
  t.match(records.find(r => r['msg'] === 'request failed'), { request_id: 'boom-request-1', code: 'upstream', url: '/v1/chat/completions' }, "and so does the server's")

  const streamed = await post(`${url}/v1/chat/completions`, chat('fake-openai/stream-error', { stream: true }))
  t.equal(streamed.status, 200)
  const id = streamed.headers.get('x-request-id')
  t.match(await streamed.text(), /data: \{"error"/, 'the stream ends with an error frame')
  t.match(records.find(r => r['msg'] === 'stream failed part way'), { request_id: id }, 'a stream that fails after its 200 is logged with its id')

  const routed = await post(`${url}/v1/chat/completions`, chat('fake-openai/boom', { stream: true }), { 'x-request-id': 'boom-stream-2' })
  t.equal(routed.status, 502)
  await routed.text()
  await eventually(() => records.some(r => r['msg'] === 'upstream call failed' && r['request_id'] === 'boom-stream-2'), 'a streamed call that fails upstream is logged by the provider with its id')
})

t.test('429 and 503 answers carry the id; the auth failure and the quota refusal are logged with it', async t => {
  const limited = await loggedStack(t, 'server:\n  quota: { kvstore: { backend: kv, namespace: quota }, anonymous_max_requests: 1 }\n')
  t.equal((await post(`${limited.url}/v1/embeddings`, JSON.stringify({ model: 'embedder', input: 'a' }))).status, 200)
  const refused = await post(`${limited.url}/v1/embeddings`, JSON.stringify({ model: 'embedder', input: 'b' }), { 'x-request-id': 'over-quota' })
  t.equal(refused.status, 429)
  t.equal(refused.headers.get('x-request-id'), 'over-quota')
  t.match(limited.records.find(r => r['msg'] === 'a client reached its request quota'), { request_id: 'over-quota' })

  const guarded = await loggedStack(t, "server:\n  auth: { provider_config: { type: custom, endpoint: 'http://127.0.0.1:1/auth' } }\n")
  const unchecked = await fetch(`${guarded.url}/v1/models`, { headers: { authorization: 'Bearer some-token', 'x-request-id': 'verifier-down' } })
  t.equal(unchecked.status, 503)
  t.equal(unchecked.headers.get('x-request-id'), 'verifier-down')
  t.match(guarded.records.find(r => r['msg'] === 'request failed'), { request_id: 'verifier-down', code: 'auth_unavailable' })
  const anonymous = await fetch(`${guarded.url}/v1/models`, { headers: { 'x-request-id': 'no-token' } })
  t.equal(anonymous.status, 401)
  t.equal(anonymous.headers.get('x-request-id'), 'no-token')
  t.match(guarded.records.find(r => r['msg'] === 'request refused'), { request_id: 'no-token', code: 'unauthorized', level: 20 }, 'a 401 is logged at debug')
})
