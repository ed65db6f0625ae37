import { resolve as resolvePath } from 'node:path'
import { z } from 'zod'
import { isBehavior, type Behavior } from '../actor/index.js'
import { ConfigError, formatPath, SERVED_PROVIDER_TYPES, type ConfigIssue, type LoadedConfig, type ServedProviderType } from '../config/index.js'
import { ollamaProvider } from '../../actors/providers/inference/ollama.js'
import { openaiProvider } from '../../actors/providers/inference/openai.js'
import { importModule } from './modules.js'
import { OPENAI_COMPATIBLE, ollamaLlamaStackConfigSchema, openAICompatibleConfigSchema, type OpenAICompatibleType } from './provider-configs.js'

/** One provider implementation: what API it serves, how it is configured, what it needs. */
export interface ProviderSpec {
  /** `inline::name` runs in troupe; `remote::name` is an adapter to a server. */
  readonly type: string
  readonly api: string
  readonly description: string
  /** Validates and defaults the provider's `config` section. */
  readonly configSchema: z.ZodType
  /** APIs whose providers this one calls: they start before it. */
  readonly dependsOn: readonly string[]
  readonly behavior: Behavior
}

type BuiltinSpec = Omit<ProviderSpec, 'type' | 'api'>

const openAICompatible = (type: OpenAICompatibleType): BuiltinSpec => ({
  description: OPENAI_COMPATIBLE[type].description,
  configSchema: openAICompatibleConfigSchema(type),
  dependsOn: [],
  behavior: openaiProvider,
})

/** One spec for each type troupe serves: the mapped type makes a missing or extra one a type error. */
const BUILTIN_SPECS: { readonly [T in ServedProviderType]: BuiltinSpec } = {
  'remote::openai': openAICompatible('remote::openai'),
  'remote::ollama': { description: "Ollama's own API.", configSchema: ollamaLlamaStackConfigSchema, dependsOn: [], behavior: ollamaProvider },
  'remote::vllm': openAICompatible('remote::vllm'),
  'remote::together': openAICompatible('remote::together'),
  'remote::fireworks': openAICompatible('remote::fireworks'),
  'remote::groq': openAICompatible('remote::groq'),
  'remote::cerebras': openAICompatible('remote::cerebras'),
  'remote::sambanova': openAICompatible('remote::sambanova'),
  'remote::nvidia': openAICompatible('remote::nvidia'),
  'remote::azure': openAICompatible('remote::azure'),
  'remote::llama-openai-compat': openAICompatible('remote::llama-openai-compat'),
  'remote::runpod': openAICompatible('remote::runpod'),
  'remote::llama-cpp-server': openAICompatible('remote::llama-cpp-server'),
}

export const BUILTIN_PROVIDERS: readonly ProviderSpec[] = Object.entries(SERVED_PROVIDER_TYPES).flatMap(([api, types]) =>
  types.map((type: ServedProviderType): ProviderSpec => ({ type, api, ...BUILTIN_SPECS[type] })),
)

/** A configured provider, checked against its spec. */
export interface ResolvedProvider {
  readonly providerId: string
  readonly api: string
  readonly spec: ProviderSpec
  /** The config section after its schema's defaults. */
  readonly config: unknown
  /** Where it is in the file: `providers.inference[1]`. */
  readonly path: string
}

/** The arguments every provider behaviour is spawned with. */
export interface ProviderArgs {
  readonly providerId: string
  readonly config: unknown
}

/**
 * The name a provider's actor is registered under. Ids are unique per API only (as in
 * llama-stack); every API troupe runs providers for is the inference API, so the id alone names
 * the actor. resolveProviders refuses a registry that would run two providers of one id.
 */
export const providerActorName = (providerId: string): string => `provider:${providerId}`

/**
 * An external provider implementation, from `providers[].module`: the module's behaviour (its
 * default export, or its one exported behaviour), which must answer the provider protocol of
 * its API (actors/providers/inference/protocol.ts), and the schema of its config when it
 * exports one as `configSchema`.
 */
export interface ProviderModule {
  readonly behavior: Behavior
  readonly configSchema?: z.ZodType
}

/** A provider module as loaded: its implementation, or why it has none. */
export type LoadedProviderModule = ProviderModule | { readonly problem: string }

/**
 * Imports the module of every provider that names one, by the provider's path in the file.
 * Importing is the only way to know it holds a behaviour, hence async, and apart from
 * resolveProviders, which reports each problem at the provider's `module` with the others.
 */
export async function loadProviderModules(loaded: LoadedConfig): Promise<Map<string, LoadedProviderModule>> {
  const configFile = resolvePath(loaded.source)
  const modules = new Map<string, LoadedProviderModule>()
  for (const [api, list] of Object.entries(loaded.config.providers)) {
    for (const [index, provider] of list.entries()) {
      if (provider.module === undefined) continue
      const path = providerPath(loaded, api, index)
      const imported = await importModule(provider.module, configFile)
      if ('problem' in imported) {
        modules.set(path, imported)
        continue
      }
      const exports = imported.module
      const behaviours = Object.keys(exports).filter(key => isBehavior(exports[key]))
      const chosen = isBehavior(exports['default']) ? 'default' : behaviours.length === 1 ? behaviours[0] : undefined
      if (chosen === undefined) {
        const message =
          behaviours.length === 0
            ? `${provider.module} exports no behaviour: export one made with defineBehavior, answering the ${api} provider protocol`
            : `${provider.module} exports several behaviours (${behaviours.join(', ')}): make the provider's its default export`
        modules.set(path, { problem: message })
        continue
      }
      const schema = exports['configSchema']
      const configSchema = schema instanceof z.ZodType ? schema : undefined
      modules.set(path, { behavior: exports[chosen] as Behavior, ...(configSchema === undefined ? {} : { configSchema }) })
    }
  }
  return modules
}

