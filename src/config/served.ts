import { substituteEnv, type Env, type EnvProblem } from './env.js'
import { isPlainObject } from './fields.js'
import type { ConfigIssue } from './load.js'

/**
 * What troupe serves of a llama-stack run config, and the step that keeps only that. A
 * llama-stack distribution config names APIs, provider types, stores, resources and sections
 * troupe does not serve; each is skipped with one warning naming its path (an error under
 * --strict), as llama-stack itself skips a resource whose provider is disabled. What troupe does
 * not know at all is left for the schema and the provider registry to refuse, so that a typo is
 * still an error.
 */

/** llama-stack's APIs: its `Api` enum, with the ones earlier releases had. */
const LLAMA_STACK_APIS: ReadonlySet<string> = new Set([
  'providers', 'inference', 'safety', 'responses', 'agents', 'batches', 'vector_io', 'tool_runtime', 'telemetry', 'models',
  'shields', 'vector_stores', 'vector_dbs', 'tool_groups', 'files', 'file_processors', 'prompts', 'conversations', 'connectors',
  'messages', 'interactions', 'inspect', 'admin', 'datasetio', 'scoring', 'scoring_functions', 'eval', 'eval_tasks', 'benchmarks',
  'datasets', 'post_training', 'synthetic_data_generation', 'memory', 'memory_banks',
])

/**
 * The provider types troupe runs, by API: src/stack/providers.ts has exactly one spec for each
 * (its registry is typed from this list). The OpenAI-compatible remotes are served by the
 * remote::openai adapter under their own names, with their own config fields.
 */
export const SERVED_PROVIDER_TYPES = {
  inference: [
    'remote::openai',
    'remote::ollama',
    'remote::vllm',
    'remote::together',
    'remote::fireworks',
    'remote::groq',
    'remote::cerebras',
    'remote::sambanova',
    'remote::nvidia',
    'remote::azure',
    'remote::llama-openai-compat',
    'remote::runpod',
    'remote::llama-cpp-server',
  ],
} as const satisfies Record<string, readonly string[]>
export type ServedProviderType = (typeof SERVED_PROVIDER_TYPES)[keyof typeof SERVED_PROVIDER_TYPES][number]

/** APIs served without providers of their own: the stack's routing table, stores and HTTP server answer them. */
const SERVED_WITHOUT_PROVIDERS = ['models', 'conversations', 'inspect', 'providers']

/** llama-stack's provider types of the APIs troupe serves (all its releases'), for telling an unserved type from a typo. */
const LLAMA_STACK_PROVIDER_TYPES: Readonly<Record<string, ReadonlySet<string>>> = {
  inference: new Set([
    'inline::meta-reference', 'inline::meta-reference-quantized', 'inline::sentence-transformers', 'inline::transformers', 'inline::vllm',
    'remote::anthropic', 'remote::azure', 'remote::bedrock', 'remote::cerebras', 'remote::cerebras-openai-compat', 'remote::databricks',
    'remote::fireworks', 'remote::fireworks-openai-compat', 'remote::gemini', 'remote::groq', 'remote::groq-openai-compat',
    'remote::hf::endpoint', 'remote::hf::serverless', 'remote::llama-cpp-server', 'remote::llama-openai-compat', 'remote::nvidia',
    'remote::oci', 'remote::ollama', 'remote::openai', 'remote::passthrough', 'remote::runpod', 'remote::sambanova',
    'remote::sambanova-openai-compat', 'remote::tgi', 'remote::together', 'remote::together-openai-compat', 'remote::vertexai',
    'remote::vllm', 'remote::watsonx',
  ]),
}

/** llama-stack's top-level sections that troupe has no part for. */
const UNSERVED_SECTIONS = ['container_image', 'external_providers_dir', 'external_apis_dir', 'vector_stores', 'safety', 'connectors', 'telemetry']
/** llama-stack's `server` fields that troupe has no part for (its TLS fields are read as server.tls, its registry refresh interval as the reconciler's). */
const UNSERVED_SERVER_FIELDS = ['workers']
/** llama-stack's stores that no troupe actor uses. */
const UNSERVED_STORES = ['responses', 'connectors']
/** llama-stack's backend types that troupe has no store for. */
const UNSERVED_BACKEND_TYPES = ['kv_mongodb']
/** llama-stack's registered resources other than models, across its releases. */
const UNSERVED_RESOURCES = ['shields', 'vector_stores', 'vector_dbs', 'tool_groups', 'datasets', 'scoring_fns', 'benchmarks']

