import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT, UnsecuredJWT, type CryptoKey, type JWK } from 'jose'
import t from 'tap'
import { parseConfig, type ConfigIssue } from '../../src/config/index.js'
import { hashOfKey, newApiKey } from '../../src/server/auth.js'
import { checkStack } from '../../src/supervisor/stack.js'
import { startFakeUpstreams, stackYaml, startTestStack, tempDir } from '../fixtures/stack.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** A local HTTP server answering with `handle`; closed with the test. */
async function serve(t: Teardown, handle: (req: IncomingMessage, body: string, res: ServerResponse) => void): Promise<string> {
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => (body += chunk))
    req.on('end', () => handle(req, body, res))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => (server.closeAllConnections(), server.close(() => resolve()))))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

const json = (res: ServerResponse, status: number, body: unknown): void => void res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))

/** The test stack with `server.auth` set to `providerConfig` (YAML flow text). */
async function stackWithAuth(t: Teardown, providerConfig: string) {
  const { openai, ollama } = await startFakeUpstreams(t)
  const stack = await startTestStack(t, `${stackYaml(openai, ollama, tempDir(t))}server:\n  auth:\n    provider_config: ${providerConfig}\n`)
  const call = async (method: string, path: string, headers: Record<string, string> = {}, body?: unknown) => {
    const res = await fetch(`${stack.url}${path}`, { method, headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
    const text = await res.text()
    return { status: res.status, headers: res.headers, text, body: text === '' ? undefined : (JSON.parse(text) as any) }
  }
  return { stack, openai, call }
}

const chat = { model: 'gpt', messages: [{ role: 'user', content: 'hi' }] }
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

t.test('oauth2_token with a JWKS: signed tokens admit, every bad one is refused with 401 before any provider is asked', async t => {
  const { publicKey, privateKey } = await generateKeyPair('RS256')
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }
  let jwksFetches = 0
  const jwks = await serve(t, (_req, _body, res) => {
    jwksFetches++
    json(res, 200, { keys: [jwk] })
  })
  const { call, openai } = await stackWithAuth(t, `{ type: oauth2_token, issuer: https://issuer.test, audience: troupe-test, jwks: { uri: '${jwks}/jwks' } }`)
  const sign = (claims: Record<string, unknown>, options: { kid?: string; key?: CryptoKey; exp?: string; aud?: string; iss?: string } = {}) =>
    new SignJWT({ groups: ['ops', 'ml'], ...claims })
      .setProtectedHeader({ alg: 'RS256', kid: options.kid ?? 'k1' })
      .setIssuer(options.iss ?? 'https://issuer.test')
      .setAudience(options.aud ?? 'troupe-test')
      .setIssuedAt()
      .setExpirationTime(options.exp ?? '5m')
      .sign(options.key ?? privateKey)

  t.match(await call('GET', '/v1/health'), { status: 200 }, 'health is public')
  t.match(await call('GET', '/v1/version'), { status: 200 }, 'version is public')
  const missing = await call('GET', '/v1/models')
  t.match(missing, { status: 401, body: { error: { code: 'unauthorized', type: 'authentication_error', message: /Authorization: Bearer/ } } })
  t.equal(missing.headers.get('www-authenticate'), 'Bearer realm="troupe"')

  const good = await sign({ sub: 'alice' })
  t.match(await call('GET', '/v1/models', bearer(good)), { status: 200, body: { object: 'list' } })
  t.match(await call('POST', '/v1/chat/completions', bearer(good), chat), { status: 200, body: { choices: [{ message: { content: 'echo: hi' } }] } })
  t.equal(jwksFetches, 1, 'the keys are fetched once and cached')

  const chats = () => openai.requests.filter(r => r.path === '/v1/chat/completions').length
  const before = chats()
  const refused: Array<[string, Promise<string>, RegExp]> = [
    ['expired', sign({ sub: 'alice' }, { exp: '-1m' }), /expired/],
    ['another audience', sign({ sub: 'alice' }, { aud: 'someone-else' }), /aud claim/],
    ['another issuer', sign({ sub: 'alice' }, { iss: 'https://evil.test' }), /iss claim/],
    ['no subject', sign({}), /no subject/],
    ['alg none', Promise.resolve(new UnsecuredJWT({ sub: 'alice', aud: 'troupe-test', iss: 'https://issuer.test' }).setExpirationTime('5m').encode()), /algorithm is not allowed|not a well-formed/],
    [
      'HS256 signed with the public key',
      new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).setIssuer('https://issuer.test').setAudience('troupe-test').setExpirationTime('5m').sign(new TextEncoder().encode(JSON.stringify(jwk))),
      /algorithm is not allowed/,
    ],
    ['a forged signature', (async () => `${(await sign({ sub: 'alice' })).split('.').slice(0, 2).join('.')}.${Buffer.from('forged').toString('base64url')}`)(), /signature/],
    ['not a JWT', Promise.resolve('hello'), /well-formed|JWT/],
  ]
  for (const [what, token, reason] of refused) {
    const answer = await call('POST', '/v1/chat/completions', bearer(await token), chat)
    t.match(answer, { status: 401, body: { error: { code: 'unauthorized', message: reason } } }, what)
    t.equal(answer.headers.get('www-authenticate'), 'Bearer realm="troupe", error="invalid_token"', `${what}: says the token is invalid`)
    t.notMatch(answer.text, await token, `${what}: the token is not echoed`)
  }
  t.equal(chats(), before, 'no refused request reached the upstream')

  // A kid the JWKS does not have would refetch the keys (jose's remote key set), but at most
  // once per 30 s cooldown: tokens with made-up kids cannot make troupe hammer the JWKS.
  const other = await generateKeyPair('RS256')
  for (const kid of ['k2', 'k3', 'k4']) {
    t.match(await call('GET', '/v1/models', bearer(await sign({ sub: 'alice' }, { kid, key: other.privateKey }))), { status: 401, body: { error: { message: /no key of the JWKS matches/ } } }, `unknown kid ${kid}`)
  }
  t.equal(jwksFetches, 1, 'within the cooldown the keys were not fetched again')

  // A verified token is remembered (the next request skips the signature check), never past its expiry.
  const shortLived = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setIssuer('https://issuer.test').setAudience('troupe-test').setExpirationTime(Math.floor(Date.now() / 1000) + 2).sign(privateKey)
  t.equal((await call('GET', '/v1/models', bearer(shortLived))).status, 200)
  t.equal((await call('GET', '/v1/models', bearer(shortLived))).status, 200, 'again, from what was verified')
  await new Promise(resolve => setTimeout(resolve, 2100))
  t.match(await call('GET', '/v1/models', bearer(shortLived)), { status: 401, body: { error: { message: /expired/ } } }, 'and refused once it has expired')
})

