// The API server's settings change while it runs: configure() applies to the next request, and
// rebind() moves the listener (port, host, TLS) with no moment where nothing listens.
import { readFileSync } from 'node:fs'
import { Agent, request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { createServer as createTcpServer, type AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import type { ModelsMessage } from '../../actors/routing/models.js'
import { ApiServer, type ServerSettings } from '../../src/server/server.js'
import type { ActorRef } from '../../src/index.js'
import { counter } from '../fixtures/behaviors.js'
import { eventually } from '../fixtures/eventually.js'
import { quietLogger } from '../fixtures/logger.js'
import { startSystem } from '../fixtures/system.js'

const cert = readFileSync(fileURLToPath(new URL('../fixtures/tls/cert.pem', import.meta.url)))
const key = readFileSync(fileURLToPath(new URL('../fixtures/tls/key.pem', import.meta.url)))

const initial: ServerSettings = { imageName: 'test', maxBodyBytes: 1024 }

/** An API server on loopback with a stand-in routing table: enough for routes that ask nothing. */
async function startApi(t: Test): Promise<{ api: ApiServer; url: string }> {
  const system = await startSystem(t, { workers: 0 })
  const models = (await system.spawn(counter, { placement: 'main' })) as unknown as ActorRef<ModelsMessage>
  const api = new ApiServer({ system, models, version: '0.0.0', log: quietLogger(), ...initial })
  const url = await api.listen(0, '127.0.0.1')
  t.teardown(() => api.close())
  return { api, url }
}

/** One request without keep-alive; resolves with status, headers and body, rejects when the connection fails. */
function send(url: string, options: { method?: string; headers?: Record<string, string>; body?: string; agent?: Agent; ca?: Buffer } = {}) {
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>((resolve, reject) => {
    const request = url.startsWith('https:') ? httpsRequest : httpRequest
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers ?? {}, agent: options.agent ?? false, ...(options.ca === undefined ? {} : { ca: options.ca }) }, res => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (text += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

t.test('configure: CORS headers appear and disappear with the setting, from the next request', async t => {
  const { api, url } = await startApi(t)
  const from = (origin: string) => send(`${url}/v1/version`, { headers: { origin } })
  t.notOk((await from('https://app.example')).headers['access-control-allow-origin'], 'no CORS by default')

  api.configure({ ...initial, cors: true })
  t.equal((await from('https://app.example')).headers['access-control-allow-origin'], '*')

  api.configure({ ...initial, cors: { allow_origins: ['https://app.example'] } })
  t.equal((await from('https://app.example')).headers['access-control-allow-origin'], 'https://app.example')
  t.notOk((await from('https://other.example')).headers['access-control-allow-origin'], 'an origin not listed gets none')

  api.configure(initial)
  t.notOk((await from('https://app.example')).headers['access-control-allow-origin'], 'a removed cors section is back to none')
})

t.test('configure: /v1/version and the deployment routes follow the image name', async t => {
  const { api, url } = await startApi(t)
  t.match(JSON.parse((await send(`${url}/v1/version`)).body), { image_name: 'test' })
  api.configure({ ...initial, imageName: 'renamed' })
  t.match(JSON.parse((await send(`${url}/v1/version`)).body), { image_name: 'renamed' })
  t.equal((await send(`${url}/deployments/renamed/workflows`)).status, 200, 'the workflow routes move under the new name')
  t.equal((await send(`${url}/deployments/test/workflows`)).status, 404, 'and leave the old one')
})

t.test('configure: a body over the new limit gets 413', async t => {
  const { api, url } = await startApi(t)
  const body = JSON.stringify({ pad: 'x'.repeat(200) })
  const post = () => send(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
  t.equal((await post()).status, 400, 'under the first limit: read, and refused as a chat')
  api.configure({ ...initial, maxBodyBytes: 64 })
  const refused = await post()
  t.equal(refused.status, 413)
  t.match(JSON.parse(refused.body), { error: { code: 'body_too_large', message: /limit is 64/ } })
})

t.test('rebind: the new port serves, the old one refuses new connections', async t => {
  const { api, url: before } = await startApi(t)
  const agent = new Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())
  t.equal((await send(`${before}/v1/version`, { agent })).status, 200)

  const after = await api.rebind(0, '127.0.0.1')
  t.not(after, before)
  t.equal(api.url, after, 'url follows the listener')
  t.equal((await send(`${after}/v1/version`)).status, 200, 'the new listener serves')
  await t.rejects(send(`${before}/v1/version`), { code: 'ECONNREFUSED' }, 'the old port refuses new connections')
  await eventually(() => Object.values(agent.freeSockets).flat().length === 0, 'the idle connection to the old listener to close')
})

t.test('rebind: a port that is taken throws naming the address, and the old listener keeps serving', async t => {
  const { api, url } = await startApi(t)
  const squatter = createTcpServer()
  await new Promise<void>(resolve => squatter.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise(resolve => squatter.close(resolve)))
  const taken = (squatter.address() as AddressInfo).port

  await t.rejects(api.rebind(taken, '127.0.0.1'), { name: 'ListenError', code: 'EADDRINUSE', address: `127.0.0.1:${taken}`, message: new RegExp(`127\\.0\\.0\\.1:${taken}`) })
  t.equal(api.url, url)
  t.equal((await send(`${url}/v1/version`)).status, 200, 'the old listener still serves')
})

t.test('rebind: switches HTTP to HTTPS and back at the same address; moves to HTTPS on another port', async t => {
  const { api, url } = await startApi(t)
  const port = Number(new URL(url).port)
  const switched = await api.rebind(port, '127.0.0.1', { cert, key })
  t.equal(switched, `https://127.0.0.1:${port}`, 'the same address now serves HTTPS')
  t.equal((await send(`${switched}/v1/version`, { ca: cert })).status, 200)
  t.equal(await api.rebind(port, '127.0.0.1'), url, 'and back to HTTP')
  t.equal((await send(`${url}/v1/version`)).status, 200, 'serving HTTP again')

  const secure = await api.rebind(0, '127.0.0.1', { cert, key })
  t.match(secure, /^https:\/\/127\.0\.0\.1:\d+$/)
  t.equal((await send(`${secure}/v1/version`, { ca: cert })).status, 200)
  t.equal(await api.rebind(Number(new URL(secure).port), '127.0.0.1', { cert, key }), secure, 'new files at the same address are swapped in place')
  t.equal((await send(`${secure}/v1/version`, { ca: cert })).status, 200)
})
