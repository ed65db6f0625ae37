import { Agent, request as httpRequest } from 'node:http'
import { connect } from 'node:net'
import fc from 'fast-check'
import t, { type Test } from 'tap'
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../../src/server/http.js'
import { stackYaml, startFakeUpstreams, startTestStack, tempDir } from '../fixtures/stack.js'

const MAX_BODY_BYTES = 64 * 1024
const { openai, ollama } = await startFakeUpstreams(t)
const stack = await startTestStack(t, `${stackYaml(openai, ollama, tempDir(t))}server:\n  max_body_bytes: ${MAX_BODY_BYTES}\n`)
const { hostname: host, port } = new URL(stack.url)

interface RawResponse {
  status: number
  headers: Record<string, string>
  body: string
}

/**
 * Writes `bytes` on a fresh connection, half-closes unless `keepWriting`, and reads until the
 * server closes: the responses it sent, parsed, and whether the connection was reset (an error
 * on the client's socket) rather than closed.
 */
function exchange(bytes: string | Buffer, { halfClose = true } = {}): Promise<{ responses: RawResponse[]; reset: string | undefined; raw: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port: Number(port) })
    const chunks: Buffer[] = []
    let reset: string | undefined
    const deadline = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no close within 10 s; got ${Buffer.concat(chunks).toString('latin1').slice(0, 200)}`))
    }, 10_000)
    socket.on('data', chunk => chunks.push(chunk))
    socket.on('error', error => (reset = (error as NodeJS.ErrnoException).code ?? error.message))
    socket.on('close', () => {
      clearTimeout(deadline)
      const raw = Buffer.concat(chunks).toString('latin1')
      try {
        resolve({ responses: parseResponses(raw), reset, raw })
      } catch (error) {
        reject(error)
      }
    })
    socket.write(bytes, () => {
      if (halfClose) socket.end()
    })
  })
}

/** HTTP/1.1 responses back to back, each with a Content-Length (troupe's errors all have one). */
function parseResponses(raw: string): RawResponse[] {
  const responses: RawResponse[] = []
  let rest = raw
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n')
    if (end === -1) throw new Error(`a response without the end of its head: ${JSON.stringify(rest.slice(0, 200))}`)
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n')
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine!)?.[1])
    if (!(status >= 100)) throw new Error(`not a status line: ${JSON.stringify(statusLine)}`)
    const headers: Record<string, string> = {}
    for (const line of lines) {
      const colon = line.indexOf(':')
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
    }
    rest = rest.slice(end + 4)
    if (status === 100) continue
    const length = headers['transfer-encoding'] === 'chunked' ? dechunkedLength(rest) : Number(headers['content-length'] ?? 0)
    responses.push({ status, headers, body: headers['transfer-encoding'] === 'chunked' ? '' : rest.slice(0, length) })
    rest = rest.slice(length)
  }
  return responses
}

/** The length, in the raw text, of a chunked body (the tests only skip over such bodies). */
function dechunkedLength(text: string): number {
  let at = 0
  for (;;) {
    const lineEnd = text.indexOf('\r\n', at)
    const size = parseInt(text.slice(at, lineEnd), 16)
    at = lineEnd + 2 + size + 2
    if (size === 0) return at
  }
}

/** Whether `body` is OpenAI's error shape: `{ error: { code, message, param, type } }`. */
function openAiError(body: string): { code: string; message: string; type: string } | undefined {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown; param?: unknown; type?: unknown } }
    const error = parsed.error
    if (typeof error?.code !== 'string' || typeof error.message !== 'string' || typeof error.type !== 'string') return undefined
    if (error.param !== null && typeof error.param !== 'string') return undefined
    return error as { code: string; message: string; type: string }
  } catch {
    return undefined
  }
}

async function stillServes(t: Test): Promise<void> {
  const response = await fetch(`${stack.url}/v1/models`)
  t.equal(response.status, 200, 'the server still answers a normal request')
  await response.arrayBuffer()
}

const refusals: Array<[string, string | Buffer, number, string]> = [
  ['a 20 KB header', `GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'headers_too_large'],
  ['Content-Length: abc', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}', 400, 'bad_request'],
  ['Content-Length with chunked', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n', 400, 'bad_request'],
  ['a control byte in the path', 'GET /v1/mod\x01els HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'bad_request'],
  ['a header name with a space', 'GET /v1/models HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n', 400, 'bad_request'],
  ['a TLS hello on the HTTP port', Buffer.from('16030100a5010000a10303', 'hex'), 400, 'bad_request'],
  ['bad chunked encoding in the body of a request being served', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 400, 'bad_request'],
  ['a request cut off in its headers', 'GET /v1/models HTTP/1.1\r\nHost: x\r\nAccept: ', 400, 'bad_request'],
  ['an HTTP/1.1 request without Host', 'GET /v1/models HTTP/1.1\r\n\r\n', 400, 'bad_request'],
  ['CONNECT', 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 405, 'method_not_allowed'],
]

t.test("Expect other than 100-continue: 417 in OpenAI's error shape", async t => {
  const { responses, reset } = await exchange('POST /v1/models HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\n{}')
  t.equal(reset, undefined)
  t.equal(responses[0]?.status, 417)
  t.match(openAiError(responses[0]?.body ?? ''), { code: 'expectation_failed', type: 'invalid_request_error' })
  t.match(responses[0]?.headers['x-request-id'], /\S/, 'it carries a request id, as every answer does')
})

for (const [what, bytes, status, code] of refusals) {
  t.test(`${what}: ${status} ${code} in OpenAI's error shape, and the connection closes`, async t => {
    const { responses, reset } = await exchange(bytes)
    t.equal(reset, undefined, 'closed, not reset')
    t.equal(responses.length, 1, 'one answer')
    const [response] = responses
    t.equal(response?.status, status)
    t.match(openAiError(response?.body ?? ''), { code, type: 'invalid_request_error' }, response?.body ?? 'no body')
    t.equal(response?.headers['connection'], 'close')
    await stillServes(t)
  })
}

t.test('a body nested deeper than the limit is refused with 400, not a stack overflow', async t => {
  for (const [open, close] of [['[', ']'], ['{"a":', '}']]) {
    const body = `${open!.repeat(10_000)}1${close!.repeat(10_000)}`
    const response = await fetch(`${stack.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    t.equal(response.status, 400)
    t.match(openAiError(await response.text()), { code: 'invalid_request', message: /body nests .* more than 256 deep/ })
  }
  const justDeepEnough = `{"model":"nope","messages":[{"role":"user","content":"hi"}],"metadata":${'['.repeat(MAX_JSON_DEPTH - 3)}${']'.repeat(MAX_JSON_DEPTH - 3)}}`
  const response = await fetch(`${stack.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: justDeepEnough })
  t.not(openAiError(await response.text())?.message ?? '', /nests/, 'a body at the limit is not refused for its depth')
  await stillServes(t)
})

t.test('nesting is measured outside strings, escapes included', async t => {
  const bytes = (text: string) => Buffer.from(text)
  t.notOk(nestsDeeperThan(bytes(`["${'['.repeat(500)}"]`), 4), 'brackets in a string do not nest')
  t.notOk(nestsDeeperThan(bytes(`["\\"${'['.repeat(500)}"]`), 4), 'an escaped quote does not end the string')
  t.ok(nestsDeeperThan(bytes(`["\\\\"${'['.repeat(10)}]`), 4), 'an escaped backslash does')
  t.notOk(nestsDeeperThan(bytes('[[[[]]]][[[[]]]][[[[]]]]'), 4), 'depth, not the count of brackets')
  t.ok(nestsDeeperThan(bytes('[[[[{"é":[1]}]]]]'), 5))
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 8 }), fc.nat({ max: 10 }), (value, max) => {
      const depth = (v: unknown): number => (typeof v === 'object' && v !== null ? 1 + Math.max(0, ...Object.values(v).map(depth)) : 0)
      return nestsDeeperThan(Buffer.from(JSON.stringify(value)), max) === depth(value) > max
    }),
    { numRuns: 500 },
  )
})

