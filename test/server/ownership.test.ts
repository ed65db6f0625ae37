import t from 'tap'
import type { ConfigIssue } from '../../src/config/index.js'
import { AccessPolicy, parseAccessPolicy } from '../../src/server/access-policy.js'
import type { Principal } from '../../src/server/auth.js'
import { HttpError } from '../../src/server/http.js'
import { authorizeAction, authorizeCreate, ownerOf, readableBy } from '../../src/server/ownership.js'
import { eventually } from '../fixtures/eventually.js'
import { stackWithOwners } from '../fixtures/owners.js'
import { tempDir } from '../fixtures/stack.js'

const alice: Principal = { principal: 'alice', attributes: { teams: ['ml'] } }
const bob: Principal = { principal: 'bob', attributes: { teams: ['web'] } }
const notFound = () => new HttpError(404, 'not_found', 'no such thing')

function policyOf(rules: unknown[]): AccessPolicy {
  const issues: ConfigIssue[] = []
  const policy = parseAccessPolicy(rules, 'access_policy', issues)
  if (policy === undefined) throw new Error(`rules refused: ${JSON.stringify(issues)}`)
  return policy
}

t.test('ownerOf records a copy of the caller, and nothing without authentication', async t => {
  const owner = ownerOf(alice)!
  t.same(owner, alice)
  t.not(owner.attributes['teams'], alice.attributes['teams'], 'a copy: a later change to the principal is not the owner’s')
  t.equal(ownerOf(undefined), undefined)
})

t.test('readableBy keeps, in order, what the caller may read; everything without authentication', async t => {
  const items = [{ id: 'a', owner: alice }, { id: 'b', owner: bob }, { id: 'c', owner: undefined }]
  const resourceOf = (item: (typeof items)[number]) => ({ type: 'thing', identifier: item.id, owner: item.owner })
  t.same(readableBy(AccessPolicy.DEFAULT, alice, items, resourceOf).map(i => i.id), ['a', 'c'])
  t.same(readableBy(AccessPolicy.DEFAULT, bob, items, resourceOf).map(i => i.id), ['b', 'c'])
  t.same(readableBy(AccessPolicy.DEFAULT, undefined, items, resourceOf).map(i => i.id), ['a', 'b', 'c'])
})

t.test('authorizeAction: not readable is the not-found error; readable but not allowed is 403; create is checked as unowned', async t => {
  const readOnly = policyOf([{ permit: { actions: ['create', 'read', 'update', 'delete'] }, when: 'user is owner' }, { permit: { actions: ['read'], resource: 'shield::public' } }])
  const secret = { type: 'shield', identifier: 'secret', owner: alice }
  const shown = { type: 'shield', identifier: 'public', owner: alice }
  t.doesNotThrow(() => authorizeAction(readOnly, 'delete', secret, alice, notFound))
  t.match(t.throws(() => authorizeAction(readOnly, 'read', secret, bob, notFound)), { status: 404, code: 'not_found' })
  t.match(t.throws(() => authorizeAction(readOnly, 'delete', secret, bob, notFound)), { status: 404, code: 'not_found' }, 'the same answer as a missing id')
  t.doesNotThrow(() => authorizeAction(readOnly, 'read', shown, bob, notFound))
  t.match(t.throws(() => authorizeAction(readOnly, 'delete', shown, bob, notFound)), { status: 403, code: 'forbidden', message: "'bob' may not delete shield::public" })
  t.doesNotThrow(() => authorizeAction(readOnly, 'delete', secret, undefined, notFound), 'without authentication')
  t.match(t.throws(() => authorizeCreate(readOnly, { type: 'shield', identifier: 'new' }, bob)), { status: 403, code: 'forbidden' }, 'no owner yet: "user is owner" cannot hold')
  t.doesNotThrow(() => authorizeCreate(AccessPolicy.DEFAULT, { type: 'shield', identifier: 'new' }, bob), 'the default policy lets anyone create (resource is unowned)')
})

