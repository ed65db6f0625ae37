import { readFileSync } from 'node:fs'
import type { IncomingHttpHeaders } from 'node:http'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { ActorError, type ActorRef } from '../../../src/index.js'
import { openAICompatibleConfigSchema, type OpenAICompatibleType } from '../../../src/stack/provider-configs.js'
import { openaiProvider } from '../../../actors/providers/inference/openai.js'
import type { InferenceMessage } from '../../../actors/providers/inference/protocol.js'
import { fakeOpenAI } from '../../../bench/fixtures/upstreams.js'
import { startSystem } from '../../fixtures/system.js'

const CERT = new URL('../../fixtures/tls/cert.pem', import.meta.url).pathname
const KEY = new URL('../../fixtures/tls/key.pem', import.meta.url).pathname

interface Teardown {
  teardown(fn: () => unknown): void
}

/** Spawns remote::openai actors for providers of a type configured as llama-stack writes it. */
async function providers(t: Teardown): Promise<(type: OpenAICompatibleType, config: Record<string, unknown>) => Promise<ActorRef<InferenceMessage>>> {
  const system = await startSystem(t)
  return (type, config) => system.spawn(openaiProvider, { placement: 'pool', args: { providerId: 'p', config: openAICompatibleConfigSchema(type).parse(config) } })
}

const chat = (extra: Record<string, unknown> = {}): InferenceMessage => ({ type: 'chat', request: { model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], ...extra } })

t.test('max_tokens is sent with a chat or completion request that sets no limit of its own', async t => {
  const upstream = await fakeOpenAI()
  t.teardown(() => upstream.close())
  const provider = await providers(t)
  const vllm = await provider( 'remote::vllm', { url: upstream.url, max_tokens: 64 })
  const sent = () => (upstream.requests.at(-1)?.body as Record<string, unknown>)['max_tokens']
  await vllm.ask(chat())
  t.equal(sent(), 64, 'chat without a limit')
  await vllm.ask(chat({ max_tokens: 5 }))
  t.equal(sent(), 5, "the request's own max_tokens wins")
  await vllm.ask(chat({ max_completion_tokens: 9 }))
  t.equal(sent(), undefined, 'max_completion_tokens is a limit too')
  await vllm.ask({ type: 'completion', request: { model: 'gpt-test', prompt: 'hi' } })
  t.equal(sent(), 64, 'completion without a limit')
  const openai = await provider('remote::openai', { base_url: upstream.url })
  await openai.ask(chat())
  t.equal(sent(), undefined, 'none without max_tokens configured')
})

/** An https upstream with the test certificate (CN localhost, IP 127.0.0.1), answering any chat. */
async function httpsUpstream(t: Teardown): Promise<{ url: string; headers: IncomingHttpHeaders[] }> {
  const headers: IncomingHttpHeaders[] = []
  const server = createServer({ cert: readFileSync(CERT), key: readFileSync(KEY) }, (req, res) => {
    headers.push(req.headers)
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ id: 'c', object: 'chat.completion', created: 0, model: 'gpt-test', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }] }))
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, headers }
}

t.test("TLS verification: refused for an untrusted certificate, off with verify false, or against a CA bundle", async t => {
  const upstream = await httpsUpstream(t)
  const provider = await providers(t)
  const strict = await provider('remote::vllm', { url: upstream.url })
  const refused = await strict.ask(chat()).then(
    () => undefined,
    (error: unknown) => error,
  )
  t.ok(refused instanceof ActorError && refused.code === 'upstream', 'a self-signed certificate is refused by default')
  t.equal(upstream.headers.length, 0, 'nothing reached the upstream')

  const unverified = await provider('remote::vllm', { url: upstream.url, network: { tls: { verify: false } } })
  t.match(await unverified.ask(chat()), { choices: [{ message: { content: 'ok' } }] }, 'network.tls.verify: false')
  const legacy = await provider('remote::vllm', { url: upstream.url, tls_verify: false })
  t.match(await legacy.ask(chat()), { object: 'chat.completion' }, 'tls_verify: false (vLLM before network.tls)')
  const bundle = await provider('remote::openai', { base_url: upstream.url, api_key: 'k', network: { tls: { verify: CERT }, headers: { 'x-team': 'blue' } } })
  t.match(await bundle.ask(chat()), { object: 'chat.completion' }, 'verified against the CA bundle at the path')
  t.match(upstream.headers.at(-1), { authorization: 'Bearer k', 'x-team': 'blue' }, 'network.headers are sent, beside the key')
})
