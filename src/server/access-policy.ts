import { z } from 'zod'
import type { ConfigIssue } from '../config/index.js'
import type { Principal } from './auth.js'
import { compiledConditions, issuesAt, oneOrList, regexOf, ruleSchema } from './policy-rules.js'

/**
 * llama-stack's access policy (`server.auth.access_policy`): which principal may create, read,
 * update or delete which resource, as rules loosely after Cedar's. Its semantics are
 * llama-stack's (core/access_control): rules are tried in order and the first that matches
 * decides, permit or forbid; when none matches the action is denied. A rule matches when its
 * scope does (the action is among its `actions`; `principal`, when set, is the caller's;
 * `resource`, when set, is `type::identifier`, `type::*` or `regex:…`) and its condition holds:
 * every `when` condition, or not every `unless` one. An empty list means llama-stack's default:
 * the owner, a user who shares a value of one of the owner's roles, teams, projects or
 * namespaces, and anyone for an unowned resource. Without authentication (no caller) every
 * action is allowed.
 *
 * The rules are compiled once, when the config is checked: scopes into a bitmask and matchers,
 * conditions into closures, so that a decision on the request path parses nothing.
 */

export const ACTIONS = ['create', 'read', 'update', 'delete'] as const
export type Action = (typeof ACTIONS)[number]

const ACTION_BITS: Readonly<Record<Action, number>> = { create: 1, read: 2, update: 4, delete: 8 }
const EVERY_ACTION = 0b1111

/** A resource the policy guards: `type::identifier` to rules, and who created it. */
export interface ProtectedResource {
  readonly type: string
  readonly identifier: string
  /** Who created it, as they were authenticated then; undefined when it was made without authentication (a model of the config). */
  readonly owner?: Principal | undefined
}

/** A `when`/`unless` condition, compiled. The resource is undefined for a route rule, which guards none. */
export type Condition = (resource: ProtectedResource | undefined, user: Principal) => boolean

export interface ParsedCondition {
  readonly test: Condition
  /** It looks at the resource or its owner: meaningless for a route rule. */
  readonly aboutResource: boolean
}

/** The forms llama-stack's condition parser takes, for the message that refuses another. */
export const CONDITION_FORMS = [
  'user with <value> in <attribute>',
  'user with <value> not in <attribute>',
  'user in owners <attribute>',
  'user not in owners <attribute>',
  'user is owner',
  'user is not owner',
  'resource is unowned',
]

/**
 * An attribute's values. Own properties only: an attribute named `constructor` is not the
 * object's, and a value that is not a list (a gateway's header) counts as none.
 */
function valuesOf(attributes: Principal['attributes'] | undefined, name: string): readonly string[] | undefined {
  if (attributes === undefined || attributes === null || !Object.hasOwn(attributes, name)) return undefined
  const values = attributes[name]
  return Array.isArray(values) ? values : undefined
}

/** Whether the user has, in attribute `name`, a value the resource's owner has there too. */
function sharesOwnersValue(name: string): Condition {
  return (resource, user) => {
    const owners = valuesOf(resource?.owner?.attributes, name)
    if (owners === undefined || owners.length === 0) return false
    const users = valuesOf(user.attributes, name)
    if (users === undefined || users.length === 0) return false
    return owners.some(value => users.includes(value))
  }
}

const not =
  (condition: Condition): Condition =>
  (resource, user) =>
    !condition(resource, user)

const isOwner: Condition = (resource, user) => resource?.owner !== undefined && resource.owner.principal === user.principal

/** One condition, as llama-stack reads it: words separated by whitespace, in one of CONDITION_FORMS; undefined for anything else. */
export function parseCondition(text: string): ParsedCondition | undefined {
  const words = text.trim().split(/\s+/)
  const [first, second, third, fourth, fifth, sixth] = words
  const about = (test: Condition): ParsedCondition => ({ test, aboutResource: true })
  switch (words.length) {
    case 3:
      if (first === 'user' && second === 'is' && third === 'owner') return about(isOwner)
      if (first === 'resource' && second === 'is' && third === 'unowned') return about(resource => resource?.owner === undefined)
      return undefined
    case 4:
      if (first === 'user' && second === 'is' && third === 'not' && fourth === 'owner') return about(not(isOwner))
      if (first === 'user' && second === 'in' && third === 'owners') return about(sharesOwnersValue(fourth!))
      return undefined
    case 5:
      if (first === 'user' && second === 'with' && fourth === 'in') {
        const value = third!
        const name = fifth!
        return { test: (_resource, user) => valuesOf(user.attributes, name)?.includes(value) === true, aboutResource: false }
      }
      if (first === 'user' && second === 'not' && third === 'in' && fourth === 'owners') return about(not(sharesOwnersValue(fifth!)))
      return undefined
    case 6:
      if (first === 'user' && second === 'with' && fourth === 'not' && fifth === 'in') {
        const value = third!
        const name = sixth!
        return { test: (_resource, user) => valuesOf(user.attributes, name)?.includes(value) !== true, aboutResource: false }
      }
      return undefined
    default:
      return undefined
  }
}