const CONFIG_MODELS = ['embedder', 'gpt', 'llama']
const register = (id: string) => ({ model_id: id, provider_id: 'fake-openai', provider_model_id: 'gpt-test' })

t.test("registered models record their owner: each principal sees its own and its team's, another's is 404 to read, delete or use, and it survives a restart", async t => {
  const s = await stackWithOwners(t, tempDir(t))
  t.same(await s.ids('alice'), CONFIG_MODELS, 'the models of the config are unowned: everyone sees them')
  t.same(await s.ids('bob'), CONFIG_MODELS)

  t.match(await s.call('alice', 'POST', '/v1/models', register('alice-model')), { status: 200, body: { id: 'alice-model' } })
  t.match(await s.call('bob', 'POST', '/v1/models', register('bob-model')), { status: 200, body: { id: 'bob-model' } })
  t.notMatch((await s.call('alice', 'GET', '/v1/models/alice-model')).body, { owner: {} }, 'the owner is not shown')

  t.same(await s.ids('alice'), [...CONFIG_MODELS, 'alice-model'].sort(), 'alice: hers, not bob’s')
  t.same(await s.ids('bob'), [...CONFIG_MODELS, 'bob-model'].sort(), 'bob: his, not alice’s')
  t.same(await s.ids('carol'), [...CONFIG_MODELS, 'alice-model'].sort(), "carol: alice's, whose team she shares (llama-stack's default policy)")
  t.same(await s.ids('bob'), [...CONFIG_MODELS, 'bob-model'].sort(), 'asked again, from what was kept for bob: the same')

  const missing = { status: 404, body: { error: { code: 'model_not_found' } } }
  t.match(await s.call('alice', 'GET', '/v1/models/alice-model'), { status: 200, body: { id: 'alice-model' } })
  t.match(await s.call('bob', 'GET', '/v1/models/alice-model'), missing, "bob reads alice's: not found")
  const hidden = await s.call('bob', 'GET', '/v1/models/alice-model')
  const absent = await s.call('bob', 'GET', '/v1/models/no-such-model')
  t.same(hidden.body, JSON.parse(JSON.stringify(absent.body).replaceAll('no-such-model', 'alice-model')), 'worded as a model that does not exist')
  t.match(await s.call('bob', 'DELETE', '/v1/models/alice-model'), missing, "bob deletes alice's: not found")
  const chats = s.openai.requests.filter(r => r.path === '/v1/chat/completions').length
  t.match(await s.call('bob', 'POST', '/v1/chat/completions', { model: 'alice-model', messages: [{ role: 'user', content: 'hi' }] }), missing, "bob chats with alice's model: not found")
  t.equal(s.openai.requests.filter(r => r.path === '/v1/chat/completions').length, chats, 'and it reached no upstream')
  t.match(await s.call('alice', 'POST', '/v1/chat/completions', { model: 'alice-model', messages: [{ role: 'user', content: 'hi' }] }), { status: 200, body: { model: 'alice-model' } })
  const taken = await s.call('bob', 'POST', '/v1/models', register('alice-model'))
  t.match(taken, { status: 409, body: { error: { code: 'conflict', param: 'model_id', message: "model id 'alice-model' is registered already; choose another id" } } }, 'the id is taken, and nothing of the model is shown')
  t.same((await s.call('bob', 'POST', '/v1/models', register('gpt'))).body, JSON.parse(JSON.stringify(taken.body).replaceAll('alice-model', 'gpt')), 'worded alike whoever holds it: alice, or nobody (a model of the config)')
  t.match(await s.call('alice', 'POST', '/v1/models', register('alice-model')), { status: 200 }, 'the same registration by its owner is a no-op')

  await s.restart()
  t.same(await s.ids('bob'), [...CONFIG_MODELS, 'bob-model'].sort(), 'the owners were stored with the models: after a restart bob still sees only his')
  t.match(await s.call('bob', 'GET', '/v1/models/alice-model'), missing)

  t.match(await s.call('carol', 'DELETE', '/v1/models/alice-model'), { status: 200, body: { deleted: true } }, 'carol shares the team: the default policy lets her delete it')
  t.match(await s.call('bob', 'DELETE', '/v1/models/bob-model'), { status: 200, body: { deleted: true } })
  t.same(await s.ids('alice'), CONFIG_MODELS)
})

