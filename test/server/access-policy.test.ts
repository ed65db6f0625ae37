import fc from 'fast-check'
import t, { type Test as Tap } from 'tap'
import type { ConfigIssue } from '../../src/config/index.js'
import { AccessPolicy, ACTIONS, CONDITION_FORMS, parseAccessPolicy, RESOURCE_TYPES, parseCondition, type Action, type ProtectedResource } from '../../src/server/access-policy.js'
import type { Principal } from '../../src/server/auth.js'

/** The rules compiled, or the test fails with the issues. */
function policyOf(rules: unknown[]): AccessPolicy {
  const issues: ConfigIssue[] = []
  const policy = parseAccessPolicy(rules, 'server.auth.access_policy', issues)
  if (policy === undefined) throw new Error(`rules refused: ${JSON.stringify(issues)}`)
  return policy
}

/** The issues compiling `rules` reports. */
function issuesOf(rules: unknown[]): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  parseAccessPolicy(rules, 'server.auth.access_policy', issues)
  return issues
}

const user = (principal: string, attributes: Record<string, string[]> = {}): Principal => ({ principal, attributes })
const model = (identifier: string, owner?: Principal): ProtectedResource => ({ type: 'model', identifier, owner })

const alice = user('alice', { roles: ['admin'], teams: ['ml'] })
const bob = user('bob', { roles: ['user'], teams: ['ml'], projects: ['p1'] })
const carol = user('carol', { roles: ['user'], teams: ['web'] })

t.test('conditions: every form llama-stack parses, on users and owners', async t => {
  const holds = (condition: string, resource: ProtectedResource, who: Principal): boolean => parseCondition(condition)!.test(resource, who)
  const alicesModel = model('m', alice)
  const unowned = model('m')

  t.ok(holds('user is owner', alicesModel, alice))
  t.notOk(holds('user is owner', alicesModel, bob))
  t.notOk(holds('user is owner', unowned, alice), 'an unowned resource has no owner to be')
  t.notOk(holds('user is not owner', alicesModel, alice))
  t.ok(holds('user is not owner', alicesModel, bob))
  t.ok(holds('user is not owner', unowned, alice))

  t.ok(holds('resource is unowned', unowned, alice))
  t.notOk(holds('resource is unowned', alicesModel, alice))

  t.ok(holds('user in owners teams', alicesModel, bob), 'bob shares the team ml with alice')
  t.notOk(holds('user in owners teams', alicesModel, carol))
  t.notOk(holds('user in owners roles', alicesModel, bob), 'no shared role')
  t.notOk(holds('user in owners projects', alicesModel, bob), 'the owner has no projects: nothing to share')
  t.notOk(holds('user in owners teams', unowned, bob), 'an unowned resource has no owner attributes')
  t.notOk(holds('user in owners teams', model('m', user('dave', { teams: [] })), user('erin', { teams: [] })), 'two empty lists share nothing')
  t.notOk(holds('user not in owners teams', alicesModel, bob))
  t.ok(holds('user not in owners teams', alicesModel, carol))
  t.ok(holds('user not in owners teams', unowned, carol))

  t.ok(holds('user with admin in roles', unowned, alice))
  t.notOk(holds('user with admin in roles', unowned, bob))
  t.notOk(holds('user with admin in groups', unowned, alice), 'an attribute the user lacks')
  t.notOk(holds('user with admin not in roles', unowned, alice))
  t.ok(holds('user with admin not in roles', unowned, bob))
  t.ok(holds('user with admin not in groups', unowned, alice))

  t.ok(holds('  user   is\towner ', alicesModel, alice), 'words are separated by any whitespace, as Python splits them')
  for (const text of ['user is the owner', 'user in owner teams', 'admin in roles', '', 'user with in roles', 'resource is owned']) t.equal(parseCondition(text), undefined, `'${text}' is not a condition`)
  t.equal(CONDITION_FORMS.length, 7)
})

