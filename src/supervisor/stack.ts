import { readFileSync } from 'node:fs'
import type { Logger } from 'pino'
import type { ActorRef, ActorSystem } from '../actor/index.js'
import { ConfigError, formatPath, type ConfigIssue, type LoadedConfig } from '../config/index.js'
import { parseAccessPolicy } from '../server/access-policy.js'
import { authProviderSchema, type AuthProviderConfig, type AuthSettings } from '../server/auth.js'
import { parseRoutePolicy } from '../server/route-policy.js'
import type { ApiServer, TlsFiles } from '../server/server.js'
import { loadProviderModules, resolveProviders, type LoadedProviderModule, type ResolvedProvider } from '../stack/providers.js'
import { resolveWorkflows, type ResolvedWorkflow } from '../stack/workflows.js'
import type { ModelsMessage } from '../../actors/routing/models.js'
import { StackSupervisor, type ReloadReport, type ReloadTrigger, type StackOptions } from './stack-supervisor.js'

export interface RunningStack {
  readonly server: ApiServer
  /** Where the HTTP API listens (a reload that moves the listener changes it). */
  readonly url: string
  readonly models: ActorRef<ModelsMessage>
  /** The owner of the running config: its generation, hash and last reload. */
  readonly supervisor: StackSupervisor
  /** Re-reads the config file and applies the difference (see StackSupervisor.reload). */
  reload(trigger?: ReloadTrigger): Promise<ReloadReport>
  /** Stops HTTP intake, drains under troupe.drain_timeout_ms, then the actors in reverse start order (stores last, after their writes flushed). */
  stop(): Promise<void>
}

/** What checking a config yields beyond its schema, for starting the stack from it. */
export interface CheckedStack {
  /** In dependency order. */
  readonly providers: ResolvedProvider[]
  /** The PEM files `server.tls` names, read once here. */
  readonly tls: TlsFiles | undefined
  /** server.auth: its provider_config checked, its policies compiled; undefined serves without authentication or rules. */
  readonly auth: AuthSettings | undefined
}

/** A checked stack with its workflows loaded. */
export interface CheckedStackWithWorkflows extends CheckedStack {
  readonly workflows: readonly ResolvedWorkflow[]
}

/**
 * Everything a config checks beyond its schema: provider types, their configs and dependency
 * order, the models registered against them, server.auth and the server.tls files. Throws
 * ConfigError with every problem.
 */
export function checkStack(loaded: LoadedConfig, modules: ReadonlyMap<string, LoadedProviderModule> = new Map()): CheckedStack {
  const providers = resolveProviders(loaded, undefined, modules)
  const ids = new Set(providers.map(p => p.providerId))
  const issues: ConfigIssue[] = []
  loaded.config.registered_resources.models.forEach((model, index) => {
    if (!ids.has(model.provider_id)) {
      issues.push({ path: `registered_resources.models[${index}].provider_id`, message: `no provider '${model.provider_id}' is configured (configured: ${[...ids].join(', ') || 'none'})` })
    }
  })
  const auth = checkAuth(loaded.config.server.auth, issues)
  const tls = readTls(loaded.config.server.tls)
  issues.push(...tls.issues)
  if (issues.length > 0) throw new ConfigError(issues, loaded.source)
  return { providers, tls: tls.files, auth }
}

/**
 * checkStack, then the workflow checks (async: they import each workflow's module), with the
 * problems of both in one ConfigError, so that validate reports every error at once.
 */
export async function checkStackWithWorkflows(loaded: LoadedConfig): Promise<CheckedStackWithWorkflows> {
  const issues: ConfigIssue[] = []
  const collect = (error: unknown): undefined => {
    if (!(error instanceof ConfigError)) throw error
    issues.push(...error.issues)
    return undefined
  }
  let checked: CheckedStack | undefined
  try {
    checked = checkStack(loaded, await loadProviderModules(loaded))
  } catch (error) {
    collect(error)
  }
  const workflows = await resolveWorkflows(loaded).catch(collect)
  if (issues.length > 0 || checked === undefined || workflows === undefined) throw new ConfigError(issues, loaded.source)
  return { ...checked, workflows }
}