t.test('an access_policy of its own: create refused with 403, another’s model readable but not deletable (403), reloaded live', async t => {
  const s = await stackWithOwners(t, tempDir(t), [
    { permit: { actions: ['create', 'read', 'update', 'delete'] }, when: 'user is owner' },
    { permit: { principal: 'alice', actions: ['create'] } },
    { permit: { actions: ['read'], resource: 'model::*' } },
  ])
  t.match(await s.call('alice', 'POST', '/v1/models', register('alice-model')), { status: 200 })
  t.match(await s.call('bob', 'POST', '/v1/models', register('bob-model')), { status: 403, body: { error: { code: 'forbidden', message: "'bob' may not create model::bob-model" } } })
  t.match(await s.call('bob', 'GET', '/v1/models/alice-model'), { status: 200 }, 'every model is readable')
  t.match(await s.call('bob', 'DELETE', '/v1/models/alice-model'), { status: 403, body: { error: { code: 'forbidden' } } }, 'bob knows it is there, and may not delete it')
  t.match(await s.call('bob', 'DELETE', '/v1/models/gpt'), { status: 403 }, 'nor an unowned one: no rule permits it')

  s.write([{ permit: { actions: ['read', 'delete'] }, when: 'user is owner' }])
  t.match(await s.stack.reload(), { result: 'applied', appliedLive: ['server.auth.access_policy'] })
  t.same(await s.ids('bob'), [], 'only owners read now: bob owns nothing')
  t.same(await s.ids('alice'), ['alice-model'])
  t.match(await s.call('bob', 'DELETE', '/v1/models/alice-model'), { status: 404, body: { error: { code: 'model_not_found' } } }, 'and what bob may not read is not there to him')
  t.match(await s.call('bob', 'POST', '/v1/chat/completions', { model: 'gpt', messages: [{ role: 'user', content: 'hi' }] }), { status: 404, body: { error: { code: 'model_not_found' } } }, 'nor may he use a model he cannot read')
})

/** `hidden`'s and `absent`'s answers as status, code and message, the ids named alike, for comparing the two. */
function sameAnswer(hidden: { status: number; body: any }, hiddenId: string, absent: { status: number; body: any }, absentId: string) {
  const seen = (answer: { status: number; body: any }, id: string) => ({ status: answer.status, code: answer.body?.error?.code, message: String(answer.body?.error?.message).replaceAll(id, '<id>'), param: answer.body?.error?.param })
  return [seen(hidden, hiddenId), seen(absent, absentId)] as const
}

const hi = [{ role: 'user', content: 'hi' }]