t.test('attributes are read as own lists only: no prototype property counts as one', async t => {
  const odd = { principal: 'x', attributes: { roles: 'admin' } } as unknown as Principal
  t.notOk(parseCondition('user with admin in roles')!.test(undefined, odd), 'a value that is not a list is none')
  t.notOk(parseCondition('user with x in constructor')!.test(undefined, alice), 'constructor is no attribute')
  t.notOk(parseCondition('user in owners toString')!.test(model('m', alice), alice))
})

t.test('scope: principal, actions and resource patterns all must match', async t => {
  const policy = policyOf([
    { permit: { principal: 'alice', actions: 'read', resource: 'model::m1' } },
    { permit: { principal: 'bob', actions: ['read', 'update'], resource: 'model::*' } },
    { permit: { actions: ['delete'], resource: 'regex:conversation::conv_(a|b)' } },
  ])
  t.ok(policy.allows('read', model('m1'), alice))
  t.notOk(policy.allows('update', model('m1'), alice), 'an action outside the rule')
  t.notOk(policy.allows('read', model('m2'), alice), 'another identifier')
  t.notOk(policy.allows('read', { type: 'vector_store', identifier: 'm1' }, alice), 'another type')
  t.notOk(policy.allows('read', model('m1'), carol), 'another principal')
  t.ok(policy.allows('update', model('anything'), bob), 'type::* matches every model')
  t.ok(policy.allows('read', model(''), bob), 'even one with an empty id, as llama-stack prefix-matches')
  t.notOk(policy.allows('update', { type: 'modelx', identifier: 'a' }, bob), 'type::* is the type exactly')
  t.ok(policy.allows('delete', { type: 'conversation', identifier: 'conv_a' }, carol), 'regex: matches from the start')
  t.ok(policy.allows('delete', { type: 'conversation', identifier: 'conv_b_more' }, carol), 'and, as re.match, need not reach the end')
  t.notOk(policy.allows('delete', { type: 'conversation', identifier: 'x_conv_a' }, carol))
  t.notOk(policy.allows('create', model('m1'), alice), 'no rule matches: denied')
})

t.test('rules are tried in order and the first match decides', async t => {
  const forbidFirst = policyOf([{ forbid: { actions: ['delete'], resource: 'model::*' } }, { permit: { actions: ['read', 'delete'] } }])
  t.notOk(forbidFirst.allows('delete', model('m'), alice))
  t.ok(forbidFirst.allows('read', model('m'), alice))
  const permitFirst = policyOf([{ permit: { actions: ['read', 'delete'] } }, { forbid: { actions: ['delete'], resource: 'model::*' } }])
  t.ok(permitFirst.allows('delete', model('m'), alice))
  t.notOk(permitFirst.allows('create', model('m'), alice))
})

t.test('when needs every condition; unless applies the rule unless every condition holds; a rule whose condition fails lets the next decide', async t => {
  const when = policyOf([{ permit: { actions: ['read'] }, when: ['user with user in roles', 'user in owners teams'] }, { forbid: { actions: ['read'] } }])
  t.ok(when.allows('read', model('m', alice), bob), 'both hold')
  t.notOk(when.allows('read', model('m', alice), carol), 'only the first holds')
  t.notOk(when.allows('read', model('m', alice), alice), 'only the second holds')

  const unless = policyOf([{ forbid: { actions: ['read'] }, unless: ['user with user in roles', 'user in owners teams'] }, { permit: { actions: ['read'] } }])
  t.ok(unless.allows('read', model('m', alice), bob), 'both hold: the forbid does not apply')
  t.notOk(unless.allows('read', model('m', alice), carol), 'one holds: not all, so it applies')
  t.notOk(unless.allows('read', model('m', alice), user('zed')), 'none holds: it applies')

  const single = policyOf([{ forbid: { actions: ['create', 'read', 'delete'], resource: 'vector_store::*' }, unless: 'user with admin in roles' }, { permit: { actions: ['create', 'read', 'delete'] } }])
  t.ok(single.allows('read', { type: 'vector_store', identifier: 'v' }, alice), "llama-stack's example: admins may")
  t.notOk(single.allows('read', { type: 'vector_store', identifier: 'v' }, bob), 'others may not')
  t.ok(single.allows('read', model('m'), bob), 'other types are not its business')

  const emptyWhen = policyOf([{ permit: { actions: ['read'] }, when: [] }])
  t.ok(emptyWhen.allows('read', model('m'), carol), 'an empty list is no condition, as in llama-stack')
})

