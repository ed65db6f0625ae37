import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import type { z } from 'zod'
import { ConfigError, formatPath, type ConfigIssue } from './config-error.js'
import type { Env, EnvProblem } from './env.js'
import { isPlainObject, unknownKeys } from './fields.js'
import { checkReferences } from './references.js'
import { sqliteLmdbPath, stackConfigSchema, type StackConfig } from './schema.js'
import { QUOTA_BACKEND, selectServed } from './served.js'
import { MAX_CONFIG_BYTES, tooLarge, yamlValue } from './yaml-value.js'

export { ConfigError, formatPath, type ConfigIssue } from './config-error.js'

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
  let bytes: Buffer
  try {
    bytes = await readAtMost(file, MAX_CONFIG_BYTES)
  } catch (error) {
    if (error instanceof ConfigError) throw error
    throw new ConfigError([{ path: file, message: `cannot read: ${(error as Error).message}` }], file)
  }
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    throw new ConfigError([{ path: file, message: 'the file is not UTF-8 text' }], file)
  }
  return parseConfig(text, env, file, options)
}

/**
 * The file's bytes, or a ConfigError when it has more than `limit`: its size is checked before
 * it is read, and the read is bounded too (a pipe or a device says nothing of its size).
 */
async function readAtMost(file: string, limit: number): Promise<Buffer> {
  const handle = await open(file, 'r')
  try {
    const { size } = await handle.stat()
    if (size > limit) throw tooLarge(String(size), file)
    const buffer = Buffer.allocUnsafe(limit + 1)
    let length = 0
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null)
      if (bytesRead === 0) return buffer.subarray(0, length)
      length += bytesRead
    }
    throw tooLarge(`more than ${limit}`, file)
  } finally {
    await handle.close()
  }
}


/** Parses, keeps what troupe serves, substitutes env references, validates, and checks store references. */
export function parseConfig(text: string, env: Env = process.env, source = 'stack.yaml', options: LoadOptions = {}): LoadedConfig {
  const strict = options.strict === true
  const raw = yamlValue(text, source)
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
            path: quotaBackendPath(`storage.backends.${name}`),
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
  return quotaBackendPath(path)
    .replace(/^providers\.([^.[]+)\[(\d+)\]/, (whole, api: string, at: string) => {
      const original = indexes.get(api)?.[Number(at)]
      return original === undefined ? whole : `providers.${api}[${original}]`
    })
    .replace(/^registered_resources\.models\[(\d+)\]/, (whole, at: string) => {
      const original = modelIndexes[Number(at)]
      return original === undefined ? whole : `registered_resources.models[${original}]`
    })
}

/** A path into the backend an inline server.quota.kvstore was made (served.ts), as the file has it: under server.quota.kvstore. */
function quotaBackendPath(path: string): string {
  const backend = `storage.backends.${QUOTA_BACKEND}`
  return path === backend || path.startsWith(`${backend}.`) ? `server.quota.kvstore${path.slice(backend.length)}` : path
}
