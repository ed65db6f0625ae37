import { readFileSync } from 'node:fs'
import type { Logger } from 'pino'
import { actorNodes, type ActorRef, type ActorSystem } from '../actor/index.js'
import { ConfigError, type ConfigIssue, type LoadedConfig } from '../config/index.js'
import { ApiServer, type TlsFiles } from '../server/server.js'
import { providerActorName, resolveProviders, type ProviderArgs, type ResolvedProvider } from '../stack/providers.js'
import { startStores, storeRef } from '../stack/stores.js'
import { resolveWorkflows, startWorkflows, type ResolvedWorkflow } from '../stack/workflows.js'
import { modelsRoutingTable, type ModelsMessage, type ProviderEntry } from '../../actors/routing/models.js'
import { conversations, type ConversationsMessage } from '../../actors/stores/conversations.js'
import { inferenceStore, type InferenceStoreMessage } from '../../actors/stores/inference-store.js'
import type { InferenceMessage } from '../../actors/providers/inference/protocol.js'
import type { KvMessage, TableMessage } from '../../actors/stores/protocol.js'

const BACKOFF = { minMs: 100, maxMs: 5000, randomFactor: 0.2 }

export interface RunningStack {
  readonly server: ApiServer
  /** Where the HTTP API listens. */
  readonly url: string
  readonly models: ActorRef<ModelsMessage>
  /** Stops HTTP intake, then the actors in reverse start order (stores last, after their writes flushed). */
  stop(): Promise<void>
}