t.test("an empty policy is llama-stack's default: owner, a shared role/team/project/namespace, or unowned", async t => {
  const policy = policyOf([])
  t.equal(policy, AccessPolicy.DEFAULT)
  for (const action of ACTIONS) {
    t.ok(policy.allows(action, model('m', alice), alice), `${action}: the owner`)
    t.ok(policy.allows(action, model('m'), carol), `${action}: an unowned resource`)
    t.ok(policy.allows(action, model('m', alice), bob), `${action}: bob shares the team ml`)
    t.notOk(policy.allows(action, model('m', alice), carol), `${action}: carol shares nothing`)
  }
  for (const attribute of ['roles', 'teams', 'projects', 'namespaces']) {
    t.ok(policy.allows('read', model('m', user('o', { [attribute]: ['x', 'y'] })), user('u', { [attribute]: ['y'] })), `a shared value of ${attribute} is enough`)
  }
  t.notOk(policy.allows('read', model('m', user('o', { groups: ['g'] })), user('u', { groups: ['g'] })), 'attributes of other names are not compared')
  t.notOk(policy.allows('read', model('m', user('o')), user('u')), 'an owner without attributes shares nothing')
})

t.test('without authentication (no user) every action is allowed, whatever the rules', async t => {
  const forbidAll = policyOf([{ forbid: { actions: [...ACTIONS] } }])
  for (const action of ACTIONS) t.ok(forbidAll.allows(action, model('m', alice), undefined))
})

t.test('a rule that does not parse is a config error at its path', async t => {
  t.match(issuesOf([{ permit: { actions: ['read'] } }, { permit: { actions: ['read', 'reed'] } }]), [{ path: 'server.auth.access_policy[1].permit.actions[1]', message: /expected one of/ }])
  t.match(issuesOf([{ permit: { actions: 'reed' } }]), [{ path: 'server.auth.access_policy[0].permit.actions', message: /expected one of/ }])
  t.match(issuesOf([{ permit: {} }]), [{ path: 'server.auth.access_policy[0].permit.actions', message: /required/ }])
  t.match(issuesOf([{ permit: { actions: ['read'] }, forbid: { actions: ['read'] } }]), [{ path: 'server.auth.access_policy[0]', message: 'permit and forbid are mutually exclusive' }])
  t.match(issuesOf([{ description: 'nothing' }]), [{ path: 'server.auth.access_policy[0]', message: 'set one of permit or forbid' }])
  t.match(issuesOf([{ permit: { actions: ['read'] }, when: 'user is owner', unless: 'resource is unowned' }]), [{ path: 'server.auth.access_policy[0]', message: /mutually exclusive/ }])
  t.match(issuesOf([{ permit: { actions: ['read'] }, when: ['user is owner', 'user in owner teams'] }]), [{ path: 'server.auth.access_policy[0].when[1]', message: /'user in owner teams' is not a condition; use one of: user with <value> in <attribute>/ }])
  t.match(issuesOf([{ permit: { actions: ['read'] }, unless: 'user is boss' }]), [{ path: 'server.auth.access_policy[0].unless', message: /not a condition/ }])
  t.match(issuesOf([{ permit: { actions: ['read'] }, whne: 'user is owner' }]), [{ path: 'server.auth.access_policy[0]', message: /Unrecognized key: "whne"/ }], 'a misspelt key is an error: ignored, it would widen the rule')
  t.match(issuesOf([{ permit: { actions: ['read'], resources: 'model::*' } }]), [{ path: 'server.auth.access_policy[0].permit', message: /Unrecognized key/ }])
  t.match(issuesOf([{ permit: { actions: ['read'], resource: 'model' } }]), [{ path: 'server.auth.access_policy[0].permit.resource', message: /not a resource: use type::identifier/ }])
  t.match(issuesOf([{ permit: { actions: ['read'], resource: 'model::llama*' } }]), [{ path: 'server.auth.access_policy[0].permit.resource', message: /wildcard only as the whole identifier/ }])
  t.match(issuesOf([{ permit: { actions: ['read'], resource: 'regex:model::(' } }]), [{ path: 'server.auth.access_policy[0].permit.resource', message: /not a valid regular expression/ }])
  t.match(issuesOf([{ permit: { actions: ['read'], principal: '' } }]), [{ path: 'server.auth.access_policy[0].permit.principal' }])
  t.match(issuesOf(['permit everything']), [{ path: 'server.auth.access_policy[0]' }])
  t.same(issuesOf([{ permit: { actions: ['read'], principal: null, resource: null }, when: null, description: 'nulls are absent' }]), [])
})

