import { z } from 'zod'
import { formatPath, type ConfigIssue } from '../config/index.js'
import type { Condition, ParsedCondition } from './access-policy.js'

/**
 * The rule shape llama-stack's access rules (`access_policy`) and route rules (`route_policy`)
 * share: a `permit` or a `forbid` scope, `when` or `unless` conditions, a `description`. Each
 * policy brings its scope and the conditions it takes; every problem is an issue at its config
 * path (`server.auth.access_policy[2].permit.actions[0]`).
 */

/**
 * A field llama-stack takes as one item or a list of them, parsed with `item` either way and
 * answered as a list; an issue keeps its path (`actions[1]`), which zod's union would lose. An
 * empty list is refused unless `allowEmpty`: a scope that lists nothing would never apply, and
 * a `forbid` written so would silently forbid nothing. Conditions allow it, as llama-stack
 * reads `when: []` as no condition.
 */
export function oneOrList<T extends z.ZodType>(item: T, what: string, { allowEmpty = false }: { readonly allowEmpty?: boolean } = {}) {
  const list = z.array(item)
  return z.unknown().transform((value, ctx): Array<z.output<T>> => {
    if (value === undefined || value === null) {
      ctx.addIssue({ code: 'custom', message: `required: ${what} or a list of them` })
      return z.NEVER
    }
    if (Array.isArray(value) && value.length === 0 && !allowEmpty) {
      ctx.addIssue({ code: 'custom', message: `an empty list never matches: give at least one (${what})` })
      return z.NEVER
    }
    const parsed = Array.isArray(value) ? list.safeParse(value) : item.safeParse(value)
    if (parsed.success) return Array.isArray(value) ? (parsed.data as Array<z.output<T>>) : [parsed.data as z.output<T>]
    for (const issue of parsed.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: [...issue.path] as PropertyKey[] })
    return z.NEVER
  })
}

/** The expression of a `regex:` pattern, matched from the start as Python's re.match does; or why it does not compile. */
export function regexOf(pattern: string): RegExp | { readonly problem: string } {
  try {
    return new RegExp(`^(?:${pattern.slice('regex:'.length)})`)
  } catch (error) {
    return { problem: `not a valid regular expression: ${(error as Error).message}` }
  }
}

/** The rule around `scope`, with the `when`/`unless` conditions `condition` parses. */
export function ruleSchema<S extends z.ZodType>(scope: S, condition: z.ZodType<ParsedCondition, string>) {
  return z
    .strictObject({
      permit: scope.nullish(),
      forbid: scope.nullish(),
      when: oneOrList(condition, 'a condition', { allowEmpty: true }).nullish(),
      unless: oneOrList(condition, 'a condition', { allowEmpty: true }).nullish(),
      description: z.string().nullish(),
    })
    .superRefine((rule, ctx) => {
      if (rule.permit == null && rule.forbid == null) ctx.addIssue({ code: 'custom', message: 'set one of permit or forbid' })
      if (rule.permit != null && rule.forbid != null) ctx.addIssue({ code: 'custom', message: 'permit and forbid are mutually exclusive' })
      if ((rule.when?.length ?? 0) > 0 && (rule.unless?.length ?? 0) > 0) ctx.addIssue({ code: 'custom', message: 'when and unless are mutually exclusive' })
    })
}

/** A rule's conditions as closures; undefined for none (an empty list is none, as in llama-stack). */
export function compiledConditions(list: readonly ParsedCondition[] | null | undefined): readonly Condition[] | undefined {
  return list == null || list.length === 0 ? undefined : list.map(c => c.test)
}

/** The issues of a zod error, each at its config path under `at`. */
export function issuesAt(at: string, error: z.ZodError): ConfigIssue[] {
  return error.issues.map(issue => {
    const below = formatPath(issue.path)
    return { path: below === '' || below.startsWith('[') ? `${at}${below}` : `${at}.${below}`, message: issue.message }
  })
}
