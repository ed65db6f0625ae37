// The API server's drain: beginDrain stops intake at once (new requests on open connections get
// 503, idle keep-alive connections close), close() lets requests in flight finish and cancels
// what is left at its deadline, so that it always settles.
import { Agent, createServer, request as httpRequest, type IncomingHttpHeaders, type ServerResponse } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'
import t, { type Test } from 'tap'
import type { ModelsMessage } from '../../actors/routing/models.js'
import { ApiServer } from '../../src/server/server.js'
import type { ActorRef } from '../../src/index.js'
import { counter } from '../fixtures/behaviors.js'
import { eventually } from '../fixtures/eventually.js'
import { quietLogger } from '../fixtures/logger.js'
import { startTestStack } from '../fixtures/stack.js'
import { startSystem } from '../fixtures/system.js'

/**
 * An OpenAI-compatible upstream that holds every chat completion until `release`: a stream gets
 * its headers and first chunk at once, the rest on release. `cut` counts the requests whose
 * connection closed before they were answered: calls troupe aborted.
 */
interface HeldUpstream {
  readonly url: string
  readonly received: number
  readonly cut: number
  release(): void
}

async function heldUpstream(t: Test): Promise<HeldUpstream> {
  const held: Array<() => void> = []
  let released = false
  const state = { url: '', received: 0, cut: 0, release: () => undefined as void }
  const json = (res: ServerResponse, body: unknown): void => {
    const text = JSON.stringify(body)
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text)
  }
  const server = createServer((req, res) => {
    let text = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => (text += chunk))
    req.on('end', () => {
      if (req.url !== '/v1/chat/completions') return json(res, { object: 'list', data: [{ id: 'held-model', object: 'model', created: 0, owned_by: 'test' }] })
      const body = JSON.parse(text) as { model: string; stream?: boolean }
      state.received++
      res.on('close', () => {
        if (!res.writableFinished) state.cut++
      })
      const base = { id: 'chatcmpl-held', created: 0, model: body.model }
      const chunk = (delta: unknown, finish: string | null) => `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`
      if (body.stream === true) {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write(chunk({ role: 'assistant', content: '' }, null))
      }
      const answer = (): void => {
        if (body.stream === true) res.end(`${chunk({ content: 'released' }, null)}${chunk({}, 'stop')}data: [DONE]\n\n`)
        else {
          const message = { role: 'assistant', content: 'released' }
          json(res, { ...base, object: 'chat.completion', choices: [{ index: 0, message, finish_reason: 'stop', logprobs: null }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } })
        }
      }
      if (released) answer()
      else held.push(answer)
    })
  })
  state.release = () => {
    released = true
    for (const answer of held.splice(0)) answer()
  }
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`
  t.teardown(
    () =>
      new Promise<void>(resolve => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  )
  return state
}

/** A stack whose model `held` is served by a held upstream. */
async function heldStack(t: Test): Promise<{ api: ApiServer; url: string; upstream: HeldUpstream }> {
  const upstream = await heldUpstream(t)
  const stack = await startTestStack(
    t,
    `
version: 2
image_name: drain-test
apis: [inference, models]
providers:
  inference:
    - provider_id: held
      provider_type: remote::openai
      config: { base_url: ${upstream.url}, api_key: sk-test }
registered_resources:
  models:
    - { model_id: held, provider_id: held, provider_model_id: held-model }