t.test('a scope that lists nothing, or names a resource type llama-stack does not have, is refused at its path', async t => {
  t.match(issuesOf([{ forbid: { actions: [] } }]), [{ path: 'server.auth.access_policy[0].forbid.actions', message: /an empty list never matches/ }], 'a forbid of no action would forbid nothing')
  t.match(issuesOf([{ permit: { actions: ['read'] } }, { permit: { actions: [], resource: 'model::*' } }]), [{ path: 'server.auth.access_policy[1].permit.actions', message: /at least one/ }])
  t.match(issuesOf([{ forbid: { actions: ['read'], resource: 'models::*' } }]), [{ path: 'server.auth.access_policy[0].forbid.resource', message: /'models' is not a resource type; use one of: model, shield, vector_db/ }], 'a misspelt type would never match')
  t.match(issuesOf([{ permit: { actions: ['read'], resource: 'Model::gpt' } }]), [{ path: 'server.auth.access_policy[0].permit.resource', message: /'Model' is not a resource type/ }])
  for (const type of RESOURCE_TYPES) t.same(issuesOf([{ permit: { actions: ['read'], resource: `${type}::*` } }]), [], `${type} is one`)
  t.same(issuesOf([{ permit: { actions: ['read'] }, when: [] }]), [], 'an empty condition list is no condition, as llama-stack reads it')
})

t.test("stored records are sql_record::<table>::<id>, matched as llama-stack matches them; a table it does not have is refused", async t => {
  const alice = user('alice')
  const record = (table: string, identifier: string): ProtectedResource => ({ type: `sql_record::${table}`, identifier })
  const allows = (resource: string, what: ProtectedResource) => policyOf([{ permit: { actions: ['read'], resource } }]).allows('read', what, alice)
  t.ok(allows('sql_record::*', record('conversation_items', 'msg_1')), 'sql_record::* is every record')
  t.ok(allows('sql_record::chat_completions::*', record('chat_completions', 'chatcmpl-1')))
  t.notOk(allows('sql_record::chat_completions::*', record('openai_conversations', 'conv_1')), 'a table is a type of its own')
  t.ok(allows('sql_record::openai_conversations::conv_1', record('openai_conversations', 'conv_1')))
  t.notOk(allows('sql_record::openai_conversations::conv_1', record('openai_conversations', 'conv_2')))
  t.ok(allows('regex:sql_record::(chat_completions|conversation_items)::', record('conversation_items', 'msg_1')), 'a regex sees type::identifier whole')
  t.notOk(allows('model::*', record('chat_completions', 'chatcmpl-1')))
  const at = 'server.auth.access_policy[0].permit.resource'
  t.match(issuesOf([{ permit: { actions: ['read'], resource: 'sql_record::chat_completion::*' } }]), [{ path: at, message: /'chat_completion' is not a table of records; use sql_record::<table>::\* with one of: chat_completions, openai_conversations, conversation_items/ }])
  t.match(issuesOf([{ permit: { actions: ['read'], resource: 'sql_record::chat_completions' } }]), [{ path: at, message: /is not a record: use sql_record::chat_completions::\*/ }], 'a table with no record never matches')
  t.match(issuesOf([{ permit: { actions: ['read'], resource: 'sql_record::chat_completions::chatcmpl-*' } }]), [{ path: at, message: /is not a record/ }])
})

