import type { ActorChildSpec, SupervisorSpec } from '../actor/index.js'
import { backendFamily, type ConfigChange, type StackConfig } from '../config/index.js'
import { storeActorName } from './stores.js'
import { providerActorName } from './providers.js'
import { workflowActorName } from './workflows.js'

/**
 * The stack as a tree of actors, planned from a config alone: which actors run, under which
 * subtree, what each depends on, and which config paths each owns. Start runs from it; a reload
 * plans the new config and compares: the owners of changed paths are what it touches.
 */

/** The subtrees, in start order; they stop in reverse. */
export const SUBTREES = ['stores', 'providers', 'apis', 'runtime', 'workflows'] as const
export type Subtree = (typeof SUBTREES)[number]

/**
 * A subtree's supervisor: one_for_one, since one actor's crash says nothing about its siblings;
 * each restarted on its own after backoff, the subtree given up past 5 restarts in 10 s.
 */
export function subtreeSpec(subtree: Subtree, children: readonly ActorChildSpec[]): SupervisorSpec {
  return { strategy: 'one_for_one', intensity: 5, periodMs: 10_000, backoff: subtree === 'workflows' ? WORKFLOW_BACKOFF : BACKOFF, children }
}

const BACKOFF = { minMs: 100, maxMs: 5000, randomFactor: 0.2 }
/** A first restart after a worker died comes at once: that workflow actor's in-flight runs wait on it. */
const WORKFLOW_BACKOFF = { minMs: 5, maxMs: 5000, randomFactor: 0.2 }

export interface PlannedActor {
  /** The actor's child id and name. */
  readonly id: string
  readonly subtree: Subtree
  /** Ids of the actors it uses, which start before it and are restarted under it. */
  readonly dependsOn: readonly string[]
}

export interface StackPlan {
  /** In start order: every actor after the ones it depends on. */
  readonly actors: readonly PlannedActor[]
}

export const ROUTING_TABLE = 'routing:models'
export const INFERENCE_STORE = 'inference-store'
export const CONVERSATIONS = 'conversations'
export const RECONCILER = 'reconciler'

/**
 * `providerOrder`: provider ids in dependency order (resolveProviders' order: a provider after
 * those of the APIs it calls); without it, the file's order.
 */
export function plan(config: StackConfig, providerOrder?: readonly string[]): StackPlan {
  const { stores } = config.storage
  const storeOf = (ref: { backend: string } | undefined): string[] => (ref === undefined ? [] : [storeActorName(ref.backend)])
  const providerIds = providerOrder ?? Object.values(config.providers).flatMap(list => list.map(p => p.provider_id))
  const actors: PlannedActor[] = [
    ...Object.keys(config.storage.backends).map(name => ({ id: storeActorName(name), subtree: 'stores' as const, dependsOn: [] })),
    ...providerIds.map(id => ({ id: providerActorName(id), subtree: 'providers' as const, dependsOn: [] })),
    { id: ROUTING_TABLE, subtree: 'apis', dependsOn: storeOf(stores.metadata) },
    ...(stores.inference === undefined ? [] : [{ id: INFERENCE_STORE, subtree: 'apis' as const, dependsOn: storeOf(stores.inference) }]),
    ...(stores.conversations === undefined ? [] : [{ id: CONVERSATIONS, subtree: 'apis' as const, dependsOn: storeOf(stores.conversations) }]),
    // It publishes to the routing table through the table's supervised ref, which outlives the
    // table's restarts: no dependency, so a table restart does not reset every breaker.
    { id: RECONCILER, subtree: 'runtime', dependsOn: [] },
    ...config.workflows.map(w => ({ id: workflowActorName(w.name), subtree: 'workflows' as const, dependsOn: [...new Set([...storeOf(stores.runs), ...storeOf(stores.sessions)])] })),
  ]
  return { actors }
}

/**
 * Who applies a change to a field, and how: the reload boundary, kept here in one table that a
 * test walks against every field of the schema, so that no field falls through unapplied.
 * Hot owners take a change live; restart owners are actors restarted in place (or replaced,
 * for a provider's behaviour); the rest say why nothing runs from them.
 */