t.test("another's model is answered as a missing one, byte for byte: chat (whole and streamed), completions, embeddings, retrieve, delete", async t => {
  const s = await stackWithOwners(t, tempDir(t))
  await s.listed()
  t.match(await s.call('alice', 'POST', '/v1/models', register('alice-model')), { status: 200 })
  t.match(await s.call('alice', 'POST', '/v1/models', { model_id: 'alice-embed', provider_id: 'fake-openai', provider_model_id: 'embed-test', model_type: 'embedding' }), { status: 200 })
  const upstreamCalls = s.openai.requests.filter(r => r.method === 'POST').length
  const cases: Array<[string, string, string, (model: string) => unknown]> = [
    ['chat', 'POST', '/v1/chat/completions', model => ({ model, messages: hi })],
    ['streamed chat', 'POST', '/v1/chat/completions', model => ({ model, messages: hi, stream: true })],
    ['completion', 'POST', '/v1/completions', model => ({ model, prompt: 'hi' })],
    ['streamed completion', 'POST', '/v1/completions', model => ({ model, prompt: 'hi', stream: true })],
    ['embeddings', 'POST', '/v1/embeddings', model => ({ model, input: ['hi'] })],
  ]
  for (const [what, method, path, body] of cases) {
    const model = what === 'embeddings' ? 'alice-embed' : 'alice-model'
    const [hidden, absent] = sameAnswer(await s.call('bob', method, path, body(model)), model, await s.call('bob', method, path, body('no-such-model')), 'no-such-model')
    t.same(hidden, absent, `${what}: the same answer`)
    t.match(hidden, { status: 404, code: 'model_not_found' }, `${what}: 404 model_not_found`)
  }
  t.equal(s.openai.requests.filter(r => r.method === 'POST').length, upstreamCalls, 'none reached the upstream')
  for (const [method, path] of [['GET', '/v1/models/'], ['DELETE', '/v1/models/']] as const) {
    const [hidden, absent] = sameAnswer(await s.call('bob', method, `${path}alice-model`), 'alice-model', await s.call('bob', method, `${path}no-such-model`), 'no-such-model')
    t.same(hidden, absent, `${method} ${path}{id}: the same answer`)
    t.match(hidden, { status: 404, code: 'model_not_found' })
  }
  t.match(await s.call('alice', 'GET', '/v1/models/alice-model'), { status: 200 }, 'bob’s delete removed nothing')
  t.match(await s.call('alice', 'POST', '/v1/embeddings', { model: 'alice-embed', input: ['hi'] }), { status: 200, body: { model: 'alice-embed' } }, 'alice uses hers')
})

t.test('provider_id/model, unregistered: routed to an authenticated caller only when the provider lists it and they may read model::provider_id/model', async t => {
  const s = await stackWithOwners(t, tempDir(t), [
    { forbid: { actions: ['read'], resource: 'model::gpt' }, unless: 'user with ml in teams' },
    { forbid: { actions: ['read'], resource: 'regex:model::fake-openai/gpt' }, unless: 'user with ml in teams' },
    { permit: { actions: ['create', 'read', 'delete'] } },
  ])
  await s.listed()
  const chat = (model: string) => ({ model, messages: hi })
  t.match(await s.call('alice', 'POST', '/v1/chat/completions', chat('fake-openai/gpt-test')), { status: 200, body: { model: 'fake-openai/gpt-test' } }, 'listed, and alice may read it')
  t.match(await s.call('bob', 'POST', '/v1/chat/completions', chat('gpt')), { status: 404 }, 'bob may not read gpt')
  const upstreamCalls = s.openai.requests.filter(r => r.method === 'POST').length
  for (const id of ['fake-openai/gpt-test', 'fake-openai/unlisted-model']) {
    const [hidden, absent] = sameAnswer(await s.call('bob', 'POST', '/v1/chat/completions', chat(id)), id, await s.call('bob', 'POST', '/v1/chat/completions', chat('no-such-model')), 'no-such-model')
    t.same(hidden, absent, `${id}: answered as a missing model`)
    t.match(hidden, { status: 404, code: 'model_not_found' })
    const [retrieved, missing] = sameAnswer(await s.call('bob', 'GET', `/v1/models/${id}`), id, await s.call('bob', 'GET', '/v1/models/no-such-model'), 'no-such-model')
    t.same(retrieved, missing, `${id}: retrieved as a missing model`)
  }
  t.match(await s.call('alice', 'POST', '/v1/chat/completions', chat('fake-openai/unlisted-model')), { status: 404, body: { error: { code: 'model_not_found' } } }, 'nor to alice: the provider does not list it')
  t.match(await s.call('bob', 'POST', '/v1/embeddings', { model: 'fake-openai/embed-test', input: ['hi'] }), { status: 200 }, 'what the rules leave bob of the provider’s models, he may use')
  t.equal(s.openai.requests.filter(r => r.method === 'POST').length, upstreamCalls + 1, 'only that reached the upstream')
})