// Property tests. A reference reading of llama-stack's is_action_allowed, straight from the
// rules as written (conditions parsed on every call), against which the compiled policy is held.

const PRINCIPALS = ['alice', 'bob', 'carol']
const ATTRIBUTES = ['roles', 'teams', 'projects', 'namespaces', 'groups']
const VALUES = ['a', 'b', 'c']
const RESOURCES = ['model::m1', 'model::*', 'shield::*', 'regex:model::m[12]', 'shield::c1']
const CONDITIONS = [
  'user is owner',
  'user is not owner',
  'resource is unowned',
  ...ATTRIBUTES.flatMap(a => [`user in owners ${a}`, `user not in owners ${a}`, ...VALUES.map(v => `user with ${v} in ${a}`), ...VALUES.map(v => `user with ${v} not in ${a}`)]),
]

interface RawRule {
  permit?: { principal?: string; actions: Action[]; resource?: string }
  forbid?: { principal?: string; actions: Action[]; resource?: string }
  when?: string[]
  unless?: string[]
}

const attributesArb = fc.dictionary(fc.constantFrom(...ATTRIBUTES), fc.subarray(VALUES))
const userArb = fc.record({ principal: fc.constantFrom(...PRINCIPALS), attributes: attributesArb })
const resourceArb = fc.record({
  type: fc.constantFrom('model', 'shield'),
  identifier: fc.constantFrom('m1', 'm2', 'c1'),
  owner: fc.option(userArb, { nil: undefined }),
})
const scopeArb = fc.record({ principal: fc.constantFrom(...PRINCIPALS), actions: fc.subarray([...ACTIONS], { minLength: 1 }), resource: fc.constantFrom(...RESOURCES) }, { requiredKeys: ['actions'] })
const ruleArb: fc.Arbitrary<RawRule> = fc
  .tuple(fc.boolean(), scopeArb, fc.constantFrom('none', 'when', 'unless'), fc.array(fc.constantFrom(...CONDITIONS), { minLength: 1, maxLength: 3 }))
  .map(([permit, scope, kind, conditions]) => ({ ...(permit ? { permit: scope } : { forbid: scope }), ...(kind === 'none' ? {} : { [kind]: conditions }) }))

function referenceHolds(condition: string, resource: ProtectedResource, who: Principal): boolean {
  const words = condition.split(' ')
  const attrs = (p: Principal | undefined, name: string): readonly string[] => (p !== undefined && Object.hasOwn(p.attributes, name) ? p.attributes[name]! : [])
  const shares = (name: string): boolean => attrs(resource.owner, name).some(v => attrs(who, name).includes(v))
  if (condition === 'user is owner') return resource.owner?.principal === who.principal
  if (condition === 'user is not owner') return resource.owner === undefined || resource.owner.principal !== who.principal
  if (condition === 'resource is unowned') return resource.owner === undefined
  if (words[1] === 'in') return shares(words[3]!)
  if (words[1] === 'not') return !shares(words[4]!)
  if (words.length === 5) return attrs(who, words[4]!).includes(words[2]!)
  return !attrs(who, words[5]!).includes(words[2]!)
}

function referenceResourceMatches(pattern: string | undefined, qualified: string): boolean {
  if (pattern === undefined || pattern === qualified) return true
  if (pattern.startsWith('regex:')) return new RegExp(`^(?:${pattern.slice(6)})`).test(qualified)
  return pattern.endsWith('::*') && qualified.startsWith(pattern.slice(0, -1))
}

