import { z } from 'zod'
import type { ConfigIssue } from '../config/index.js'
import { conditionSchema, type Condition, type ParsedCondition } from './access-policy.js'
import type { Principal } from './auth.js'
import { HttpError } from './http.js'
import { compiledConditions, issuesAt, oneOrList, regexOf, ruleSchema } from './policy-rules.js'

/**
 * llama-stack's route policy (`server.auth.route_policy`): which routes a caller may reach at
 * all, checked after authentication and before any handler. Its semantics are llama-stack's
 * (RouteAuthorizationMiddleware): rules in order, the first whose `paths` match and whose
 * condition holds decides, permit or forbid; when none does the request is refused with 403.
 * A path is `*` (every route), a prefix ending in `*` (`/v1/files*` is /v1/files and all below
 * it), `regex:` and an expression matched from the start of the path, or exact; the request's
 * path is percent-decoded and loses trailing slashes first. Conditions look at the caller's
 * attributes only (`user with admin in roles`): a route guards no resource. `when` needs every
 * condition to hold; `unless` applies the rule when none holds (llama-stack's route rules read
 * `unless` so, its resource rules as "not all"). A rule with a condition never matches a
 * request without a caller (a public route, or a server without authentication), so those
 * reach only what condition-free rules permit. No rules at all: every route is allowed.
 */

type PathMatcher = (path: string) => boolean

/** A path without its trailing slashes, except the root: llama-stack's normalization. */
function normalized(path: string): string {
  let end = path.length
  while (end > 1 && path.charCodeAt(end - 1) === 47 /* / */) end--
  return end === path.length ? path : path.slice(0, end)
}

const pathPattern = z
  .string()
  .min(1)
  .transform((pattern, ctx): PathMatcher => {
    if (pattern === '*') return () => true
    if (pattern.startsWith('regex:')) {
      const regex = regexOf(pattern)
      if (regex instanceof RegExp) return path => regex.test(path)
      ctx.addIssue({ code: 'custom', message: regex.problem })
      return z.NEVER
    }
    if (!pattern.startsWith('/')) {
      ctx.addIssue({ code: 'custom', message: `'${pattern}' is not a path: use /v1/…, a prefix ending in * (/v1/files*), * or regex:…` })
      return z.NEVER
    }
    const star = pattern.indexOf('*')
    if (star === pattern.length - 1) {
      const prefix = pattern.slice(0, -1)
      return path => path.startsWith(prefix)
    }
    if (star !== -1) {
      ctx.addIssue({ code: 'custom', message: `'${pattern}': * is a wildcard only at the end of a path; use regex:… for others` })
      return z.NEVER
    }
    const exact = normalized(pattern)
    return path => path === exact
  })

/** Route conditions: those about the caller alone; one about a resource or its owner is refused, as no route has one. */
const routeCondition = conditionSchema.transform((parsed, ctx): ParsedCondition => {
  if (parsed.aboutResource) {
    ctx.addIssue({ code: 'custom', message: 'a route has no resource or owner: use user with <value> in <attribute>, or user with <value> not in <attribute>' })
    return z.NEVER
  }
  return parsed
})

const routeRuleSchema = ruleSchema(z.strictObject({ paths: oneOrList(pathPattern, 'a path') }), routeCondition)

interface CompiledRouteRule {
  readonly permit: boolean
  readonly paths: readonly PathMatcher[]
  /** All must hold; undefined without `when`. */
  readonly when: readonly Condition[] | undefined
  /** None may hold; undefined without `unless`. */
  readonly unless: readonly Condition[] | undefined
}

/** A compiled, non-empty `route_policy`. */
export class RoutePolicy {
  readonly #rules: readonly CompiledRouteRule[]

  constructor(rules: ReadonlyArray<z.output<typeof routeRuleSchema>>) {
    this.#rules = rules.map(rule => ({
      permit: rule.permit != null,
      paths: (rule.permit ?? rule.forbid)!.paths,
      when: compiledConditions(rule.when),
      unless: compiledConditions(rule.unless),
    }))
  }

  /** Whether `user` (undefined: no caller) may reach `pathname` (as the request has it, percent-encoded). */
  allows(pathname: string, user: Principal | undefined): boolean {
    return this.#allows(requestPath(pathname), user)
  }

  /** Refuses a request to a route `user` may not reach: 403 `forbidden`, in llama-stack's words. */
  authorize(pathname: string, user: Principal | undefined): void {
    const path = requestPath(pathname)
    if (!this.#allows(path, user)) throw new HttpError(403, 'forbidden', `Access denied: insufficient permissions for route ${path}`)
  }

  #allows(path: string, user: Principal | undefined): boolean {
    for (const rule of this.#rules) {
      if (!rule.paths.some(matches => matches(path))) continue
      if (rule.when !== undefined || rule.unless !== undefined) {
        if (user === undefined) continue
        if (rule.when !== undefined && !rule.when.every(holds => holds(undefined, user))) continue
        if (rule.unless !== undefined && rule.unless.some(holds => holds(undefined, user))) continue
      }
      return rule.permit
    }
    return false
  }
}

/** A request's path as rules see it: percent-decoded, as llama-stack matches it, without trailing slashes. */
function requestPath(pathname: string): string {
  return normalized(pathname.includes('%') ? decoded(pathname) : pathname)
}

/** One that does not decode is matched as it is: the router refuses it anyway. */
function decoded(pathname: string): string {
  try {
    return decodeURIComponent(pathname)
  } catch (error) {
    if (error instanceof URIError) return pathname
    throw error
  }
}

/** `route_policy` from the config, compiled; undefined when it has no rules (every route is allowed) or when a rule does not parse (an issue at its path). */
export function parseRoutePolicy(rules: readonly unknown[], at: string, issues: ConfigIssue[]): RoutePolicy | undefined {
  const parsed = z.array(routeRuleSchema).safeParse(rules)
  if (!parsed.success) {
    issues.push(...issuesAt(at, parsed.error))
    return undefined
  }
  return parsed.data.length === 0 ? undefined : new RoutePolicy(parsed.data)
}
