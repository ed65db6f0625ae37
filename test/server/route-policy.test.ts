import { writeFileSync } from 'node:fs'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { loadConfigFile, type ConfigIssue } from '../../src/config/index.js'
import type { Principal } from '../../src/server/auth.js'
import { newApiKey } from '../../src/server/auth.js'
import { HttpError } from '../../src/server/http.js'
import { parseRoutePolicy, type RoutePolicy } from '../../src/server/route-policy.js'
import { startStack } from '../../src/supervisor/stack.js'
import { quietLogger } from '../fixtures/logger.js'
import { startFakeUpstreams, stackYaml, tempDir } from '../fixtures/stack.js'
import { startSystem } from '../fixtures/system.js'

function policyOf(rules: unknown[]): RoutePolicy {
  const issues: ConfigIssue[] = []
  const policy = parseRoutePolicy(rules, 'server.auth.route_policy', issues)
  if (policy === undefined) throw new Error(`rules refused or empty: ${JSON.stringify(issues)}`)
  return policy
}

function issuesOf(rules: unknown[]): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  parseRoutePolicy(rules, 'server.auth.route_policy', issues)
  return issues
}

const admin: Principal = { principal: 'ada', attributes: { roles: ['admin'] } }
const developer: Principal = { principal: 'dev', attributes: { roles: ['developer'], teams: ['ml'] } }
const nobody: Principal = { principal: 'nobody', attributes: {} }

t.test('paths: exact, a prefix ending in *, *, regex:, any of a list; trailing slashes and percent-encoding do not matter', async t => {
  const policy = policyOf([
    { permit: { paths: '/v1/chat/completions' } },
    { permit: { paths: ['/v1/files*', '/v1/models/'] } },
    { permit: { paths: 'regex:/v1/(conversations|responses)/[a-z]+$' } },
  ])
  t.ok(policy.allows('/v1/chat/completions', nobody))
  t.ok(policy.allows('/v1/chat/completions/', nobody), 'a trailing slash is dropped')
  t.ok(policy.allows('/v1/chat/completions//', nobody), 'all of them')
  t.notOk(policy.allows('/v1/chat/completions/abc', nobody), 'exact is exact')
  t.ok(policy.allows('/v1/files', nobody))
  t.ok(policy.allows('/v1/files/abc/content', nobody), 'a prefix covers what is below it')
  t.ok(policy.allows('/v1/filesystem', nobody), 'and, as in llama-stack, any path it prefixes')
  t.ok(policy.allows('/v1/models', nobody), "a rule's own trailing slash is dropped too")
  t.ok(policy.allows('/v1/conversations/abc', nobody))
  t.notOk(policy.allows('/v1/conversations/abc/items', nobody), '$ anchors the end')
  t.ok(policy.allows('/v1/chat%2Fcompletions', nobody), 'the path is percent-decoded first')
  t.notOk(policy.allows('/v1/inspect/routes', nobody), 'no rule matches: denied')
  t.ok(policyOf([{ permit: { paths: '*' } }]).allows('/anything/at/all', undefined), '* is every route')
})

t.test('rules are tried in order; when needs every condition, unless applies the rule when none holds', async t => {
  const policy = policyOf([
    { forbid: { paths: '/v1/inspect*' }, unless: ['user with admin in roles', 'user with ops in roles'] },
    { permit: { paths: '*' }, when: 'user with admin in roles' },
    { permit: { paths: ['/v1/models*', '/v1/chat/completions', '/v1/inspect/routes'] }, when: ['user with developer in roles', 'user with ml in teams'] },
  ])
  t.ok(policy.allows('/v1/inspect/actors', admin), 'one unless condition holds: the forbid does not apply, the admin rule permits')
  t.notOk(policy.allows('/v1/inspect/routes', developer), 'no unless condition holds: forbidden before the developer rule is reached')
  t.ok(policy.allows('/v1/models/m', developer), 'both when conditions hold')
  t.notOk(policy.allows('/v1/models/m', { principal: 'x', attributes: { roles: ['developer'] } }), 'one does not')
  t.notOk(policy.allows('/v1/conversations', developer), 'nothing permits it')
  t.ok(policy.allows('/v1/conversations', admin))
})