function referenceAllows(rules: RawRule[], action: Action, resource: ProtectedResource, who: Principal | undefined): boolean {
  if (who === undefined) return true
  const effective: RawRule[] =
    rules.length > 0
      ? rules
      : [...['roles', 'teams', 'projects', 'namespaces'].map(a => `user in owners ${a}`), 'user is owner', 'resource is unowned'].map(c => ({ permit: { actions: [...ACTIONS] }, when: [c] }))
  const qualified = `${resource.type}::${resource.identifier}`
  for (const rule of effective) {
    const scope = rule.permit ?? rule.forbid!
    if (!referenceResourceMatches(scope.resource, qualified) || (scope.principal !== undefined && scope.principal !== who.principal) || !scope.actions.includes(action)) continue
    const all = (conditions: string[]) => conditions.every(c => referenceHolds(c, resource, who))
    if (rule.when !== undefined && !all(rule.when)) continue
    if (rule.unless !== undefined && all(rule.unless)) continue
    return rule.permit !== undefined
  }
  return false
}

/** Runs a property and asserts it held on every run (the counterexample is the failure's message). */
function holds<Ts extends [unknown, ...unknown[]]>(t: Tap, what: string, property: fc.IPropertyWithHooks<Ts>, runs = 300): void {
  const details = fc.check(property, { numRuns: runs })
  t.notOk(details.failed, details.failed ? (fc.defaultReportMessage(details) ?? what) : `${what}: ${details.numRuns} runs`)
  t.equal(details.numRuns, runs, `${what}: every run ran`)
}

t.test('property: the compiled policy decides as llama-stack reads the same rules', async t => {
  const seen = { allowed: 0, denied: 0 }
  holds(
    t,
    'the same decision',
    fc.property(fc.array(ruleArb, { maxLength: 6 }), fc.constantFrom(...ACTIONS), resourceArb, fc.option(userArb, { nil: undefined }), (rules, action, resource, who) => {
      const decision = policyOf(rules).allows(action, resource, who)
      seen[decision ? 'allowed' : 'denied']++
      return decision === referenceAllows(rules, action, resource, who)
    }),
    2000,
  )
  t.ok(seen.allowed > 200 && seen.denied > 200, `both decisions were exercised (${JSON.stringify(seen)})`)
})

t.test('property: a forbid-everything rule first denies every action to every user', async t => {
  holds(
    t,
    'denied',
    fc.property(fc.array(ruleArb, { maxLength: 5 }), fc.constantFrom(...ACTIONS), resourceArb, userArb, (rest, action, resource, who) => {
      return !policyOf([{ forbid: { actions: [...ACTIONS] } }, ...rest]).allows(action, resource, who)
    }),
  )
})

t.test('property: any policy, the empty one included, allows every action when authentication is off', async t => {
  holds(t, 'allowed', fc.property(fc.array(ruleArb, { maxLength: 5 }), fc.constantFrom(...ACTIONS), resourceArb, (rules, action, resource) => policyOf(rules).allows(action, resource, undefined)))
})

t.test('property: evaluation never throws, whatever users and resources look like', async t => {
  const anyAttributes = fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('__proto__', 'constructor', 'toString', 'roles')), fc.oneof(fc.array(fc.string()), fc.anything()) as fc.Arbitrary<string[]>)
  const anyUser = fc.record({ principal: fc.string(), attributes: anyAttributes })
  const anyResource = fc.record({ type: fc.string(), identifier: fc.string(), owner: fc.option(anyUser, { nil: undefined }) })
  const everyCondition = policyOf(CONDITIONS.map(c => ({ forbid: { actions: [...ACTIONS] }, when: c })))
  holds(
    t,
    'no throw',
    fc.property(fc.constantFrom(...ACTIONS), anyResource, anyUser, (action, resource, who) => {
      for (const policy of [AccessPolicy.DEFAULT, everyCondition]) policy.allows(action, resource, who)
    }),
    1000,
  )
})