t.test('a body over max_body_bytes sent at once gets its 413, not a reset', async t => {
  const body = Buffer.alloc(2 * 1024 * 1024, 'x')
  const declared = await exchange(Buffer.concat([Buffer.from(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`), body]), { halfClose: false })
  t.equal(declared.reset, undefined, 'closed, not reset')
  t.equal(declared.responses[0]?.status, 413)
  t.match(openAiError(declared.responses[0]?.body ?? ''), { code: 'body_too_large', message: /2097152 bytes; the limit is 65536/ })
  t.equal(declared.responses[0]?.headers['connection'], 'close')

  const chunked = await exchange(Buffer.concat([Buffer.from(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]), { halfClose: false })
  t.equal(chunked.reset, undefined, 'closed, not reset')
  t.match(openAiError(chunked.responses[0]?.body ?? ''), { code: 'body_too_large', message: /more than 65536 bytes/ })

  const viaFetch = await fetch(`${stack.url}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
  t.equal(viaFetch.status, 413, 'fetch reads the 413 too')
  t.match(openAiError(await viaFetch.text()), { code: 'body_too_large' })

  const viaHttp = await new Promise<number>((resolve, reject) => {
    const req = httpRequest({ host, port, path: '/v1/completions', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': body.length } }, res => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end(body)
  })
  t.equal(viaHttp, 413, "node's http client reads the 413 too")
  await stillServes(t)
})

// ---- properties: whatever is sent, an answer under 500, in OpenAI's shape when it is an error ----

const agent = new Agent({ keepAlive: true, maxSockets: 4 })
t.teardown(() => agent.destroy())

interface Sent {
  readonly method: string
  readonly path: string
  readonly headers: Record<string, string>
  readonly body: string | undefined
}

/**
 * Sends one request with node's client (which refuses what is not valid HTTP to send): the
 * status and body. A body goes with its Content-Length, as clients send it: node's client sends
 * a DELETE's body with none, which the server can only read as the next request.
 */
function send({ method, path, headers, body }: Sent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const framed = body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) }
    const req = httpRequest({ host, port, path, method, headers: framed, agent }, res => {
      const chunks: Buffer[] = []
      res.on('data', chunk => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer within 10 s to ${method} ${path}`)))
    req.on('error', reject)
    req.end(body)
  })
}

const TCHAR = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&\'*+-.^_`|~'
/** Header names node sends as they are; those that change the framing or the connection are the cases above. */
const FRAMING = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'expect', 'upgrade', 'te', 'trailer', 'keep-alive'])
const headerName = fc.string({ unit: fc.constantFrom(...TCHAR), minLength: 1, maxLength: 20 }).filter(name => !FRAMING.has(name.toLowerCase()))
const headerValue = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map(code => String.fromCharCode(code)), maxLength: 60 }).map(value => value.trim())
const headers = fc.oneof(
  fc.dictionary(headerName, headerValue, { maxKeys: 6 }),
  fc.record({ 'content-type': fc.constantFrom('application/json', 'text/plain', 'application/json; charset=utf-16', ''), authorization: headerValue }, { requiredKeys: [] }),
)
/** A path segment: unreserved characters, sub-delims, and percent signs valid or not. */
const segment = fc.string({ unit: fc.oneof(fc.constantFrom(...'abcXYZ019-._~!$&\'()*+,;=:@'), fc.constantFrom('%2F', '%00', '%E0%A4%A', '%', '%zz', '%C3%A9', '..', '%25')), maxLength: 12 })
const query = fc.option(
  fc.dictionary(fc.constantFrom('limit', 'order', 'after', 'model', 'x', ''), fc.oneof(fc.constantFrom('-1', '0', '1', '1001', 'asc', 'nope', '1e309', 'NaN', '%', '%zz'), segment), { maxKeys: 3 }).map(
    entries => `?${Object.entries(entries).map(([k, v]) => `${k}=${v}`).join('&')}`,
  ),
  { nil: '' },
)
const ROUTES: Array<[string, string]> = [
  ['POST', '/v1/chat/completions'],
  ['POST', '/v1/completions'],
  ['POST', '/v1/embeddings'],
  ['POST', '/v1/models'],
  ['POST', '/v1/conversations'],
  ['GET', '/v1/models/{x}'],
  ['GET', '/v1/chat/completions'],
  ['GET', '/v1/conversations/{x}'],
  ['POST', '/workflows/{x}/run'],
  ['DELETE', '/v1/models/{x}'],
  ['PUT', '/v1/models'],
]
const route = fc.tuple(fc.constantFrom(...ROUTES), segment).map(([[method, path], x]) => ({ method, path: path.replace('{x}', x === '' ? 'x' : x) }))
const model = fc.constantFrom('gpt', 'embedder', 'llama', 'nope', '', 'fake-openai/gpt-test', 'fake-openai/', '/')
/** Bodies near what routes accept (so validation goes deep), JSON of any shape, and text that is not JSON. */
const body = fc.oneof(
  fc.record({ model, messages: fc.oneof(fc.constant([{ role: 'user', content: 'hi' }]), fc.jsonValue({ maxDepth: 3 })), stream: fc.boolean(), max_tokens: fc.oneof(fc.integer(), fc.double()), extra: fc.jsonValue({ maxDepth: 2 }) }, { requiredKeys: [] }).map(v => JSON.stringify(v)),
  fc.record({ model, prompt: fc.jsonValue({ maxDepth: 2 }), input: fc.jsonValue({ maxDepth: 2 }), model_id: fc.string(), provider_id: fc.string(), metadata: fc.jsonValue({ maxDepth: 2 }), items: fc.jsonValue({ maxDepth: 3 }), start_event: fc.jsonValue({ maxDepth: 2 }) }, { requiredKeys: [] }).map(v => JSON.stringify(v)),
  fc.jsonValue({ maxDepth: 4 }).map(v => JSON.stringify(v)),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.constant(''),
)

/** Whether an answer passes: under 500, and when an error, in OpenAI's shape (`detail` beside it on the workflow routes). */
function answerIsSound(sent: Sent, answer: { status: number; body: string }): true {
  if (answer.status >= 500) throw new Error(`${sent.method} ${sent.path} got ${answer.status}: ${answer.body.slice(0, 300)}`)
  if (answer.status >= 400 && openAiError(answer.body) === undefined) throw new Error(`${sent.method} ${sent.path} got ${answer.status} without OpenAI's error shape: ${answer.body.slice(0, 300)}`)
  return true
}

t.test('any body, headers, path and query on the routes: under 500, and errors in OpenAI shape', async t => {
  await fc.assert(
    fc.asyncProperty(route, query, headers, body, async ({ method, path }, search, sentHeaders, text) => {
      const sent: Sent = { method, path: `${path}${search}`, headers: sentHeaders, body: method === 'GET' ? undefined : text }
      return answerIsSound(sent, await send(sent))
    }),
    { numRuns: 200 },
  )
  await stillServes(t)
})

/** Bytes that may or may not be a request: a request line and headers from parts, some of them broken. */
const rawRequest = fc
  .tuple(
    fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'OPTIONS', 'G@T', '', 'CONNECT'),
    fc.oneof(fc.constantFrom('/v1/models', '/v1/chat/completions', '/workflows/x/run', '*', 'http://x/v1/models', ''), segment.map(s => `/${s}`)),
    fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1x', ''),
    fc.array(fc.tuple(fc.oneof(headerName, fc.constantFrom('Host', 'Content-Length', 'Transfer-Encoding', 'Bad Name', 'X\x00', '')), fc.oneof(headerValue, fc.constantFrom('5', 'abc', '-1', 'chunked', 'gzip, chunked', '\x01'))), { maxLength: 5 }),
    fc.constantFrom('', '{}', '5\r\nhello\r\n0\r\n\r\n', 'zz\r\n'),
  )
  .map(([method, target, version, list, rest]) => `${method} ${target} ${version}\r\nHost: x\r\n${list.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${rest}`)

t.test('any request line and headers, valid or not: closed cleanly, and every answer under 500 in OpenAI shape', async t => {
  await fc.assert(
    fc.asyncProperty(rawRequest, async bytes => {
      const { responses, reset } = await exchange(bytes)
      if (reset !== undefined) throw new Error(`reset (${reset}) after ${JSON.stringify(bytes)}`)
      for (const response of responses) answerIsSound({ method: '', path: JSON.stringify(bytes.slice(0, 60)), headers: {}, body: undefined }, response)
      return true
    }),
    { numRuns: 150 },
  )
  await stillServes(t)
})