t.test('a JWKS that cannot be reached is 503 auth_unavailable with Retry-After, not a 401', async t => {
  const gone = await serve(t, () => undefined)
  const { call } = await stackWithAuth(t, `{ type: oauth2_token, audience: x, jwks: { uri: 'http://127.0.0.1:1/jwks' } }`)
  void gone
  const { privateKey } = await generateKeyPair('RS256')
  const token = await new SignJWT({ sub: 'a' }).setProtectedHeader({ alg: 'RS256', kid: 'k' }).setAudience('x').setExpirationTime('5m').sign(privateKey)
  const answer = await call('GET', '/v1/models', bearer(token))
  t.match(answer, { status: 503, body: { error: { code: 'auth_unavailable', message: /the JWKS at http:\/\/127\.0\.0\.1:1 did not answer/ } } })
  t.equal(answer.headers.get('retry-after'), '1')
})

t.test('api_keys: a key whose sha256 is configured admits its principal; any other is refused', async t => {
  const { key, hash } = newApiKey()
  t.equal(hash, hashOfKey(key))
  t.match(key, /^tr-[A-Za-z0-9_-]{43}$/)
  const { call } = await stackWithAuth(t, `{ type: api_keys, keys: [{ hash: '${hash}', principal: alice, attributes: { roles: [admin] } }] }`)
  t.match(await call('GET', '/v1/models', bearer(key)), { status: 200 })
  t.match(await call('GET', '/v1/models', bearer(`${key}x`)), { status: 401, body: { error: { message: 'invalid API key' } } })
  t.match(await call('GET', '/v1/models', { authorization: key }), { status: 401, body: { error: { message: /must be Bearer/ } } })
})