t.test("a private model over a provider's model hides the alias, not the provider's own model: a separate, unowned resource, as in llama-stack", async t => {
  const s = await stackWithOwners(t, tempDir(t))
  await s.listed()
  const chat = (model: string) => ({ model, messages: hi })
  t.match(await s.call('alice', 'POST', '/v1/models', register('alice-model')), { status: 200 })
  t.match(await s.call('alice', 'POST', '/v1/models', { model_id: 'alice-secret', provider_id: 'fake-openai', provider_model_id: 'secret-test' }), { status: 200 })
  t.match(await s.call('bob', 'POST', '/v1/chat/completions', chat('alice-model')), { status: 404 })
  t.match(await s.call('bob', 'POST', '/v1/chat/completions', chat('fake-openai/gpt-test')), { status: 200 }, 'gpt-test is listed by its provider: unowned, so readable under the default policy')
  const [hidden, absent] = sameAnswer(await s.call('bob', 'POST', '/v1/chat/completions', chat('fake-openai/secret-test')), 'fake-openai/secret-test', await s.call('bob', 'POST', '/v1/chat/completions', chat('no-such-model')), 'no-such-model')
  t.same(hidden, absent, "a provider model only alice's alias names, unlisted: not reachable directly")
  t.match(await s.call('alice', 'POST', '/v1/chat/completions', chat('alice-secret')), { status: 200, body: { model: 'alice-secret' } }, 'alice reaches it through hers')
})

t.test("nobody may take a provider's namespace: registering provider_id/… is 400 naming model_id, and the provider's entry stays everyone's", async t => {
  const s = await stackWithOwners(t, tempDir(t))
  await s.listed()
  const squat = await s.call('bob', 'POST', '/v1/models', register('fake-openai/gpt-test'))
  t.match(squat, { status: 400, body: { error: { code: 'invalid_request', param: 'model_id', message: /'fake-openai\/gpt-test' is in provider 'fake-openai''s namespace/ } } })
  t.match(await s.call('bob', 'POST', '/v1/models', register('fake-ollama/anything')), { status: 400, body: { error: { param: 'model_id' } } })
  t.match(await s.call('alice', 'POST', '/v1/chat/completions', { model: 'fake-openai/gpt-test', messages: hi }), { status: 200 }, 'alice still reaches the provider’s model')
  t.match(await s.call('alice', 'GET', '/v1/models/fake-openai/gpt-test'), { status: 200, body: { id: 'fake-openai/gpt-test', provider_model_id: 'gpt-test' } })
})

t.test("/v1/providers lists, among a provider's unavailable models, only those the caller may read", async t => {
  const s = await stackWithOwners(t, tempDir(t))
  await s.listed()
  t.match(await s.call('alice', 'POST', '/v1/models', { model_id: 'alice-secret', provider_id: 'fake-openai', provider_model_id: 'secret-test' }), { status: 200 })
  const unavailable = async (who: 'alice' | 'bob' | 'carol'): Promise<string[]> => {
    const provider = await s.call(who, 'GET', '/v1/providers/fake-openai')
    return (provider.body.unavailable_models as Array<{ model_id: string }>).map(m => m.model_id)
  }
  await eventually(async () => (await unavailable('alice')).includes('alice-secret'), 'the listing that shows alice-secret unavailable')
  t.same(await unavailable('alice'), ['alice-secret'])
  t.same(await unavailable('carol'), ['alice-secret'], 'carol shares alice’s team')
  t.same(await unavailable('bob'), [], 'bob may not read it: not shown')
  const listed = await s.call('bob', 'GET', '/v1/providers')
  t.notOk(JSON.stringify(listed.body).includes('alice-secret'), 'nor in the list of providers')
})