/**
 * server.auth: its provider_config checked by type and its policies compiled, each problem at
 * its path. As in llama-stack, route rules may stand alone, without authentication; access
 * rules may not (without a caller every action is allowed, so they would hold nobody), nor
 * may an auth section with neither.
 */
function checkAuth(auth: LoadedConfig['config']['server']['auth'], issues: ConfigIssue[]): AuthSettings | undefined {
  if (auth === undefined) return undefined
  const routePolicy = parseRoutePolicy(auth.route_policy, 'server.auth.route_policy', issues)
  const accessPolicy = parseAccessPolicy(auth.access_policy, 'server.auth.access_policy', issues)
  let provider: AuthProviderConfig | undefined
  if (auth.provider_config === undefined) {
    if (auth.access_policy.length > 0) issues.push({ path: 'server.auth.access_policy', message: 'access rules need a provider_config: without authentication there is no caller to hold to them, and every action is allowed' })
    else if (auth.route_policy.length === 0) issues.push({ path: 'server.auth.provider_config', message: 'server.auth needs a provider_config (oauth2_token, custom, upstream_header or api_keys), or route_policy rules alone' })
  } else {
    const parsed = authProviderSchema.safeParse(auth.provider_config)
    if (parsed.success) provider = parsed.data
    else for (const issue of parsed.error.issues) issues.push({ path: `server.auth.provider_config${issue.path.length ? `.${formatPath(issue.path)}` : ''}`, message: issue.message })
  }
  if (accessPolicy === undefined || (auth.provider_config !== undefined && provider === undefined)) return undefined
  return { provider, routePolicy, accessPolicy }
}

type TlsConfig = LoadedConfig['config']['server']['tls']

/** The PEM files `server.tls` names, read; a file that cannot be read is an issue naming its path. */
function readTls(tls: TlsConfig): { files: TlsFiles | undefined; issues: ConfigIssue[] } {
  if (tls === undefined) return { files: undefined, issues: [] }
  const issues: ConfigIssue[] = []
  const read = (field: 'certfile' | 'keyfile' | 'cafile', path: string): Buffer => {
    try {
      return readFileSync(path)
    } catch (error) {
      issues.push({ path: `server.tls.${field}`, message: `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}` })
      return Buffer.alloc(0)
    }
  }
  const files: TlsFiles = { cert: read('certfile', tls.certfile), key: read('keyfile', tls.keyfile), ...(tls.cafile === undefined ? {} : { ca: read('cafile', tls.cafile) }) }
  return { files: issues.length === 0 ? files : undefined, issues }
}

/**
 * Starts the stack from the plan of its config: store actors, providers, routing tables and the
 * API services, the workflows, then HTTP. Logs one line per actor started and a final
 * "listening" line. The StackSupervisor it returns owns the config from then on (reload, inspect).
 */
export async function startStack(system: ActorSystem, loaded: LoadedConfig, log: Logger, options: StackOptions = {}): Promise<RunningStack> {
  const stack = await StackSupervisor.start(system, loaded, log, options)
  return {
    get server() {
      return stack.server
    },
    get url() {
      return stack.url
    },
    models: stack.models,
    supervisor: stack,
    reload: trigger => stack.reload(trigger),
    stop: () => stack.stop(),
  }
}

/** troupe's version from its package.json: two folders up from src/supervisor (tests), three from dist/src/supervisor. */
export function packageVersion(): string {
  for (const candidate of ['../../package.json', '../../../package.json']) {
    let text: string
    try {
      text = readFileSync(new URL(candidate, import.meta.url), 'utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue
      throw error
    }
    const pkg = JSON.parse(text) as { name?: string; version?: string }
    if (pkg.name === 'troupe') return pkg.version ?? '0.0.0'
  }
  return '0.0.0'
}