/** A condition, compiled as it is parsed: one that is not in CONDITION_FORMS is an issue at its own path. */
export const conditionSchema = z.string().transform((text, ctx): ParsedCondition => {
  const parsed = parseCondition(text)
  if (parsed === undefined) {
    ctx.addIssue({ code: 'custom', message: `'${text}' is not a condition; use one of: ${CONDITION_FORMS.join('; ')}` })
    return z.NEVER
  }
  return parsed
})

/**
 * llama-stack's resource types (its ResourceType enum, with `vector_store`, vector_db's later
 * name), the `type` of `type::identifier`, and `sql_record`, the records of its stores. A
 * pattern naming another (`models::*`) would never match, and a forbid so written would forbid
 * nothing, so it is refused. Of these, troupe keeps models and the records of SQL_RECORD_TABLES.
 */
export const RESOURCE_TYPES = ['model', 'shield', 'vector_db', 'vector_store', 'dataset', 'scoring_function', 'benchmark', 'tool', 'tool_group', 'sql_record'] as const

/**
 * The stored records the policy guards, by llama-stack's table names: a record's type is
 * `sql_record::<table>`, its identifier the record's id (llama-stack's AuthorizedSqlStore
 * names them so), whatever `table_name` troupe's config gives the store.
 */
export const SQL_RECORD_TABLES = ['chat_completions', 'openai_conversations', 'conversation_items'] as const
export type SqlRecordTable = (typeof SQL_RECORD_TABLES)[number]

/**
 * A resource pattern: `type::identifier` exactly, `type::*` for every resource of a type, or
 * `regex:` and a regular expression matched from the start of `type::identifier` (Python's
 * re.match, as llama-stack does). A stored record's type has two parts
 * (`sql_record::chat_completions::*`, or `sql_record::*` for every record). Anything else
 * would never match, so it is refused.
 */
type ResourceMatcher = (type: string, identifier: string) => boolean

const resourcePattern = z
  .string()
  .min(1)
  .transform((pattern, ctx): ResourceMatcher => {
    if (pattern.startsWith('regex:')) {
      const regex = regexOf(pattern)
      if (regex instanceof RegExp) return (type, identifier) => regex.test(`${type}::${identifier}`)
      ctx.addIssue({ code: 'custom', message: regex.problem })
      return z.NEVER
    }
    const split = pattern.indexOf('::')
    if (split <= 0 || split === pattern.length - 2) {
      ctx.addIssue({ code: 'custom', message: `'${pattern}' is not a resource: use type::identifier (model::llama-3), type::* or regex:…` })
      return z.NEVER
    }
    const resourceType = pattern.slice(0, split)
    if (!(RESOURCE_TYPES as readonly string[]).includes(resourceType)) {
      ctx.addIssue({ code: 'custom', message: `'${resourceType}' is not a resource type; use one of: ${RESOURCE_TYPES.join(', ')}` })
      return z.NEVER
    }
    const identifier = pattern.slice(split + 2)
    if (resourceType === 'sql_record') return sqlRecordPattern(pattern, identifier, ctx)
    if (identifier === '*') return type => type === resourceType
    if (pattern.includes('*')) {
      ctx.addIssue({ code: 'custom', message: `'${pattern}': * is a wildcard only as the whole identifier (${resourceType}::*); use regex:… for others` })
      return z.NEVER
    }
    return (type, id) => type === resourceType && id === identifier
  })