/** What checking a config yields beyond its schema, for starting the stack from it. */
export interface CheckedStack {
  /** In dependency order. */
  readonly providers: ResolvedProvider[]
  /** The PEM files `server.tls` names, read once here. */
  readonly tls: TlsFiles | undefined
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
export function checkStack(loaded: LoadedConfig): CheckedStack {
  const providers = resolveProviders(loaded)
  const ids = new Set(providers.map(p => p.providerId))
  const issues: ConfigIssue[] = []
  loaded.config.registered_resources.models.forEach((model, index) => {
    if (!ids.has(model.provider_id)) {
      issues.push({ path: `registered_resources.models[${index}].provider_id`, message: `no provider '${model.provider_id}' is configured (configured: ${[...ids].join(', ') || 'none'})` })
    }
  })
  if (loaded.config.server.auth !== undefined) {
    issues.push({
      path: 'server.auth',
      message: 'authentication is not built yet, and troupe will not serve unauthenticated a config that asks for it: remove server.auth, or put troupe behind a proxy that authenticates',
    })
  }
  const tls = readTls(loaded.config.server.tls)
  issues.push(...tls.issues)
  if (issues.length > 0) throw new ConfigError(issues, loaded.source)
  return { providers, tls: tls.files }
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
    checked = checkStack(loaded)
  } catch (error) {
    collect(error)
  }
  const workflows = await resolveWorkflows(loaded).catch(collect)
  if (issues.length > 0 || checked === undefined || workflows === undefined) throw new ConfigError(issues, loaded.source)
  return { ...checked, workflows }
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
 * Starts the stack in dependency order: store actors, providers, routing tables and the API
 * services, the workflows, then HTTP. Logs one line per actor started and a final "listening" line.
 */
export async function startStack(system: ActorSystem, loaded: LoadedConfig, log: Logger, options: { port?: number; host?: string } = {}): Promise<RunningStack> {
  const { config } = loaded
  const { providers, tls, workflows } = await checkStackWithWorkflows(loaded)
  const drainMs = config.troupe.drain_timeout_ms

  await startStores(system, config)
  await system.supervise(
    {
      strategy: 'one_for_one',
      intensity: 5,
      periodMs: 10_000,
      backoff: BACKOFF,
      children: providers.map(provider => ({
        id: providerActorName(provider.providerId),
        name: providerActorName(provider.providerId),
        behavior: provider.spec.behavior,
        args: { providerId: provider.providerId, config: provider.config } satisfies ProviderArgs,
        placement: 'pool' as const,
        restart: 'permanent' as const,
        shutdownMs: drainMs,
      })),
    },
    { id: 'providers' },
  )

  const entries: ProviderEntry[] = []
  for (const provider of providers) {
    entries.push({ providerId: provider.providerId, providerType: provider.spec.type, api: provider.api, ref: await mustLookup<InferenceMessage>(system, providerActorName(provider.providerId)) })
  }
  const { metadata, inference, conversations: conversationsRef } = config.storage.stores
  const metadataArgs = metadata === undefined ? undefined : { store: await storeRef<KvMessage>(system, metadata.backend), namespace: metadata.namespace }
  if (metadataArgs === undefined) log.warn('no storage.stores.metadata: registered models are kept in memory only')

  await system.supervise(
    {
      strategy: 'one_for_one',
      intensity: 5,
      periodMs: 10_000,
      backoff: BACKOFF,
      children: [
        {
          id: 'routing:models',
          name: 'routing:models',
          behavior: modelsRoutingTable,
          args: { providers: entries, models: config.registered_resources.models, ...(metadataArgs === undefined ? {} : { metadata: metadataArgs }) },
          // Every request reads the table: on the HTTP thread it costs no hop.
          placement: 'main' as const,
          restart: 'permanent' as const,
          shutdownMs: drainMs,
        },
        ...(inference === undefined
          ? []
          : [
              {
                id: 'inference-store',
                name: 'inference-store',
                behavior: inferenceStore,
                args: { store: await storeRef<TableMessage>(system, inference.backend), table: inference.table_name, maxQueue: inference.max_write_queue_size, writers: inference.num_writers },
                placement: 'main' as const,
                restart: 'permanent' as const,
                shutdownMs: drainMs,
              },
            ]),
        ...(conversationsRef === undefined
          ? []
          : [
              {
                id: 'conversations',
                name: 'conversations',
                behavior: conversations,
                args: { store: await storeRef<TableMessage>(system, conversationsRef.backend), table: conversationsRef.table_name },
                placement: 'main' as const,
                restart: 'permanent' as const,
                shutdownMs: drainMs,
              },
            ]),
      ],
    },
    { id: 'apis' },
  )

  // Workflows call models through the routing table, so they start after the 'apis' subtree and stop before it.
  const models = await mustLookup<ModelsMessage>(system, 'routing:models')
  const workflowEntries = await startWorkflows(system, config, workflows, models)

  const snapshot = await system.inspect()
  for (const actor of actorNodes(snapshot.root)) log.info({ actor: actor.id, placement: actor.placement, thread: actor.thread, status: actor.status }, 'actor started')

  const server = new ApiServer({
    system,
    models,
    providers: new Map(entries.map(entry => [entry.providerId, entry])),
    inferenceStore: inference === undefined ? undefined : await mustLookup<InferenceStoreMessage>(system, 'inference-store'),
    conversations: conversationsRef === undefined ? undefined : await mustLookup<ConversationsMessage>(system, 'conversations'),
    imageName: config.image_name,
    version: packageVersion(),
    log: log.child({ component: 'http' }),
    cors: config.server.cors,
    maxBodyBytes: config.server.max_body_bytes,
    tls,
    prewakeInference: prewakeAll(entries.filter(entry => entry.api === 'inference').map(entry => entry.ref)),
    workflows: workflowEntries,
    workflowsContextSecret: config.server.workflows_context_secret,
  })
  const url = await server.listen(options.port ?? config.server.port, options.host ?? config.server.host)
  log.info({ url }, `listening on ${url}`)
  return {
    server,
    url,
    models,
    stop: async () => {
      await server.close()
      await system.shutdown()
    },
  }
}

/** Prewakes the threads of these actors; undefined when there are none. */
function prewakeAll(refs: readonly ActorRef[]): (() => void) | undefined {
  if (refs.length === 0) return undefined
  return () => {
    for (const ref of refs) ref.prewake()
  }
}

async function mustLookup<M>(system: ActorSystem, name: string): Promise<ActorRef<M>> {
  const ref = await system.lookup<M>(name)
  if (ref === undefined) throw new Error(`actor '${name}' did not start`)
  return ref
}


/** troupe's version from its package.json: two folders up from src/supervisor (tests), three from dist/src/supervisor. */
function packageVersion(): string {
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