`,
  )
  return { api: stack.server, url: stack.url, upstream }
}

/** An API server on loopback with a stand-in routing table: enough for routes that ask nothing. */
async function startApi(t: Test): Promise<{ api: ApiServer; url: string }> {
  const system = await startSystem(t, { workers: 0 })
  const models = (await system.spawn(counter, { placement: 'main' })) as unknown as ActorRef<ModelsMessage>
  const api = new ApiServer({ system, models, imageName: 'test', version: '0.0.0', log: quietLogger(), maxBodyBytes: 1024 })
  const url = await api.listen(0, '127.0.0.1')
  t.teardown(() => api.close())
  return { api, url }
}

interface Answer {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly body: string
}

/** One request; resolves with the answer, rejects when the connection fails. */
function send(url: string, options: { method?: string; agent?: Agent; body?: unknown } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const body = options.body === undefined ? undefined : JSON.stringify(options.body)
    const req = httpRequest(url, { method: options.method ?? 'GET', agent: options.agent ?? false, headers: body === undefined ? {} : { 'content-type': 'application/json' } }, res => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (text += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** Whether `promise` settles before a generous bound: a liveness check, not a timing one. */
async function settles(promise: Promise<unknown>, boundMs = 5_000): Promise<boolean> {
  const timer = new AbortController()
  const bound = delay(boundMs, false, { signal: timer.signal }).catch(() => false)
  const settled = await Promise.race([promise.then(() => true), bound])
  timer.abort()
  return settled
}

const chat = (extra: Record<string, unknown> = {}) => ({ model: 'held', messages: [{ role: 'user', content: 'hi' }], ...extra })

t.test('a request in flight when the drain begins completes with 200, and its response says Connection: close', async t => {
  const { api, url, upstream } = await heldStack(t)
  const agent = new Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())
  const answer = send(`${url}/v1/chat/completions`, { method: 'POST', agent, body: chat() })
  await eventually(() => upstream.received === 1, 'the chat to reach the upstream')
  t.equal(api.inFlight, 1)

  const closed = api.close(60_000)
  upstream.release()
  const { status, headers, body } = await answer
  t.equal(status, 200)
  t.equal(headers.connection, 'close', 'a keep-alive client is told to go away')
  t.match(JSON.parse(body), { choices: [{ message: { content: 'released' } }] })
  t.ok(await settles(closed), 'close() resolves once the request is done')
  t.equal(api.inFlight, 0)
})

t.test('a new request on a connection already open gets 503 with Retry-After and Connection: close', async t => {
  const { api, url, upstream } = await heldStack(t)
  // A raw connection: a stream in flight, then a second request pipelined behind it after the
  // drain began. (An idle keep-alive connection is closed by the drain itself.)
  const { socket, received: receivedSoFar, ended } = await rawStream(t, url)

  api.beginDrain()
  socket.write('GET /v1/version HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n')
  await eventually(() => api.inFlight === 2, 'the second request to arrive')
  upstream.release()
  await ended

  const received = receivedSoFar()
  const refusal = received.indexOf('HTTP/1.1 503')
  t.ok(received.startsWith('HTTP/1.1 200'), 'the stream in flight is answered')
  t.ok(received.slice(0, refusal).includes('data: [DONE]'), 'and completes')
  t.ok(refusal > 0, 'the request that came after the drain began is refused')
  const [head = '', body = ''] = received.slice(refusal).split('\r\n\r\n')
  t.match(head, /\r\nretry-after: \d+\r\n/i)
  t.match(head, /\r\nconnection: close\r\n/i)
  t.match(JSON.parse(body), { error: { code: 'shutting_down', type: 'api_error' } })
  await api.close()
})

t.test('after beginDrain a keep-alive client is not served again: it gets 503 or its connection fails', async t => {
  const { api, url } = await startApi(t)
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  t.equal((await send(`${url}/v1/version`, { agent })).status, 200)
  api.beginDrain()
  const next = await send(`${url}/v1/version`, { agent }).then(
    answer => answer,
    (error: NodeJS.ErrnoException) => error,
  )
  if (next instanceof Error) t.match(next, { code: /^(ECONNRESET|ECONNREFUSED|EPIPE)$/ }, 'the connection was closed, and nothing listens')
  else t.match(next, { status: 503, headers: { 'retry-after': /\d+/, connection: 'close' } })
})

t.test('close() with an idle keep-alive connection open resolves without waiting for the keep-alive timeout', async t => {
  const { api, url } = await startApi(t)
  const agent = new Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())
  t.equal((await send(`${url}/v1/version`, { agent })).status, 200)
  t.equal(Object.values(agent.freeSockets).flat().length, 1, 'the client keeps its connection open')
  t.ok(await settles(api.close(60_000)), 'close() resolved')
  await eventually(() => Object.values(agent.freeSockets).flat().length === 0, 'the client to see its connection closed')
  await t.rejects(send(`${url}/v1/version`), { code: 'ECONNREFUSED' }, 'nothing listens any more')
})

t.test('at the deadline a request that never finishes is cancelled: close() resolves, the client gets 503, the upstream call is aborted', async t => {
  const { api, url, upstream } = await heldStack(t)
  const answer = send(`${url}/v1/chat/completions`, { method: 'POST', body: chat() }).then(
    answer => answer,
    (error: NodeJS.ErrnoException) => error,
  )
  await eventually(() => upstream.received === 1, 'the chat to reach the upstream')

  t.ok(await settles(api.close(300)), 'close(300) resolved')
  t.equal(api.inFlight, 0)
  const result = await answer
  if (result instanceof Error) t.match(result, { code: 'ECONNRESET' }, 'the connection was reset')
  else {
    t.equal(result.status, 503)
    t.equal(result.headers.connection, 'close')
    t.match(JSON.parse(result.body), { error: { code: 'shutting_down' } })
  }
  await eventually(() => upstream.cut === 1, 'the upstream call to be aborted')
  t.pass('the upstream saw its call aborted')
})

t.test('at the deadline a stream in flight is cut and its upstream call aborted', async t => {
  const { api, url, upstream } = await heldStack(t)
  const { received, ended } = await rawStream(t, url)

  t.ok(await settles(api.close(300)), 'close(300) resolved')
  await ended
  t.notOk(received().includes('[DONE]'), 'the stream does not claim to be done')
  await eventually(() => upstream.cut === 1, 'the upstream stream to be aborted')
  t.pass('the upstream saw its stream aborted')
})

t.test('a second close() shares the first one, with the sooner deadline', async t => {
  const { api, url, upstream } = await heldStack(t)
  const answer = send(`${url}/v1/chat/completions`, { method: 'POST', body: chat() }).catch((error: Error) => error)
  await eventually(() => upstream.received === 1, 'the chat to reach the upstream')
  const first = api.close(600_000)
  const second = api.close(300)
  t.equal(first, second, 'the same promise')
  t.ok(await settles(first), 'the sooner deadline applies')
  await answer
})

t.test('a rebind lets the old listener finish its requests in flight, then close their connections', async t => {
  const { api, url, upstream } = await heldStack(t)
  const agent = new Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())
  const answer = send(`${url}/v1/chat/completions`, { method: 'POST', agent, body: chat() })
  await eventually(() => upstream.received === 1, 'the chat to reach the upstream')

  const moved = await api.rebind(0, '127.0.0.1')
  t.equal((await send(`${moved}/v1/version`)).status, 200, 'the new listener serves at once')
  t.equal(api.inFlight, 1, 'the request on the old listener is still in flight')
  upstream.release()
  const { status, headers } = await answer
  t.equal(status, 200, 'and completes')
  t.equal(headers.connection, 'close', 'telling its client to reconnect')
  await t.rejects(send(`${url}/v1/version`), { code: 'ECONNREFUSED' }, 'the old port takes no new connections')
})

/** A raw connection with a chat completion stream in flight on it, once its first chunk arrived. */
async function rawStream(t: { teardown(fn: () => unknown): void }, url: string): Promise<{ socket: Socket; received: () => string; ended: Promise<unknown> }> {
  const { port } = new URL(url)
  const socket = connect({ host: '127.0.0.1', port: Number(port) })
  t.teardown(() => socket.destroy())
  let received = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => (received += chunk))
  const ended = new Promise(resolve => socket.once('close', resolve))
  const stream = JSON.stringify(chat({ stream: true }))
  socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(stream)}\r\n\r\n${stream}`)
  await eventually(() => received.includes('data: '), 'the first chunk of the stream')
  return { socket, received: () => received, ended }
}