const providerPath = (loaded: LoadedConfig, api: string, index: number): string => `providers.${api}[${loaded.providerIndexes.get(api)?.[index] ?? index}]`

/** A config troupe cannot check: a module provider of a type it does not know, without a configSchema export. */
const ANY_CONFIG = z.record(z.string(), z.unknown())

/**
 * Checks every configured provider against the registry (known type, the API it is listed
 * under, its own config schema) and orders them so each starts after the providers of the APIs
 * it depends on. A provider with a `module` runs that module's behaviour (`modules`, from
 * loadProviderModules), under any type name; its config is checked by the module's schema,
 * else by its type's if troupe knows the type. Every problem is reported at once, with its
 * path; a missing dependency or a cycle names the providers involved.
 */
export function resolveProviders(loaded: LoadedConfig, registry: readonly ProviderSpec[] = BUILTIN_PROVIDERS, modules: ReadonlyMap<string, LoadedProviderModule> = new Map()): ResolvedProvider[] {
  const byType = new Map(registry.map(spec => [spec.type, spec]))
  const issues: ConfigIssue[] = []
  const resolved: ResolvedProvider[] = []
  for (const [api, list] of Object.entries(loaded.config.providers)) {
    list.forEach((provider, index) => {
      const path = providerPath(loaded, api, index)
      const builtin = byType.get(provider.provider_type)
      let spec = builtin
      if (provider.module !== undefined) {
        const module = modules.get(path)
        if (module === undefined || 'problem' in module) {
          const message = module?.problem ?? `${provider.module} was not loaded: provider modules are imported when the whole stack is checked (checkStackWithWorkflows)`
          issues.push({ path: `${path}.module`, message })
          return
        }
        const known = builtin?.api === api ? builtin : undefined
        spec = {
          type: provider.provider_type,
          api,
          description: `${provider.provider_type} from ${provider.module}`,
          configSchema: module.configSchema ?? known?.configSchema ?? ANY_CONFIG,
          dependsOn: known?.dependsOn ?? [],
          behavior: module.behavior,
        }
      }
      if (spec === undefined) {
        const known = registry.filter(s => s.api === api).map(s => s.type)
        issues.push({ path: `${path}.provider_type`, message: `unknown provider type '${provider.provider_type}' (for ${api}: ${known.length ? known.join(', ') : 'none'})` })
        return
      }
      if (spec.api !== api) {
        issues.push({ path: `${path}.provider_type`, message: `${spec.type} serves the ${spec.api} API, not ${api}` })
        return
      }
      const parsed = spec.configSchema.safeParse(provider.config)
      if (!parsed.success) {
        for (const issue of parsed.error.issues) issues.push({ path: `${path}.config${issue.path.length ? `.${formatPath(issue.path)}` : ''}`, message: issue.message })
        return
      }
      resolved.push({ providerId: provider.provider_id, api, spec, config: parsed.data, path })
    })
  }
  const actors = new Map<string, ResolvedProvider>()
  for (const provider of resolved) {
    const other = actors.get(provider.providerId)
    if (other !== undefined) {
      issues.push({ path: `${provider.path}.provider_id`, message: `provider_id '${provider.providerId}' is also used by ${other.path} (${other.api}): providers that troupe runs, of whatever API, need ids of their own` })
    }
    actors.set(provider.providerId, provider)
  }
  if (issues.length > 0) throw new ConfigError(issues, loaded.source)
  return dependencyOrder(resolved, loaded.source)
}

function dependencyOrder(providers: readonly ResolvedProvider[], source: string): ResolvedProvider[] {
  const byApi = new Map<string, ResolvedProvider[]>()
  for (const provider of providers) byApi.set(provider.api, [...(byApi.get(provider.api) ?? []), provider])
  const issues: ConfigIssue[] = []
  for (const provider of providers) {
    for (const api of provider.spec.dependsOn) {
      if (!byApi.has(api)) issues.push({ path: provider.path, message: `provider '${provider.providerId}' (${provider.spec.type}) needs the ${api} API, which no provider serves` })
    }
  }
  if (issues.length > 0) throw new ConfigError(issues, source)

  const ordered: ResolvedProvider[] = []
  const state = new Map<ResolvedProvider, 'visiting' | 'done'>()
  const visit = (provider: ResolvedProvider, trail: ResolvedProvider[]): void => {
    if (state.get(provider) === 'done') return
    if (state.get(provider) === 'visiting') {
      const cycle = [...trail.slice(trail.indexOf(provider)), provider].map(p => `${p.providerId} (${p.api})`).join(' -> ')
      throw new ConfigError([{ path: provider.path, message: `providers depend on each other in a cycle: ${cycle}` }], source)
    }
    state.set(provider, 'visiting')
    for (const api of provider.spec.dependsOn) for (const dependency of byApi.get(api)!) visit(dependency, [...trail, provider])
    state.set(provider, 'done')
    ordered.push(provider)
  }
  for (const provider of providers) visit(provider, [])
  return ordered
}