t.test('a rule with a condition never matches a request without a caller; a condition-free one does', async t => {
  const policy = policyOf([
    { permit: { paths: ['/v1/health', '/v1/version'] } },
    { forbid: { paths: '/v1/models' }, unless: 'user with admin in roles' },
    { permit: { paths: '*' }, when: 'user with admin in roles' },
  ])
  t.ok(policy.allows('/v1/health', undefined))
  t.notOk(policy.allows('/v1/inspect/routes', undefined), 'the admin rule does not match without a caller: denied')
  t.notOk(policy.allows('/v1/models', undefined), 'nor does the forbid: no rule matches, denied all the same')
  t.ok(policy.allows('/v1/models', admin))
})

t.test("authorize refuses with 403 forbidden in llama-stack's words, naming the path as matched", async t => {
  const policy = policyOf([{ permit: { paths: '/v1/models' } }])
  t.doesNotThrow(() => policy.authorize('/v1/models', nobody))
  const refused = t.throws(() => policy.authorize('/v1/chat/completions/', nobody)) as HttpError
  t.ok(refused instanceof HttpError)
  t.match(refused, { status: 403, code: 'forbidden', message: 'Access denied: insufficient permissions for route /v1/chat/completions' })
})

t.test('no rules: no policy, every route is allowed', async t => {
  const issues: ConfigIssue[] = []
  t.equal(parseRoutePolicy([], 'server.auth.route_policy', issues), undefined)
  t.same(issues, [])
})

t.test('a rule that does not parse is a config error at its path', async t => {
  t.match(issuesOf([{ permit: { paths: ['/v1/models', 'v1/files'] } }]), [{ path: 'server.auth.route_policy[0].permit.paths[1]', message: /not a path/ }])
  t.match(issuesOf([{ permit: { paths: '/v1/*/items' } }]), [{ path: 'server.auth.route_policy[0].permit.paths', message: /wildcard only at the end/ }])
  t.match(issuesOf([{ permit: { paths: 'regex:/v1/(' } }]), [{ path: 'server.auth.route_policy[0].permit.paths', message: /not a valid regular expression/ }])
  t.match(issuesOf([{ permit: {} }]), [{ path: 'server.auth.route_policy[0].permit.paths', message: /required/ }])
  t.match(issuesOf([{ permit: { paths: '*' }, when: 'user is owner' }]), [{ path: 'server.auth.route_policy[0].when', message: /a route has no resource or owner/ }])
  t.match(issuesOf([{ permit: { paths: '*' }, unless: ['user with admin in roles', 'user in owners teams'] }]), [{ path: 'server.auth.route_policy[0].unless[1]', message: /a route has no resource or owner/ }])
  t.match(issuesOf([{ permit: { paths: '*', actions: ['read'] } }]), [{ path: 'server.auth.route_policy[0].permit', message: /Unrecognized key: "actions"/ }])
  t.match(issuesOf([{ permit: { paths: '*' }, forbid: { paths: '*' } }]), [{ path: 'server.auth.route_policy[0]', message: 'permit and forbid are mutually exclusive' }])
  t.match(issuesOf([{ permit: { paths: '*' }, when: 'user with admin in role s' }]), [{ path: 'server.auth.route_policy[0].when', message: /not a condition/ }])
  t.match(issuesOf([{ forbid: { paths: [] }, unless: 'user with admin in roles' }]), [{ path: 'server.auth.route_policy[0].forbid.paths', message: /an empty list never matches/ }], 'a forbid of no path would forbid nothing')
})

interface Teardown {
  teardown(fn: () => unknown): void
}

/**
 * The test stack with api_keys auth for an admin and a user, and `auth` merged into server.auth,
 * started from a real file so that a reload re-reads it; `write` rewrites that section.
 */