const SERVED_APIS: ReadonlySet<string> = new Set([...Object.keys(SERVED_PROVIDER_TYPES), ...SERVED_WITHOUT_PROVIDERS])

/** An API llama-stack has and troupe does not serve; an API neither knows is left for the provider registry to refuse. */
const isUnservedApi = (api: string): boolean => LLAMA_STACK_APIS.has(api) && !SERVED_APIS.has(api)

/** A provider type llama-stack has for an API troupe serves, that troupe does not run. */
function isUnservedProviderType(api: string, type: string): boolean {
  const served: readonly string[] | undefined = (SERVED_PROVIDER_TYPES as Record<string, readonly string[]>)[api]
  return served !== undefined && !served.includes(type) && (LLAMA_STACK_PROVIDER_TYPES[api]?.has(type) ?? false)
}

/** Whether skipping `value` loses anything: an empty list or map configures nothing. */
const hasContent = (value: unknown): boolean =>
  value !== null && value !== undefined && !(Array.isArray(value) && value.length === 0) && !(isPlainObject(value) && Object.keys(value).length === 0)

/** A provider_id that disables its provider (or a resource): empty after substitution, or `__disabled__`. */
const isDisabledId = (id: unknown): boolean => id === null || id === '' || id === '__disabled__'

/** Records one skipped item: its path, and why. */
type Skip = (path: string, message: string) => void

export interface ServedDocument {
  /** The document, env-substituted, with only what troupe serves (nulls still in: the caller drops them). */
  readonly input: Record<string, unknown>
  /** For each API, the position in the file of each provider kept. */
  readonly indexes: Map<string, number[]>
  /** The position in the file of each registered model kept. */
  readonly modelIndexes: number[]
  /** What was skipped: the path, and why (`the safety API is not served by troupe`). */
  readonly skipped: readonly ConfigIssue[]
}

/**
 * Keeps what troupe serves of a parsed document and substitutes env references in it. What is
 * skipped is not substituted, so the variables only it uses are not required, as for a provider
 * whose provider_id comes out empty (dropped without a word, as llama-stack does).
 */
export function selectServed(raw: Record<string, unknown>, env: Env, problems: EnvProblem[]): ServedDocument {
  const skipped: ConfigIssue[] = []
  const skip: Skip = (path, message) => void skipped.push({ path, message })
  const kept: Record<string, unknown> = { ...raw }

  if (Array.isArray(kept['apis'])) {
    kept['apis'] = kept['apis'].filter((api, i) => {
      if (typeof api !== 'string' || !isUnservedApi(api)) return true
      skip(`apis[${i}]`, `the ${api} API is not served by troupe`)
      return false
    })
  }
  const providers = selectProviders(raw['providers'], env, problems, skip)
  delete kept['providers']
  if (isPlainObject(kept['storage'])) kept['storage'] = selectStorage(kept['storage'], skip)
  if (isPlainObject(kept['server'])) {
    const server = { ...kept['server'] }
    for (const field of UNSERVED_SERVER_FIELDS) {
      if (hasContent(server[field])) skip(`server.${field}`, `server.${field} is not served by troupe`)
      delete server[field]
    }
    kept['server'] = server
  }
  if (isPlainObject(kept['logging']) && 'category_levels' in kept['logging']) {
    const { category_levels: levels, ...logging } = kept['logging']
    if (hasContent(levels)) skip('logging.category_levels', 'per-category log levels are not served by troupe (logging.level sets one level)')
    kept['logging'] = logging
  }
  if (isPlainObject(kept['registered_resources'])) kept['registered_resources'] = selectResources(kept['registered_resources'], skip)
  for (const section of UNSERVED_SECTIONS) {
    if (!(section in kept)) continue
    if (hasContent(kept[section])) skip(section, `the ${section} section is not served by troupe`)
    delete kept[section]
  }

  const input = substituteEnv(kept, env, '', problems) as Record<string, unknown>
  if (providers.list !== undefined) input['providers'] = providers.list
  const modelIndexes: number[] = []
  if (isPlainObject(input['registered_resources'])) input['registered_resources'] = selectModels(input['registered_resources'], providers.skippedIds, skip, modelIndexes)
  return { input: llamaStackSpellings(input, problems), indexes: providers.indexes, modelIndexes, skipped }
}