export type FieldOwner =
  /** ApiServer.configure: image name, CORS, body limit, context secret, drain deadline, auth, quota. */
  | 'server'
  /** The listener moves: a new one is bound before the old closes. */
  | 'listener'
  /** ActorSystem.setLogLevel, on every thread. */
  | 'log-level'
  /** ActorSystem.setAskTimeout, on every thread. */
  | 'ask-timeout'
  /** The log destination's redaction paths (main.ts builds it; every thread's lines pass it). */
  | 'log-redact'
  /** The models routing table: registered models registered or unregistered. */
  | 'models'
  /** The inference store's configure message: its queue, writers, write mode and retention. */
  | 'inference-queue'
  /** A workflow actor's configure message. */
  | 'workflow-limits'
  /** Restart in place: the provider the item names. */
  | 'provider'
  /** Stop it and start a new actor: a provider's type or module chooses its behaviour. */
  | 'provider-behaviour'
  /** Restart in place: the workflow the item names. */
  | 'workflow'
  /** Restart in place: every workflow (their owner identity and lease length). */
  | 'workflows'
  /** Restart in place: the backend's store actor, then what uses it. */
  | 'backend'
  /** Restart in place: the actors that use the named store. */
  | 'store-users'
  /** The drain deadline: the server's, and every actor's shutdownMs, for the next stop or restart. */
  | 'drain'
  /** The reconciler's configure message: its interval, timeouts, cache TTL and breaker settings. */
  | 'reconciler'
  /** ActorSystem.resizePool: threads start, or the least loaded retire, their actors moved. */
  | 'pool'
  /** Fixed when the process starts: reported as not applied. */
  | 'process'
  /** Nothing runs from it. */
  | 'none'

interface OwnerRule {
  readonly owner: FieldOwner
  /** For `process` and `none`: why. */
  readonly why?: string
}

/**
 * Schema paths (as listFields writes them: `<key>` for any map key, `[]` for a list item) to
 * their owner; a path is owned by its longest listed prefix.
 */
export const FIELD_OWNERS: Readonly<Record<string, OwnerRule>> = {
  version: { owner: 'none', why: 'the config format version: nothing runs from it' },
  apis: { owner: 'none', why: 'which APIs are served follows from the providers configured' },
  image_name: { owner: 'server' },
  server: { owner: 'listener' },
  'server.max_body_bytes': { owner: 'server' },
  'server.auth': { owner: 'server' },
  'server.quota': { owner: 'server' },
  'server.cors': { owner: 'server' },
  'server.workflows_context_secret': { owner: 'server' },
  'logging.redact': { owner: 'log-redact' },
  logging: { owner: 'log-level' },
  registered_resources: { owner: 'models' },
  providers: { owner: 'provider' },
  'providers.<key>[].provider_type': { owner: 'provider-behaviour' },
  'providers.<key>[].module': { owner: 'provider-behaviour' },
  'storage.backends': { owner: 'backend' },
  'storage.stores': { owner: 'store-users' },
  'storage.stores.inference.max_write_queue_size': { owner: 'inference-queue' },
  'storage.stores.inference.num_writers': { owner: 'inference-queue' },
  'storage.stores.inference.write_mode': { owner: 'inference-queue' },
  'storage.stores.inference.retention': { owner: 'inference-queue' },
  'storage.stores.prompts': { owner: 'none', why: 'no actor uses the prompts store yet' },
  storage: { owner: 'store-users' },
  workflows: { owner: 'workflow' },
  'workflows[].max_concurrent_tasks': { owner: 'workflow-limits' },
  'workflows[].queue_size': { owner: 'workflow-limits' },
  'workflows[].timeout_ms': { owner: 'workflow-limits' },
  'workflows[].resumable': { owner: 'workflow-limits' },
  'workflows[].retention': { owner: 'workflow-limits' },
  troupe: { owner: 'none', why: "troupe's own settings: each field is listed" },
  'troupe.workers': { owner: 'pool' },
  'troupe.ask_timeout_ms': { owner: 'ask-timeout' },
  'troupe.drain_timeout_ms': { owner: 'drain' },
  'troupe.node_id': { owner: 'workflows' },
  'troupe.lease_ms': { owner: 'workflows' },
  'troupe.reconciler': { owner: 'reconciler' },
}

/** Owners that apply a change live; the others restart, replace or report. */
export const HOT_OWNERS: ReadonlySet<FieldOwner> = new Set(['server', 'drain', 'log-level', 'ask-timeout', 'log-redact', 'models', 'inference-queue', 'workflow-limits', 'reconciler'])

/** The rule for a schema path: its longest listed prefix's. */
export function ownerOfField(schemaPath: string): OwnerRule | undefined {
  for (let path = schemaPath; path !== ''; path = parentPath(path)) {
    const rule = FIELD_OWNERS[path]
    if (rule !== undefined) return rule
  }
  return undefined
}

function parentPath(path: string): string {
  if (path.endsWith('[]')) return path.slice(0, -2)
  const dot = path.lastIndexOf('.')
  return dot === -1 ? '' : path.slice(0, dot)
}