async function stackWithKeys(t: Teardown, auth: Record<string, unknown>) {
  const { openai, ollama } = await startFakeUpstreams(t)
  const dir = tempDir(t)
  const file = join(dir, 'stack.yaml')
  const admin = newApiKey()
  const user = newApiKey()
  const keys = [
    { hash: admin.hash, principal: 'ada', attributes: { roles: ['admin'] } },
    { hash: user.hash, principal: 'bob', attributes: { roles: ['user'] } },
  ]
  const write = (section: Record<string, unknown> | undefined): void =>
    writeFileSync(file, `${stackYaml(openai, ollama, dir)}${section === undefined ? '' : stringify({ server: { auth: { provider_config: { type: 'api_keys', keys }, ...section } } })}`)
  write(auth)
  const system = await startSystem(t, { workers: 1 })
  const stack = await startStack(system, await loadConfigFile(file), quietLogger(), { port: 0, host: '127.0.0.1' })
  t.teardown(() => stack.stop())
  const call = async (method: string, path: string, key?: string, body?: unknown) => {
    const headers: Record<string, string> = { ...(key === undefined ? {} : { authorization: `Bearer ${key}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) }
    const res = await fetch(`${stack.url}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
    const text = await res.text()
    return { status: res.status, body: text === '' ? undefined : (JSON.parse(text) as any) }
  }
  return { stack, openai, call, write, adminKey: admin.key, userKey: user.key }
}

const ROUTES = [
  { permit: { paths: ['/v1/health', '/v1/version'] } },
  { permit: { paths: '*' }, when: 'user with admin in roles' },
  { permit: { paths: ['/v1/models*', '/v1/chat/completions'] }, when: 'user with user in roles' },
]

t.test('route_policy over HTTP: a route no rule permits is 403 in the API error shape, before its handler runs', async t => {
  const { call, openai, adminKey, userKey } = await stackWithKeys(t, { route_policy: ROUTES })
  const chat = { model: 'gpt', messages: [{ role: 'user', content: 'hi' }] }
  t.match(await call('GET', '/v1/health'), { status: 200 }, 'a public route a condition-free rule permits')
  t.match(await call('GET', '/metrics'), { status: 403, body: { error: { code: 'forbidden' } } }, 'a public route no rule permits to an anonymous caller')
  t.match(await call('GET', '/v1/models'), { status: 401 }, 'authentication comes first')
  t.match(await call('GET', '/v1/models', userKey), { status: 200, body: { object: 'list' } })
  t.match(await call('POST', '/v1/chat/completions', userKey, chat), { status: 200 })
  const refused = await call('POST', '/v1/conversations', userKey, {})
  t.same(refused, { status: 403, body: { error: { code: 'forbidden', message: 'Access denied: insufficient permissions for route /v1/conversations', param: null, type: 'authentication_error' } } })
  t.match(await call('GET', '/v1/inspect/routes', userKey), { status: 403 })
  t.match(await call('POST', '/v1/conversations', adminKey, {}), { status: 200, body: { object: 'conversation' } }, 'the admin may')
  t.match(await call('GET', '/v1/inspect/routes', adminKey), { status: 200 })
  const chats = openai.requests.filter(r => r.path === '/v1/chat/completions').length
  t.match(await call('POST', '/v1/completions', userKey, { model: 'gpt', prompt: 'hi' }), { status: 403 })
  t.equal(openai.requests.filter(r => r.path === '/v1/chat/completions' || r.path === '/v1/completions').length, chats, 'the refused request reached no upstream')
})

t.test('route_policy and access_policy reload live: changed, made invalid (refused, nothing changes), removed', async t => {
  const { stack, call, write, userKey } = await stackWithKeys(t, { route_policy: ROUTES })
  t.equal((await call('GET', '/v1/models', userKey)).status, 200)

  write({ route_policy: [{ forbid: { paths: '/v1/models*' }, when: 'user with user in roles' }, ...ROUTES] })
  t.match(await stack.reload(), { result: 'applied', appliedLive: ['server.auth.route_policy'] })
  t.match(await call('GET', '/v1/models', userKey), { status: 403, body: { error: { code: 'forbidden' } } }, 'the new rule holds at once')

  write({ route_policy: [{ permit: { paths: '/v1/modles', methods: ['GET'] } }] })
  const invalid = await stack.reload()
  t.match(invalid, { result: 'invalid', errors: [{ path: 'server.auth.route_policy[0].permit', message: /Unrecognized key: "methods"/ }] })
  t.equal((await call('GET', '/v1/models', userKey)).status, 403, 'an invalid policy changes nothing')

  write({ access_policy: [{ forbid: { actions: ['read'], resource: 'model::gpt' } }, { permit: { actions: ['read'] } }] })
  t.match(await stack.reload(), { result: 'applied' })
  const listed = await call('GET', '/v1/models', userKey)
  t.equal(listed.status, 200, 'the route rules are gone')
  t.same(listed.body.data.map((m: { id: string }) => m.id).sort(), ['embedder', 'llama'], 'and the access rules apply to the list')

  write(undefined)
  t.match(await stack.reload(), { result: 'applied' })
  t.same((await call('GET', '/v1/models')).body.data.map((m: { id: string }) => m.id).sort(), ['embedder', 'gpt', 'llama'], 'auth removed: no rules, no credentials')
})

t.test('route_policy over HTTP: a forbidden route is not reached by encoding its path, a trailing slash or doubled slashes', async t => {
  const { call, adminKey, userKey } = await stackWithKeys(t, {
    route_policy: [
      { forbid: { paths: ['/v1/models/gpt', '/v1/conversations*'] }, unless: 'user with admin in roles' },
      { permit: { paths: '*' } },
    ],
  })
  t.match(await call('GET', '/v1/models/gpt', adminKey), { status: 200, body: { id: 'gpt' } }, 'the admin may')
  const forbidden = { status: 403, body: { error: { code: 'forbidden', message: 'Access denied: insufficient permissions for route /v1/models/gpt' } } }
  t.match(await call('GET', '/v1/models/gpt', userKey), forbidden)
  t.match(await call('GET', '/v1/models/gpt/', userKey), forbidden, 'a trailing slash')
  t.match(await call('GET', '/v1/models/gpt//', userKey), forbidden, 'trailing slashes')
  t.match(await call('GET', '/v1/models/%67pt', userKey), forbidden, 'percent-encoded: decoded before the rules, as the router decodes the id')
  t.match(await call('GET', '/v1/models/gp%74/', userKey), forbidden, 'both')
  t.match(await call('GET', '/v1/models//gpt', userKey), { status: 404, body: { error: { code: 'model_not_found' } } }, 'a doubled slash names another id (/gpt), which is not there')
  t.match(await call('GET', '//v1/models/gpt', userKey), { status: 404, body: { error: { code: 'not_found' } } }, 'no route has a doubled slash')
  t.match(await call('POST', '/v1/conversations', userKey, {}), { status: 403 })
  t.match(await call('POST', '/v1/%63onversations', userKey, {}), { status: 404, body: { error: { code: 'not_found' } } }, 'an encoded static route is no route')
  t.match(await call('POST', '/v1//conversations', userKey, {}), { status: 404, body: { error: { code: 'not_found' } } })
  t.match(await call('POST', '/v1/conversations/', userKey, {}), { status: 404, body: { error: { code: 'not_found' } } })
  t.match(await call('GET', '/v1/conversations/conv_1', userKey), { status: 403 }, 'a prefix rule covers what is below it')
  t.match(await call('GET', '/v1/conversations/conv_1/', userKey), { status: 404, body: { error: { code: 'not_found' } } }, 'a trailing slash after a one-segment id is no route')
  t.match(await call('GET', '/v1/conversations/conv%5F1', userKey), { status: 403 })
})

t.test('a request keeps the server.auth it started with: a reload while it authenticates does not hold it to the new rules', async t => {
  // A custom authentication endpoint that holds its answers while `held` is set: the request waits in authenticate.
  let held: ServerResponse[] | undefined
  let arrived: () => void = () => undefined
  const answer = (res: ServerResponse): void => void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ principal: 'bob', attributes: { roles: ['user'] } }))
  const endpoint = createServer((req, res) => {
    req.resume()
    req.once('end', () => {
      if (held === undefined) return answer(res)
      held.push(res)
      arrived()
    })
  })
  await new Promise<void>(resolve => endpoint.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => endpoint.close(() => resolve())))
  const { openai, ollama } = await startFakeUpstreams(t)
  const dir = tempDir(t)
  const file = join(dir, 'stack.yaml')
  const provider_config = { type: 'custom', endpoint: `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/auth` }
  const write = (route_policy: unknown[]): void => writeFileSync(file, `${stackYaml(openai, ollama, dir)}${stringify({ server: { auth: { provider_config, route_policy } } })}`)
  write([{ permit: { paths: '*' } }])
  const stack = await startStack(await startSystem(t, { workers: 1 }), await loadConfigFile(file), quietLogger(), { port: 0, host: '127.0.0.1' })
  t.teardown(() => stack.stop())
  const list = () => fetch(`${stack.url}/v1/models`, { headers: { authorization: 'Bearer token' } })

  held = []
  const waiting = new Promise<void>(resolve => (arrived = resolve))
  const started = list()
  await waiting
  write([{ forbid: { paths: '/v1/models' } }, { permit: { paths: '*' } }])
  t.match(await stack.reload(), { result: 'applied', appliedLive: ['server.auth.route_policy'] })
  const pending = held
  held = undefined
  for (const res of pending) answer(res)
  t.equal((await started).status, 200, 'judged by the route rules it started under')
  t.equal((await list()).status, 403, 'the next request, by the new ones')
})