interface SelectedProviders {
  readonly list: unknown
  readonly indexes: Map<string, number[]>
  /** Ids of providers skipped, with why: what a model registered on one is skipped for. */
  readonly skippedIds: Map<string, string>
}

/**
 * Per API: providers whose provider_id resolves to empty or `__disabled__` are dropped, those of
 * an API or type troupe does not serve are skipped, and the rest are substituted. Positions in
 * the file are kept for error paths.
 */
function selectProviders(value: unknown, env: Env, problems: EnvProblem[], skip: Skip): SelectedProviders {
  const indexes = new Map<string, number[]>()
  const skippedIds = new Map<string, string>()
  if (!isPlainObject(value)) return { list: value === undefined ? undefined : substituteEnv(value, env, 'providers', problems), indexes, skippedIds }
  const list: Record<string, unknown> = {}
  for (const [api, entries] of Object.entries(value)) {
    if (!Array.isArray(entries)) {
      if (isUnservedApi(api)) skip(`providers.${api}`, `the ${api} API is not served by troupe`)
      else list[api] = substituteEnv(entries, env, `providers.${api}`, problems)
      continue
    }
    const kept: unknown[] = []
    const positions: number[] = []
    entries.forEach((entry, index) => {
      const path = `providers.${api}[${index}]`
      const fields = isPlainObject(entry) ? entry : {}
      const id = substituteEnv(fields['provider_id'], env, `${path}.provider_id`, problems)
      if (isPlainObject(entry) && isDisabledId(id)) return
      const reason = unservedProvider(api, substituteEnv(fields['provider_type'], env, `${path}.provider_type`, problems))
      if (reason !== undefined) {
        skip(path, reason)
        if (typeof id === 'string') skippedIds.set(id, reason)
        return
      }
      kept.push(substituteEnv(entry, env, path, problems))
      positions.push(index)
    })
    if (isUnservedApi(api)) continue
    list[api] = kept
    indexes.set(api, positions)
  }
  return { list, indexes, skippedIds }
}

/** Why a provider is skipped, if it is: troupe does not serve its API, or its type. */
function unservedProvider(api: string, type: unknown): string | undefined {
  if (isUnservedApi(api)) return `the ${api} API is not served by troupe${typeof type === 'string' ? ` (${type})` : ''}`
  if (typeof type === 'string' && isUnservedProviderType(api, type)) return `provider type ${type} is not served by troupe`
  return undefined
}

function selectStorage(storage: Record<string, unknown>, skip: Skip): Record<string, unknown> {
  const out = { ...storage }
  if (isPlainObject(storage['backends'])) {
    out['backends'] = Object.fromEntries(
      Object.entries(storage['backends']).filter(([name, backend]) => {
        const type = isPlainObject(backend) ? backend['type'] : undefined
        if (typeof type !== 'string' || !UNSERVED_BACKEND_TYPES.includes(type)) return true
        skip(`storage.backends.${name}`, `${type} backends are not served by troupe`)
        return false
      }),
    )
  }
  if (isPlainObject(storage['stores'])) {
    out['stores'] = Object.fromEntries(
      Object.entries(storage['stores']).filter(([name, ref]) => {
        if (!UNSERVED_STORES.includes(name)) return true
        if (hasContent(ref)) skip(`storage.stores.${name}`, `the ${name} store is not served by troupe`)
        return false
      }),
    )
  }
  return out
}