t.test('upstream_header: the gateway in front names the caller; without its header the request is refused', async t => {
  const { call } = await stackWithAuth(t, '{ type: upstream_header, principal_header: x-auth-user, attributes_header: x-auth-attributes }')
  t.match(await call('GET', '/v1/models', { 'x-auth-user': 'alice', 'x-auth-attributes': '{"roles":["admin"],"teams":"ml"}' }), { status: 200 })
  t.match(await call('GET', '/v1/models'), { status: 401, body: { error: { message: /must set the x-auth-user header/ } } })
  t.match(await call('GET', '/v1/models', { 'x-auth-user': 'alice', 'x-auth-attributes': '[1,2]' }), { status: 401, body: { error: { message: /must be a JSON object/ } } })
})

t.test('custom: the token goes to the endpoint with the request (without Authorization); its principal admits, its refusal is passed on', async t => {
  const seen: unknown[] = []
  const endpoint = await serve(t, (_req, body, res) => {
    const request = JSON.parse(body) as { api_key: string }
    seen.push(request)
    if (request.api_key === 'good') json(res, 200, { principal: 'alice', attributes: { roles: ['admin'] } })
    else json(res, 401, { message: 'unknown key' })
  })
  const { call } = await stackWithAuth(t, `{ type: custom, endpoint: '${endpoint}/auth' }`)
  t.match(await call('GET', '/v1/models?limit=3', bearer('good')), { status: 200 })
  t.match(seen[0], { api_key: 'good', request: { path: '/v1/models', params: { limit: ['3'] } } })
  t.notOk('authorization' in (seen[0] as { request: { headers: Record<string, string> } }).request.headers, 'the Authorization header is not passed on')
  t.match(await call('GET', '/v1/models', bearer('bad')), { status: 401, body: { error: { message: 'the token was refused: unknown key' } } })
})

t.test('oauth2_token with introspection (RFC 7662): an active token admits, an inactive one is refused', async t => {
  const endpoint = await serve(t, (req, body, res) => {
    const token = new URLSearchParams(body).get('token')
    if (req.headers.authorization !== `Basic ${Buffer.from('client:secret').toString('base64')}`) return json(res, 401, {})
    json(res, 200, token === 'good' ? { active: true, sub: 'bob', aud: 'troupe-test', groups: 'ops ml' } : { active: false })
  })
  const { call } = await stackWithAuth(t, `{ type: oauth2_token, audience: troupe-test, introspection: { url: '${endpoint}/introspect', client_id: client, client_secret: secret } }`)
  t.match(await call('GET', '/v1/models', bearer('good')), { status: 200 })
  t.match(await call('GET', '/v1/models', bearer('stale')), { status: 401, body: { error: { message: /not active/ } } })
})

t.test('server.auth is checked when the config is loaded: each problem at its path, the policies too', async t => {
  const issues = (auth: string): ConfigIssue[] => {
    try {
      checkStack(parseConfig(`server:\n  auth: ${auth}\n`, {}, 'auth.yaml'))
      return []
    } catch (error) {
      return (error as { issues: ConfigIssue[] }).issues
    }
  }
  t.match(issues('{ provider_config: { type: oauth2_token } }'), [{ path: 'server.auth.provider_config.jwks', message: 'set one of jwks or introspection' }])
  t.match(issues('{ provider_config: { type: kerberos } }'), [{ path: 'server.auth.provider_config.type' }])
  t.match(issues("{ provider_config: { type: api_keys, keys: [{ hash: 'abc', principal: a }] } }"), [{ path: 'server.auth.provider_config.keys[0].hash', message: /sha256/ }])
  t.match(issues('{ provider_config: { type: custom, endpoint: not-a-url } }'), [{ path: 'server.auth.provider_config.endpoint' }])
  t.same(issues('{ provider_config: { type: upstream_header, principal_header: x-user }, access_policy: [{ permit: { actions: [read] } }] }'), [])
  t.match(issues('{ provider_config: { type: upstream_header, principal_header: x-user }, access_policy: [{ permit: { actions: [reed] } }] }'), [{ path: 'server.auth.access_policy[0].permit.actions[0]' }])
  t.same(issues('{ route_policy: [{ permit: { paths: /v1/models } }] }'), [], 'route rules may stand alone, as in llama-stack')
  t.match(issues('{ access_policy: [{ permit: { actions: [read] } }] }'), [{ path: 'server.auth.access_policy', message: /need a provider_config/ }], 'access rules may not: without a caller they hold nobody')
  t.match(issues('{}'), [{ path: 'server.auth.provider_config', message: /needs a provider_config/ }])
  t.same(issues('{ provider_config: { type: upstream_header, principal_header: x-user } }'), [])
})