/** A change's segments as a schema path: map keys as `<key>`, list items as `[]`. */
export function schemaPathOf(segments: readonly string[]): string {
  let path = ''
  segments.forEach((segment, i) => {
    const at = segments.slice(0, i).join('.')
    if (at === 'providers' || at === 'storage.backends') path += '.<key>'
    else if (at === 'workflows' || at === 'registered_resources.models' || (i === 2 && segments[0] === 'providers')) path += '[]'
    else path += path === '' ? segment : `.${segment}`
  })
  return path
}

/** The owner of one change. */
export function ownerOf(change: ConfigChange): OwnerRule {
  return ownerOfField(schemaPathOf(change.segments)) ?? { owner: 'none', why: 'no part of troupe reads this field' }
}

/**
 * What a change of config asks of the running stack, decided from the diff and the two plans:
 * - `hot`: changes pushed to their owners live;
 * - `restart`: actors restarted in place with their new settings (the owners of restart-class
 *   changes, and every actor that depends on one of them), in start order;
 * - `start` / `stop`: actors the new plan adds or the old one had and the new one drops;
 * - `replace`: actors whose behaviour changes (a provider's type or module): stopped, then
 *   started anew, with a new ref;
 * - `rebind`: the listener must move (host, port, TLS);
 * - `resize`: the worker pool takes its new size;
 * - `unapplied`: changes nothing running can take without a new process, each with its reason.
 */
export interface ReloadPlan {
  readonly hot: readonly ConfigChange[]
  readonly restart: readonly string[]
  readonly start: readonly string[]
  readonly stop: readonly string[]
  readonly replace: readonly string[]
  readonly rebind: boolean
  /** troupe.workers changed: the pool is resized. */
  readonly resize: boolean
  readonly unapplied: ReadonlyArray<{ readonly path: string; readonly reason: string }>
}

export function planReload(before: StackPlan, after: StackPlan, changes: readonly ConfigChange[], config: StackConfig): ReloadPlan {
  const beforeIds = new Set(before.actors.map(a => a.id))
  const afterIds = new Set(after.actors.map(a => a.id))
  const owners = new Set<string>()
  const replace = new Set<string>()
  const hot: ConfigChange[] = []
  const unapplied: Array<{ path: string; reason: string }> = []
  let rebind = false
  let resize = false
  for (const change of changes) {
    const { owner, why } = ownerOf(change)
    const [, api, item] = change.segments
    switch (owner) {
      case 'process':
        unapplied.push({ path: change.path, reason: why! })
        break
      case 'listener':
        rebind = true
        break
      case 'pool':
        resize = true
        break
      case 'provider-behaviour':
        replace.add(providerActorName(item!))
        break
      case 'provider':
        // A whole API's list added or removed names no provider: the plans' start/stop cover it.
        if (item !== undefined) owners.add(providerActorName(item))
        break
      case 'backend':
        if (item === undefined) break
        // kv_* to sql_* or back is another behaviour: a new actor, as for a provider's type.
        if (change.segments[3] === 'type' && typeof change.before === 'string' && typeof change.after === 'string' && backendFamily(change.before) !== backendFamily(change.after)) replace.add(storeActorName(item))
        else owners.add(storeActorName(item))
        break
      case 'store-users':
        if (item !== undefined) for (const id of storeUsers(item, config)) owners.add(id)
        break
      case 'workflow':
        if (api !== undefined) owners.add(workflowActorName(api))
        break
      case 'workflows':
        for (const w of config.workflows) owners.add(workflowActorName(w.name))
        break
      case 'none':
        break
      default:
        hot.push(change)
    }
  }
  // An actor restarts when it or anything it depends on does; order as the new plan starts them.
  const restart: string[] = []
  for (const actor of after.actors) {
    if (!beforeIds.has(actor.id) || replace.has(actor.id)) continue
    if (owners.has(actor.id) || actor.dependsOn.some(dep => restart.includes(dep) || replace.has(dep))) restart.push(actor.id)
  }
  return {
    hot,
    restart,
    start: after.actors.filter(a => !beforeIds.has(a.id)).map(a => a.id),
    stop: before.actors.filter(a => !afterIds.has(a.id)).map(a => a.id).reverse(),
    replace: after.actors.filter(a => replace.has(a.id) && beforeIds.has(a.id)).map(a => a.id),
    rebind,
    resize,
    unapplied,
  }
}

/** The actors that use a named store. */
function storeUsers(store: string, config: StackConfig): string[] {
  switch (store) {
    case 'metadata':
      return [ROUTING_TABLE]
    case 'inference':
      return [INFERENCE_STORE]
    case 'conversations':
      return [CONVERSATIONS]
    case 'runs':
    case 'sessions':
      return config.workflows.map(w => workflowActorName(w.name))
    default:
      return []
  }
}