/** Registered resources other than models are skipped (before substitution: their variables are not required). */
function selectResources(resources: Record<string, unknown>, skip: Skip): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [kind, value] of Object.entries(resources)) {
    if (!UNSERVED_RESOURCES.includes(kind)) out[kind] = value
    else if (Array.isArray(value)) value.forEach((_, i) => skip(`registered_resources.${kind}[${i}]`, `${kind} are not served by troupe`))
    else if (hasContent(value)) skip(`registered_resources.${kind}`, `${kind} are not served by troupe`)
  }
  return out
}

/**
 * A model is skipped when its provider is disabled (its provider_id came out empty) or skipped,
 * as llama-stack skips it, and when registered with llama-stack's `all` alias, which troupe does
 * not resolve. `modelIndexes` gets the file position of each model kept.
 */
function selectModels(
  resources: Record<string, unknown>,
  skippedIds: ReadonlyMap<string, string>,
  skip: Skip,
  modelIndexes: number[],
): Record<string, unknown> {
  const models = resources['models']
  if (!Array.isArray(models)) return resources
  return {
    ...resources,
    models: models.filter((model: unknown, i) => {
      const reason = isPlainObject(model) && 'provider_id' in model ? unservedModel(model, skippedIds) : undefined
      if (reason === undefined) modelIndexes.push(i)
      else skip(`registered_resources.models[${i}]`, reason)
      return reason === undefined
    }),
  }
}

/** Why a registered model is skipped, if it is. */
function unservedModel(model: Record<string, unknown>, skippedIds: ReadonlyMap<string, string>): string | undefined {
  const id = model['provider_id']
  if (isDisabledId(id)) return 'its provider is disabled (provider_id is empty)'
  if (typeof id === 'string' && skippedIds.has(id)) return `its provider '${id}' is skipped: ${skippedIds.get(id)!}`
  if (id === 'all') return "provider_id 'all' (llama-stack's alias for the first active inference provider) is not served by troupe"
  if (model['model_type'] === 'rerank') return 'rerank models are not served by troupe'
  return undefined
}

/**
 * llama-stack's names for what troupe serves under its own: distro_name, server.tls_*,
 * server.registry_refresh_interval_seconds (how often it re-lists providers' models: the
 * reconciler's interval, unless troupe.reconciler sets one), an inline server.quota.kvstore, a
 * kv_redis host and port.
 */
function llamaStackSpellings(input: Record<string, unknown>, problems: EnvProblem[]): Record<string, unknown> {
  const { distro_name: distroName, ...out } = quotaStoreAsBackend(input, problems)
  // llama-stack renamed image_name to distro_name; troupe shows it as image_name.
  if (distroName !== undefined && (out['image_name'] === undefined || out['image_name'] === null)) out['image_name'] = distroName
  if (isPlainObject(out['server']) && out['server']['registry_refresh_interval_seconds'] !== undefined) {
    const { registry_refresh_interval_seconds: seconds, ...server } = out['server']
    const interval = Number(seconds)
    // Anything but a positive number stays where it was, for the schema to name as unknown.
    if (seconds !== null && seconds !== '' && Number.isFinite(interval) && interval > 0) {
      out['server'] = server
      const troupe = isPlainObject(out['troupe']) ? out['troupe'] : {}
      const reconciler = isPlainObject(troupe['reconciler']) ? troupe['reconciler'] : {}
      if (reconciler['interval_ms'] === undefined) out['troupe'] = { ...troupe, reconciler: { ...reconciler, interval_ms: Math.round(interval * 1000) } }
    }
  }
  if (isPlainObject(out['server']) && out['server']['tls'] === undefined && typeof out['server']['tls_certfile'] === 'string') {
    const { tls_certfile: certfile, tls_keyfile: keyfile, tls_cafile: cafile, ...server } = out['server']
    out['server'] = { ...server, tls: { certfile, keyfile, ...(cafile === undefined || cafile === null ? {} : { cafile }) } }
  }
  const backends = isPlainObject(out['storage']) ? out['storage']['backends'] : undefined
  if (isPlainObject(backends)) {
    const mapped = Object.fromEntries(Object.entries(backends).map(([name, backend]) => [name, redisByUrl(backend)]))
    out['storage'] = { ...(out['storage'] as Record<string, unknown>), backends: mapped }
  }
  return out
}