/** `sql_record::*`, `sql_record::<table>::*` or `sql_record::<table>::<id>`, given what follows `sql_record::`. */
function sqlRecordPattern(pattern: string, rest: string, ctx: z.RefinementCtx): ResourceMatcher {
  if (rest === '*') return type => type.startsWith('sql_record::')
  const split = rest.indexOf('::')
  const table = split < 0 ? rest : rest.slice(0, split)
  if (!(SQL_RECORD_TABLES as readonly string[]).includes(table)) {
    ctx.addIssue({ code: 'custom', message: `'${table}' is not a table of records; use sql_record::<table>::* with one of: ${SQL_RECORD_TABLES.join(', ')}` })
    return z.NEVER
  }
  const identifier = split < 0 ? '' : rest.slice(split + 2)
  if (identifier === '' || (identifier !== '*' && identifier.includes('*'))) {
    ctx.addIssue({ code: 'custom', message: `'${pattern}' is not a record: use sql_record::${table}::* or sql_record::${table}::<id>` })
    return z.NEVER
  }
  const type = `sql_record::${table}`
  if (identifier === '*') return t => t === type
  return (t, id) => t === type && id === identifier
}

const scopeSchema = z.strictObject({
  principal: z.string().min(1).nullish(),
  actions: oneOrList(z.enum(ACTIONS), 'an action'),
  resource: resourcePattern.nullish(),
})

const accessRuleSchema = ruleSchema(scopeSchema, conditionSchema)

interface CompiledRule {
  readonly permit: boolean
  readonly actions: number
  readonly principal: string | undefined
  readonly resource: ResourceMatcher | undefined
  /** All must hold for the rule to apply; undefined when it has no `when`. */
  readonly when: readonly Condition[] | undefined
  /** Not all may hold for the rule to apply; undefined when it has no `unless`. */
  readonly unless: readonly Condition[] | undefined
}

function compileRule(rule: z.output<typeof accessRuleSchema>): CompiledRule {
  const scope = (rule.permit ?? rule.forbid)!
  return {
    permit: rule.permit != null,
    actions: scope.actions.reduce((bits, action) => bits | ACTION_BITS[action], 0),
    principal: scope.principal ?? undefined,
    resource: scope.resource ?? undefined,
    when: compiledConditions(rule.when),
    unless: compiledConditions(rule.unless),
  }
}

function allHold(conditions: readonly Condition[], resource: ProtectedResource, user: Principal): boolean {
  for (const condition of conditions) if (!condition(resource, user)) return false
  return true
}

/** A compiled `access_policy`. */
export class AccessPolicy {
  readonly #rules: readonly CompiledRule[]

  private constructor(rules: readonly CompiledRule[]) {
    this.#rules = rules
  }

  /** llama-stack's default, what an empty `access_policy` means. */
  static readonly DEFAULT: AccessPolicy = new AccessPolicy(
    [
      ...['roles', 'teams', 'projects', 'namespaces'].map(name => `user in owners ${name}`),
      'user is owner',
      'resource is unowned',
    ].map(when => ({ permit: true, actions: EVERY_ACTION, principal: undefined, resource: undefined, when: [parseCondition(when)!.test], unless: undefined })),
  )

  /** Compiles rules that have been parsed with this module's schema; none is the default policy. */
  static of(rules: ReadonlyArray<z.output<typeof accessRuleSchema>>): AccessPolicy {
    return rules.length === 0 ? AccessPolicy.DEFAULT : new AccessPolicy(rules.map(compileRule))
  }

  /** Whether `user` may `action` `resource`: always without authentication (no user), else what the first matching rule says, denied when none matches. */
  allows(action: Action, resource: ProtectedResource, user: Principal | undefined): boolean {
    if (user === undefined) return true
    const bit = ACTION_BITS[action]
    for (const rule of this.#rules) {
      if ((rule.actions & bit) === 0) continue
      if (rule.principal !== undefined && rule.principal !== user.principal) continue
      if (rule.resource !== undefined && !rule.resource(resource.type, resource.identifier)) continue
      if (rule.when !== undefined && !allHold(rule.when, resource, user)) continue
      if (rule.unless !== undefined && allHold(rule.unless, resource, user)) continue
      return rule.permit
    }
    return false
  }
}

/** `access_policy` from the config, compiled; each rule that does not parse is an issue at its path (`server.auth.access_policy[2].permit.actions[0]`). */
export function parseAccessPolicy(rules: readonly unknown[], at: string, issues: ConfigIssue[]): AccessPolicy | undefined {
  const parsed = z.array(accessRuleSchema).safeParse(rules)
  if (parsed.success) return AccessPolicy.of(parsed.data)
  issues.push(...issuesAt(at, parsed.error))
  return undefined
}
