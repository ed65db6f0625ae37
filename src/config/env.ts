import os from 'node:os'

/**
 * `${env.X}` (required), `${env.X:=default}` (default when X is unset or empty) and
 * `${env.X:+value}` (value only when X is set and not empty), anywhere inside a string.
 */
const REFERENCE = /\$\{env\.([A-Za-z_][A-Za-z0-9_]*)(?:(:=|:\+)([^}]*))?\}/g

export interface EnvProblem {
  readonly path: string
  readonly message: string
}

export type Env = Readonly<Record<string, string | undefined>>

/**
 * Substitutes env references in every string of `value`, as llama-stack does: a value that
 * substitution changed is coerced (empty to null, true/false to booleans, integers, floats), and
 * `~` at the start of a path is the home directory. Problems are collected, not thrown, so that
 * every missing variable is reported at once.
 */
export function substituteEnv(value: unknown, env: Env, path: string, problems: EnvProblem[]): unknown {
  if (typeof value === 'string') return substituteString(value, env, path, problems)
  if (Array.isArray(value)) return value.map((item, i) => substituteEnv(item, env, `${path}[${i}]`, problems))
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([key, child]) => [key, substituteEnv(child, env, path === '' ? key : `${path}.${key}`, problems)]))
  }
  return value
}

function substituteString(text: string, env: Env, path: string, problems: EnvProblem[]): unknown {
  let changed = false
  const out = text.replace(REFERENCE, (_whole, name: string, operator: string | undefined, operand: string | undefined) => {
    changed = true
    const current = env[name]
    const isSet = current !== undefined && current !== ''
    if (operator === ':=') return isSet ? current : (operand ?? '')
    if (operator === ':+') return isSet ? (operand ?? '') : ''
    if (current === undefined) {
      problems.push({ path, message: `environment variable ${name} is not set (write \${env.${name}:=default} to make it optional)` })
      return ''
    }
    return current
  })
  const expanded = expandHome(out)
  if (!changed) return expanded
  return coerce(expanded)
}

function expandHome(text: string): string {
  return text === '~' || text.startsWith('~/') ? os.homedir() + text.slice(1) : text
}

function coerce(text: string): unknown {
  if (text === '') return null
  if (text === 'true') return true
  if (text === 'false') return false
  if (/^-?\d+$/.test(text)) {
    const n = Number(text)
    if (Number.isSafeInteger(n)) return n
  }
  if (/^-?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$/.test(text)) return Number(text)
  return text
}