/** llama-stack's kv_redis has host and port (defaults localhost:6379); troupe's, a url. */
function redisByUrl(backend: unknown): unknown {
  if (!isPlainObject(backend) || backend['type'] !== 'kv_redis' || backend['url'] !== undefined) return backend
  if (!('host' in backend) && !('port' in backend)) return backend
  const { host, port, ...rest } = backend
  return { ...rest, url: `redis://${String(host ?? 'localhost')}:${String(port ?? 6379)}` }
}

/** The backend an inline server.quota.kvstore becomes: a name no one writes by chance, and that says where it came from. */
export const QUOTA_BACKEND = 'server.quota.kvstore'

/** llama-stack's inline kvstore types, before and after it prefixed them with kv_, as the backend types troupe serves them with. */
const INLINE_KV_TYPES: Readonly<Record<string, string>> = {
  sqlite: 'kv_sqlite',
  kv_sqlite: 'kv_sqlite',
  redis: 'kv_redis',
  kv_redis: 'kv_redis',
  postgres: 'kv_postgres',
  kv_postgres: 'kv_postgres',
}

/** llama-stack's defaults for an inline kvstore's fields, where troupe's backend of the same type has others. */
const INLINE_KV_DEFAULTS: Readonly<Record<string, Readonly<Record<string, unknown>>>> = {
  kv_redis: { host: 'localhost', port: 6379 },
  kv_postgres: { host: 'localhost', port: 5432, db: 'llamastack', table_name: 'llamastack_kvstore' },
}

/**
 * llama-stack releases before `storage.backends` wrote server.quota.kvstore inline (`{ type:
 * sqlite, db_path, namespace }`); since then it names a backend and a namespace, as troupe does.
 * An inline one becomes the backend QUOTA_BACKEND (a sqlite one served by LMDB beside its file,
 * as every kv_sqlite backend is) and a reference to it; its namespace stays with the reference
 * (`quota` when it has none). A type troupe has no backend for (mongodb) is a problem at the path.
 */
function quotaStoreAsBackend(input: Record<string, unknown>, problems: EnvProblem[]): Record<string, unknown> {
  const server = input['server']
  const quota = isPlainObject(server) ? server['quota'] : undefined
  const kvstore = isPlainObject(quota) ? quota['kvstore'] : undefined
  if (!isPlainObject(server) || !isPlainObject(quota) || !isPlainObject(kvstore) || !('type' in kvstore)) return input
  const { type, namespace, ...fields } = kvstore
  const served = typeof type === 'string' ? INLINE_KV_TYPES[type] : undefined
  const storage = isPlainObject(input['storage']) ? input['storage'] : {}
  const backends = isPlainObject(storage['backends']) ? storage['backends'] : {}
  const refuse = (path: string, message: string): Record<string, unknown> => {
    problems.push({ path, message })
    // The rest of the section is not checked: the problem above says what to change.
    const { quota: _refused, ...rest } = server
    return { ...input, server: rest }
  }
  if (served === undefined) {
    return refuse('server.quota.kvstore.type', `${JSON.stringify(type)} kvstores are not served by troupe: use sqlite, redis or postgres, or name a kv_* backend of storage.backends (kvstore: { backend, namespace })`)
  }
  if (QUOTA_BACKEND in backends) return refuse('server.quota.kvstore', `an inline kvstore is served as the backend '${QUOTA_BACKEND}', a name storage.backends already uses: name that backend here instead (kvstore: { backend, namespace })`)
  const backend = { ...INLINE_KV_DEFAULTS[served], ...fields, type: served }
  return {
    ...input,
    storage: { ...storage, backends: { ...backends, [QUOTA_BACKEND]: backend } },
    server: { ...server, quota: { ...quota, kvstore: { backend: QUOTA_BACKEND, namespace: typeof namespace === 'string' && namespace !== '' ? namespace : 'quota' } } },
  }
}
