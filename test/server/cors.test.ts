import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import t from 'tap'
import { newApiKey } from '../../src/server/auth.js'
import { stackYaml, startFakeUpstreams, startTestStack, tempDir } from '../fixtures/stack.js'

/**
 * server.cors as a browser meets it: the preflight (OPTIONS with Access-Control-Request-*) and
 * the request after it, from an allowed origin and from another. Credentials: troupe's are a
 * Bearer token, so no answer ever says Access-Control-Allow-Credentials, and a preflight needs none.
 */

const { openai, ollama } = await startFakeUpstreams(t)
const ALLOWED = 'https://app.allowed.test'
const OTHER = 'https://evil.test'
const { key, hash } = newApiKey()
const listed = await startTestStack(t, stackYaml(openai, ollama, tempDir(t)).concat(`server:\n  cors: { allow_origins: ['${ALLOWED}'] }\n`))

/** node:http rather than fetch, which a browser would not let set Origin. */
function send(url: string, method: string, headers: Record<string, string>): Promise<{ status: number; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers }, res => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }))
    })
    req.on('error', reject)
    req.end()
  })
}

const preflight = (url: string, origin: string) =>
  send(`${url}/v1/chat/completions`, 'OPTIONS', { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type, x-request-id' })

t.test('a preflight from an allowed origin is 204 with that origin, the methods and headers it may use, and no credentials', async t => {
  const answer = await preflight(listed.url, ALLOWED)
  t.equal(answer.status, 204)
  t.equal(answer.headers['access-control-allow-origin'], ALLOWED, 'the origin itself, not *')
  t.match(answer.headers['vary'], /\bOrigin\b/, 'the answer varies with Origin, so a cache keeps it per origin')
  t.match(answer.headers['access-control-allow-methods'], /\bPOST\b/)
  for (const header of ['authorization', 'content-type', 'x-request-id']) t.match(answer.headers['access-control-allow-headers'], new RegExp(`\\b${header}\\b`), `${header} may be sent`)
  t.match(answer.headers['access-control-max-age'], /^\d+$/)
  t.equal(answer.headers['access-control-allow-credentials'], undefined, 'credentials (cookies, client certificates) are not allowed cross-origin')
  t.ok(answer.headers['x-request-id'], 'a preflight has its request id too')
})

t.test('a preflight from an origin not allowed gets no Access-Control-* header, so the browser refuses', async t => {
  const answer = await preflight(listed.url, OTHER)
  t.equal(answer.status, 405, 'not answered as a preflight: OPTIONS is no route')
  t.same(
    Object.keys(answer.headers).filter(name => name.startsWith('access-control-')),
    [],
    'no Access-Control-* header',
  )
  t.match(answer.headers['vary'], /\bOrigin\b/, 'it varies with Origin too: a cache must not give it to the allowed origin')
})

t.test('the request after the preflight: an allowed origin may read the answer and its request id; another may not', async t => {
  const allowed = await send(`${listed.url}/v1/models`, 'GET', { origin: ALLOWED })
  t.equal(allowed.status, 200)
  t.equal(allowed.headers['access-control-allow-origin'], ALLOWED)
  t.match(allowed.headers['access-control-expose-headers'], /\bx-request-id\b/, 'its script may read the request id')
  t.match(allowed.headers['access-control-expose-headers'], /\bretry-after\b/, 'and Retry-After')
  t.equal(allowed.headers['access-control-allow-credentials'], undefined)
  t.equal(allowed.headers['access-control-allow-methods'], undefined, 'methods are a preflight answer only')
  const other = await send(`${listed.url}/v1/models`, 'GET', { origin: OTHER })
  t.equal(other.status, 200, 'served: CORS is enforced by the browser, which finds no header allowing it')
  t.equal(other.headers['access-control-allow-origin'], undefined)
  const sameOrigin = await send(`${listed.url}/v1/models`, 'GET', {})
  t.equal(sameOrigin.headers['access-control-allow-origin'], undefined, 'without Origin, no CORS header')
})

t.test('cors: true allows any origin with *, and so never with credentials', async t => {
  const any = await startTestStack(t, stackYaml(openai, ollama, tempDir(t)).concat('server:\n  cors: true\n'))
  const answer = await preflight(any.url, OTHER)
  t.equal(answer.status, 204)
  t.equal(answer.headers['access-control-allow-origin'], '*')
  t.equal(answer.headers['access-control-allow-credentials'], undefined, 'browsers refuse credentials beside *; troupe never asks for them')
  t.notOk(/\bOrigin\b/.test(String(answer.headers['vary'] ?? '')), '* does not vary with Origin')
})

t.test('with server.auth, a preflight needs no credentials, and an allowed origin can read a 401 and a 200 with its Bearer token', async t => {
  const guarded = await startTestStack(
    t,
    stackYaml(openai, ollama, tempDir(t)).concat(`server:\n  cors: { allow_origins: ['${ALLOWED}'] }\n  auth: { provider_config: { type: api_keys, keys: [{ hash: '${hash}', principal: alice }] } }\n`),
  )
  const answer = await preflight(guarded.url, ALLOWED)
  t.equal(answer.status, 204, 'a preflight carries no Authorization and is not refused for it')
  t.equal(answer.headers['access-control-allow-origin'], ALLOWED)
  const refused = await send(`${guarded.url}/v1/models`, 'GET', { origin: ALLOWED })
  t.equal(refused.status, 401)
  t.equal(refused.headers['access-control-allow-origin'], ALLOWED, 'the 401 is readable by the page, which can then ask for a token')
  const admitted = await send(`${guarded.url}/v1/models`, 'GET', { origin: ALLOWED, authorization: `Bearer ${key}` })
  t.equal(admitted.status, 200, 'the token travels in Authorization, which the preflight allowed: no credentials mode needed')
  t.equal(admitted.headers['access-control-allow-origin'], ALLOWED)
  t.equal(admitted.headers['access-control-allow-credentials'], undefined)
})
