import { actorNodes, type ActorRef, type ActorSystem } from '../../actor/index.js'
import type { Model, ProviderEntry } from '../../../actors/routing/models.js'
import type { ProviderRuntime, ReconcilerMessage, RuntimeSnapshot } from '../../stack/reconciler.js'
import { HttpError, sendJson } from '../http.js'
import { modelAvailability, type ServedModelList } from '../model-list.js'
import { HANDLED, type Route } from '../route.js'
import type { ServedRequest } from '../served-request.js'

/** What the runtime routes read, each at the moment of the request. */
export interface RuntimeHooks {
  readonly system: ActorSystem
  /** The reconciler; undefined when the stack runs none (a server made without one). */
  reconciler(): ActorRef<ReconcilerMessage> | undefined
  /** The providers configured and running. */
  providers(): ReadonlyMap<string, ProviderEntry> | undefined
  /** The registered models with the reconciler's summary, as GET /v1/models serves them. */
  models(): ServedModelList | Promise<ServedModelList>
  /** Whether the caller of `request` may read `model` (server.auth.access_policy): only those are shown to them. */
  mayRead(request: ServedRequest, model: Model): boolean
}

/** llama-stack's ProviderInfo, plus what the reconciler knows of the provider. */
interface ProviderInfo {
  readonly api: string
  readonly provider_id: string
  readonly provider_type: string
  /** Its config, secrets masked. */
  readonly config: unknown
  /** llama-stack's HealthResponse: `OK`, `Error` with a message, or `Unknown` until first checked. */
  readonly health: { readonly status: 'OK' | 'Error' | 'Unknown'; readonly message?: string }
  readonly runtime: Omit<ProviderRuntime, 'provider_id' | 'provider_type' | 'api' | 'config'> | null
  /** Registered models this provider does not serve now, each with why: those the caller may read. */
  readonly unavailable_models: ReadonlyArray<{ readonly model_id: string; readonly reason: string }>
}

/**
 * GET /v1/providers, /v1/providers/{provider_id}, /v1/inspect/runtime and /v1/health, all built
 * from the reconciler's last snapshot: a request never waits on a backend, however slow or
 * down it is.
 */
export function runtimeRoutes(hooks: RuntimeHooks): Route[] {
  const snapshot = async (): Promise<RuntimeSnapshot | undefined> => hooks.reconciler()?.ask<RuntimeSnapshot>({ type: 'snapshot' })
  const providers = async (request: ServedRequest): Promise<ProviderInfo[]> => providerInfos(hooks, await snapshot(), await hooks.models(), model => hooks.mayRead(request, model))
  return [
    { method: 'GET', path: '/v1/providers', api: 'providers', handle: async request => ({ data: await providers(request) }) },
    {
      method: 'GET',
      path: '/v1/providers/{provider_id}',
      api: 'providers',
      handle: async request => {
        const id = request.params['provider_id']!
        const found = (await providers(request)).find(p => p.provider_id === id)
        if (found === undefined) throw new HttpError(404, 'not_found', `no provider '${id}' is configured`, 'provider_id')
        return found
      },
    },
    {
      method: 'GET',
      path: '/v1/inspect/runtime',
      api: 'inspect',
      handle: async () => {
        const runtime = await snapshot()
        if (runtime === undefined) throw new HttpError(404, 'not_configured', 'this server runs without a reconciler')
        return runtime
      },
    },
    {
      method: 'GET',
      path: '/v1/health',
      api: 'inspect',
      handle: async ({ res }) => {
        const tree = await hooks.system.inspect()
        const down = actorNodes(tree.root).filter(actor => actor.status !== 'running').map(actor => ({ id: actor.id, status: actor.status }))
        const runtime = await snapshot()
        const unreachable = (runtime?.providers ?? []).filter(p => p.reachable === false).map(p => ({ provider_id: p.provider_id, message: `${p.error?.code}: ${p.error?.message}`, since: p.since }))
        // llama-stack answers OK; a stack with an actor down cannot serve as configured.
        const status = down.length > 0 ? 'Error' : unreachable.length > 0 ? 'Degraded' : 'OK'
        sendJson(res, status === 'Error' ? 503 : 200, { status, actors_down: down, unreachable_providers: unreachable })
        return HANDLED
      },
    },
  ]
}

function providerInfos(hooks: RuntimeHooks, snapshot: RuntimeSnapshot | undefined, models: ServedModelList, readable: (model: Model) => boolean): ProviderInfo[] {
  const known = new Map((snapshot?.providers ?? []).map(p => [p.provider_id, p]))
  return [...(hooks.providers()?.values() ?? [])].map(entry => {
    const runtime = known.get(entry.providerId)
    const unavailable = [...models.byId.values()]
      .filter(model => model.provider_id === entry.providerId && readable(model))
      .map(model => ({ model_id: model.identifier, ...modelAvailability(entry.providerId, model.provider_model_id, models.runtime[entry.providerId]) }))
      .flatMap(({ model_id, available, unavailable_reason }) => (available === false ? [{ model_id, reason: unavailable_reason ?? '' }] : []))
    if (runtime === undefined) {
      return { api: entry.api, provider_id: entry.providerId, provider_type: entry.providerType, config: null, health: { status: 'Unknown' }, runtime: null, unavailable_models: unavailable }
    }
    const { provider_id, provider_type, api, config, ...state } = runtime
    const health: ProviderInfo['health'] =
      state.reachable === true ? { status: 'OK' } : state.reachable === false ? { status: 'Error', message: `${state.error?.code}: ${state.error?.message}` } : { status: 'Unknown', message: 'not checked yet' }
    return { api, provider_id, provider_type, config, health, runtime: state, unavailable_models: unavailable }
  })
}
