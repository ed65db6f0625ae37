import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { parseDocument } from 'yaml'
import type { z } from 'zod'
import type { Env, EnvProblem } from './env.js'
import { isPlainObject, unknownKeys } from './fields.js'
import { checkReferences } from './references.js'
import { sqliteLmdbPath, stackConfigSchema, type StackConfig } from './schema.js'
import { selectServed } from './served.js'

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

export interface LoadOptions {
  /** Refuse, as errors, what troupe would otherwise skip or ignore with a warning (`--strict`). */
  readonly strict?: boolean
}

export interface LoadedConfig {
  readonly config: StackConfig
  /**
   * What troupe skips or ignores, one per item, by path: keys the schema does not know (llama-stack
   * ignores them silently, troupe says so), parts of a llama-stack config it does not serve, and
   * notes on what it serves differently (a SQLite backend). Under `strict` only the notes remain.
   */
  readonly warnings: readonly ConfigIssue[]
  /** Whether it was loaded with --strict: a reload re-reads it the same way. */
  readonly strict: boolean
  readonly source: string
  /** sha256 of the file's text, hex: a reload acts only when it changes (an editor's touch or rename is no change). */
  readonly sha256: string
  /** For each API, the position in the file of each provider kept (disabled and skipped ones are dropped). */
  readonly providerIndexes: ReadonlyMap<string, readonly number[]>
}

export async function loadConfigFile(file: string, env: Env = process.env, options: LoadOptions = {}): Promise<LoadedConfig> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    throw new ConfigError([{ path: file, message: `cannot read: ${(error as Error).message}` }], file)
  }
  return parseConfig(text, env, file, options)
}

/** Parses, keeps what troupe serves, substitutes env references, validates, and checks store references. */
export function parseConfig(text: string, env: Env = process.env, source = 'stack.yaml', options: LoadOptions = {}): LoadedConfig {
  const strict = options.strict === true
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
  const served = selectServed(raw, env, problems)
  const { indexes, modelIndexes } = served
  const input = dropNulls(served.input)
  if (input['providers'] === undefined) delete input['providers']

  const result = stackConfigSchema.safeParse(input)
  const issues: ConfigIssue[] = problems.map(p => ({ path: p.path, message: p.message }))
  if (!result.success) issues.push(...result.error.issues.map(issue => toConfigIssue(issue, indexes, modelIndexes)))
  issues.push(...checkReferences(input, indexes))
  const ignored = [
    ...served.skipped.map(skip => ({ path: skip.path, message: `${skip.message}; ${strict ? 'refused under --strict' : 'skipped'}` })),
    ...unknownKeys(input).map(path => ({ path: originalPath(path, indexes, modelIndexes), message: strict ? 'unknown key; refused under --strict' : 'unknown key, ignored' })),
  ]
  if (strict) issues.push(...ignored)
  if (issues.length > 0) throw new ConfigError(issues, source)
  const config = result.data!
  const warnings = [...(strict ? [] : ignored), ...servedDifferently(config)]
  return { config, warnings, strict, source, sha256: sha256Of(text), providerIndexes: indexes }
}

/** Notes on what is served, but not as llama-stack serves it: a warning each, under --strict too. */
function servedDifferently(config: StackConfig): ConfigIssue[] {
  return Object.entries(config.storage.backends).flatMap(([name, backend]) =>
    backend.type === 'kv_sqlite' || backend.type === 'sql_sqlite'
      ? [
          {
            path: `storage.backends.${name}`,
            message: `${backend.type} is served by troupe's embedded LMDB store at ${sqliteLmdbPath(backend.db_path)}; existing SQLite data in ${backend.db_path} is not read`,
          },
        ]
      : [],
  )
}

export const sha256Of = (text: string): string => createHash('sha256').update(text).digest('hex')

/** Null means unset, in YAML (`namespace: null`) and after substitution (`${env.X:=}`). */
function dropNulls<T>(value: T): T {
  if (Array.isArray(value)) return value.map(dropNulls) as T
  if (!isPlainObject(value)) return value
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null).map(([k, v]) => [k, dropNulls(v)])) as T
}

function toConfigIssue(issue: z.core.$ZodIssue, indexes: Map<string, number[]>, modelIndexes: readonly number[]): ConfigIssue {
  return { path: originalPath(formatPath(issue.path), indexes, modelIndexes) || '(top level)', message: issue.message }
}

/** A path in the config kept as the same path in the file: dropped and skipped list items moved the ones after them. */
function originalPath(path: string, indexes: Map<string, number[]>, modelIndexes: readonly number[]): string {
  return path
    .replace(/^providers\.([^.[]+)\[(\d+)\]/, (whole, api: string, at: string) => {
      const original = indexes.get(api)?.[Number(at)]
      return original === undefined ? whole : `providers.${api}[${original}]`
    })
    .replace(/^registered_resources\.models\[(\d+)\]/, (whole, at: string) => {
      const original = modelIndexes[Number(at)]
      return original === undefined ? whole : `registered_resources.models[${original}]`
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
