import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { parseDocument } from 'yaml'
import type { z } from 'zod'
import { substituteEnv, type Env, type EnvProblem } from './env.js'
import { isPlainObject, unknownKeys } from './fields.js'
import { checkReferences } from './references.js'
import { stackConfigSchema, type StackConfig } from './schema.js'

const MAX_SYNTAX_ERRORS = 3

export interface ConfigIssue {
  /** Where: a config path (`providers.inference[1].config.base_url`) or `file:line:col`. */
  readonly path: string
  readonly message: string
}

/** A config that cannot be used. `issues` lists every problem found, each with its path. */
export class ConfigError extends Error {
  override name = 'ConfigError'
  readonly code = 'invalid_config'
  constructor(
    readonly issues: readonly ConfigIssue[],
    readonly source: string,
  ) {
    super(`${source} is not a valid stack config:\n${issues.map(i => `  ${i.path}: ${i.message}`).join('\n')}`)
  }
}

export interface LoadedConfig {
  readonly config: StackConfig
  /** Keys the schema does not know, by path: llama-stack ignores them silently, troupe says so. */
  readonly warnings: readonly string[]
  readonly source: string
  /** sha256 of the file's text, hex: a reload acts only when it changes (an editor's touch or rename is no change). */
  readonly sha256: string
  /** For each API, the position in the file of each provider kept (disabled ones are dropped). */
  readonly providerIndexes: ReadonlyMap<string, readonly number[]>
}

export async function loadConfigFile(file: string, env: Env = process.env): Promise<LoadedConfig> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    throw new ConfigError([{ path: file, message: `cannot read: ${(error as Error).message}` }], file)
  }
  return parseConfig(text, env, file)
}

/** Parses, substitutes env references, validates, and checks store references. */
export function parseConfig(text: string, env: Env = process.env, source = 'stack.yaml'): LoadedConfig {
  const document = parseDocument(text, { prettyErrors: true })
  if (document.errors.length > 0) {
    // After the first few, YAML errors are nearly always consequences of the first.
    const shown = document.errors.slice(0, MAX_SYNTAX_ERRORS).map(error => {
      const at = error.linePos?.[0]
      return { path: at ? `${source}:${at.line}:${at.col}` : source, message: (error.message.split('\n')[0] ?? error.message).replace(/ at line \d+, column \d+:?$/, '') }
    })
    const more = document.errors.length - shown.length
    if (more > 0) shown.push({ path: source, message: `${more} more YAML errors after these, most likely caused by the first` })
    throw new ConfigError(shown, source)
  }
  const raw: unknown = document.toJS() ?? {}
  if (!isPlainObject(raw)) throw new ConfigError([{ path: source, message: 'the top level must be a mapping' }], source)

  const problems: EnvProblem[] = []
  const { providers, indexes } = dropDisabledProviders(raw['providers'], env, problems)
  const expanded = substituteEnv({ ...raw, providers: undefined }, env, '', problems) as Record<string, unknown>
  expanded['providers'] = providers
  const input = dropNulls(expanded)
  if (input['providers'] === undefined) delete input['providers']

  const result = stackConfigSchema.safeParse(input)
  const issues: ConfigIssue[] = problems.map(p => ({ path: p.path, message: p.message }))
  if (!result.success) issues.push(...result.error.issues.map(issue => toConfigIssue(issue, indexes)))
  issues.push(...checkReferences(input, indexes))
  if (issues.length > 0) throw new ConfigError(issues, source)
  return { config: result.data!, warnings: unknownKeys(input).map(path => originalPath(path, indexes)), source, sha256: sha256Of(text), providerIndexes: indexes }
}

export const sha256Of = (text: string): string => createHash('sha256').update(text).digest('hex')

/**
 * A provider whose provider_id resolves to empty or `__disabled__` is dropped before the rest of
 * it is expanded, so the variables only it needs are not required. `indexes` maps each kept
 * provider back to its position in the file, for error paths.
 */
function dropDisabledProviders(value: unknown, env: Env, problems: EnvProblem[]): { providers: unknown; indexes: Map<string, number[]> } {
  const indexes = new Map<string, number[]>()
  if (!isPlainObject(value)) return { providers: value === undefined ? undefined : substituteEnv(value, env, 'providers', problems), indexes }
  const providers: Record<string, unknown> = {}
  for (const [api, list] of Object.entries(value)) {
    if (!Array.isArray(list)) {
      providers[api] = substituteEnv(list, env, `providers.${api}`, problems)
      continue
    }
    const kept: unknown[] = []
    const positions: number[] = []
    list.forEach((entry, index) => {
      const path = `providers.${api}[${index}]`
      if (isPlainObject(entry)) {
        const id = substituteEnv(entry['provider_id'], env, `${path}.provider_id`, problems)
        if (id === null || id === '' || id === '__disabled__') return
      }
      kept.push(dropNulls(substituteEnv(entry, env, path, problems)))
      positions.push(index)
    })
    providers[api] = kept
    indexes.set(api, positions)
  }
  return { providers, indexes }
}

/** Null means unset, in YAML (`namespace: null`) and after substitution (`${env.X:=}`). */
function dropNulls<T>(value: T): T {
  if (Array.isArray(value)) return value.map(dropNulls) as T
  if (!isPlainObject(value)) return value
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null).map(([k, v]) => [k, dropNulls(v)])) as T
}

function toConfigIssue(issue: z.core.$ZodIssue, indexes: Map<string, number[]>): ConfigIssue {
  const path = [...issue.path] as Array<string | number | symbol>
  if (path[0] === 'providers' && typeof path[1] === 'string' && typeof path[2] === 'number') {
    path[2] = indexes.get(path[1])?.[path[2]] ?? path[2]
  }
  return { path: formatPath(path) || '(top level)', message: issue.message }
}

function originalPath(path: string, indexes: Map<string, number[]>): string {
  return path.replace(/^providers\.([^.[]+)\[(\d+)\]/, (whole, api: string, at: string) => {
    const original = indexes.get(api)?.[Number(at)]
    return original === undefined ? whole : `providers.${api}[${original}]`
  })
}

export function formatPath(path: ReadonlyArray<string | number | symbol>): string {
  let out = ''
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`
    else out += out === '' ? String(segment) : `.${String(segment)}`
  }
  return out
}
