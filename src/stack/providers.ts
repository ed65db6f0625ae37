import type { z } from 'zod'
import type { Behavior } from '../actor/index.js'
import { ConfigError, formatPath, type ConfigIssue, type LoadedConfig } from '../config/index.js'
import { ollamaConfigSchema, ollamaProvider } from '../../actors/providers/inference/ollama.js'
import { openaiConfigSchema, openaiProvider } from '../../actors/providers/inference/openai.js'

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

export const BUILTIN_PROVIDERS: readonly ProviderSpec[] = [
  {
    type: 'remote::openai',
    api: 'inference',
    description: 'Any OpenAI-compatible server: OpenAI, vLLM, llama.cpp server.',
    configSchema: openaiConfigSchema,
    dependsOn: [],
    behavior: openaiProvider,
  },
  {
    type: 'remote::ollama',
    api: 'inference',
    description: "Ollama's own API.",
    configSchema: ollamaConfigSchema,
    dependsOn: [],
    behavior: ollamaProvider,
  },
]

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

/** The name a provider's actor is registered under. */
export const providerActorName = (providerId: string): string => `provider:${providerId}`

/**
 * Checks every configured provider against the registry (known type, the API it is listed
 * under, its own config schema) and orders them so each starts after the providers of the APIs
 * it depends on. Every problem is reported at once, with its path; a missing dependency or a
 * cycle names the providers involved.
 */
export function resolveProviders(loaded: LoadedConfig, registry: readonly ProviderSpec[] = BUILTIN_PROVIDERS): ResolvedProvider[] {
  const byType = new Map(registry.map(spec => [spec.type, spec]))
  const issues: ConfigIssue[] = []
  const resolved: ResolvedProvider[] = []
  for (const [api, list] of Object.entries(loaded.config.providers)) {
    list.forEach((provider, index) => {
      const path = `providers.${api}[${loaded.providerIndexes.get(api)?.[index] ?? index}]`
      const spec = byType.get(provider.provider_type)
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
