import { z } from 'zod'
import { ActorError, defineBehavior, type ActorRef, type BehaviorContext, type Cancellation } from '../../src/index.js'
import type { InferenceMessage } from '../providers/inference/protocol.js'
import type { ServedModel } from '../../src/stack/model-cache.js'
import { KvClient } from '../stores/kv-client.js'
import type { KvMessage } from '../stores/protocol.js'
import { nextSequence } from '../stores/sequence.js'

/**
 * The models routing table: which provider serves each model id. Registered models live in the
 * metadata store (the distribution registry) and are loaded at start; the models of
 * `registered_resources` are registered over them. An id that is not registered but reads
 * `provider_id/model` routes straight to that provider; that namespace is the provider's, and
 * no registration over the API may take an id in it. One actor holds the table, so every
 * reader on every thread sees one registry. The other routing tables (shields, vector stores,
 * tool groups) take the same shape: a registry, a resolve step, and forwarding.
 */

const modelInput = z.object({
  model_id: z.string().min(1),
  provider_id: z.string().min(1),
  provider_model_id: z.string().min(1).optional(),
  model_type: z.enum(['llm', 'embedding']).optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
})
export type ModelInput = z.infer<typeof modelInput>

/** Who registered a model, as they were authenticated then: what access rules decide by. */
const modelOwner = z.object({ principal: z.string(), attributes: z.record(z.string(), z.array(z.string())) })
export type ModelOwner = z.infer<typeof modelOwner>

/**
 * What a caller resolved a model id to when it checked the caller's access: the registered
 * model with this owner (null: unowned), or a model its provider lists (`provider_id/model`,
 * unregistered). Routing or unregistering with it acts on that very model, and answers as for a
 * missing model when the id names another by then: a check and its act never see two models.
 */
const checkedModel = z.discriminatedUnion('kind', [z.object({ kind: z.literal('registered'), owner: modelOwner.nullable() }), z.object({ kind: z.literal('listed') })])
export type CheckedModel = z.infer<typeof checkedModel>

export interface Model {
  readonly identifier: string
  readonly provider_id: string
  readonly provider_model_id: string
  readonly model_type: 'llm' | 'embedding'
  readonly metadata: Record<string, unknown>
  /** Who registered it; absent when it was registered without authentication (every model of the config): unowned. */
  readonly owner?: ModelOwner
}

/** The registry at one moment. */
export interface ModelListing {
  /** Grows with every change, across restarts too: of two listings, the higher version is newer. */
  readonly version: number
  readonly models: readonly Model[]
  /** What the reconciler last found of each provider; empty until its first cycle. */
  readonly runtime: Readonly<Record<string, ProviderAvailability>>
}

/**
 * A provider as routing needs to know it, published by the reconciler (src/stack/reconciler.ts)
 * after each cycle: whether it answers, whether requests to it are refused for now (its circuit
 * breaker is open), and what it serves.
 */
export interface ProviderAvailability {
  readonly state: 'unknown' | 'reachable' | 'unreachable'
  /** Why it is unreachable, for errors and model metadata. */
  readonly reason?: string
  /** Its last failure, while unreachable: what a reconciler that restarts starts from. */
  readonly error?: { readonly code: string; readonly message: string; readonly since: number }
  /** Until when (ms since the epoch) requests to it are refused with provider_unavailable; 0 when they are not. */
  readonly refuseUntil: number
  /** `refresh_models` in its config: what it serves is listed in /v1/models as provider_id/model. */
  readonly refreshModels: boolean
  /** What it served at its last listing, while that is younger than the cache TTL; absent otherwise. */
  readonly models?: readonly ServedModel[]
}

export interface ProviderEntry {
  readonly providerId: string
  readonly providerType: string
  readonly api: string
  readonly ref: ActorRef<InferenceMessage>
}

const request = z.object({ model: z.string() }).loose()

export const modelsProtocol = z.discriminatedUnion('type', [
  /**
   * Registers a model, owned by `owner` (unowned without one). A model id registered already
   * with other fields, or by another owner, is refused (`conflict`) unless `replace`, as the
   * config does when a declared model changes; with the same fields and owner it is a no-op
   * that answers the model.
   */
  z.object({ type: z.literal('register'), model: modelInput, owner: modelOwner.optional(), replace: z.boolean().optional() }),
  /**
   * Answers the model removed, or null when none had that id, or (with `expectOwner`) when the
   * model under that id has another owner than the one the caller was checked against (null:
   * unowned): a model registered anew between the check and this is not removed.
   */
  z.object({ type: z.literal('unregister'), model_id: z.string(), expectOwner: modelOwner.nullable().optional() }),
  z.object({ type: z.literal('get'), model_id: z.string() }),
  /** The registry: a ModelListing. */
  z.object({ type: z.literal('list') }),
  /** Streams a ModelListing now and after each change; a consumer that lags gets the latest only. Ends when the table stops. */
  z.object({ type: z.literal('watch') }),
  /**
   * Inference, routed by `request.model` (only to the model `expect` names, when given); `chat`
   * and `completion` also stream. `request_id` is the HTTP request's, passed on to the provider.
   */
  z.object({ type: z.literal('chat'), request: request.extend({ messages: z.array(z.object({ role: z.string() }).loose()) }), expect: checkedModel.optional(), request_id: z.string().optional() }),
  z.object({ type: z.literal('completion'), request, expect: checkedModel.optional(), request_id: z.string().optional() }),
  z.object({ type: z.literal('embeddings'), request, expect: checkedModel.optional(), request_id: z.string().optional() }),
  /** The reconciler's summary of every provider (a tell): listed, and routed by. */
  z.object({ type: z.literal('runtime'), providers: z.record(z.string(), z.custom<ProviderAvailability>(value => typeof (value as ProviderAvailability | null)?.state === 'string', 'must be a provider availability')) }),
  /** The providers to route to, replacing the current set: a reload that added or removed one. */
  z.object({ type: z.literal('setProviders'), providers: z.array(z.custom<ProviderEntry>(entry => typeof (entry as ProviderEntry | null)?.providerId === 'string', 'must be a provider entry')) }),
])
export type ModelsMessage = z.infer<typeof modelsProtocol>

export interface ModelsArgs {
  readonly providers: readonly ProviderEntry[]
  /** The metadata store; without one the registry lives in memory only. */
  readonly metadata?: { readonly store: ActorRef<KvMessage>; readonly namespace: string }
  readonly models: readonly ModelInput[]
}

interface State {
  readonly models: Map<string, Model>
  /**
   * The registry change under way: changes run one at a time, so that two registrations of one
   * new id cannot both pass the conflict check while the first is being stored.
   */
  changing: Promise<unknown>
  version: number
  /** The registry as a frozen listing, rebuilt only after a change. */
  listing: ModelListing | undefined
  /** Watch streams waiting for the next change: each is woken once, then taken off. */
  readonly watchers: Set<() => void>
  providers: ReadonlyMap<string, ProviderEntry>
  runtime: Readonly<Record<string, ProviderAvailability>>
  /** `runtime` as JSON: a summary that did not change is no change. */
  runtimeJson: string
  readonly kv: KvClient | undefined
}

const MODEL_PREFIX = 'models/'
/** Inference is bounded by each provider's upstream timeout, not by the default ask timeout. */
const INFERENCE = { timeoutMs: Infinity } as const

export const modelsRoutingTable = defineBehavior(import.meta.url, 'modelsRoutingTable', {
  protocol: modelsProtocol,
  maxConcurrent: 4096,
  async init(args: ModelsArgs, ctx): Promise<State> {
    const providers = new Map(args.providers.map(p => [p.providerId, p]))
    const kv = args.metadata === undefined ? undefined : new KvClient(args.metadata.store, args.metadata.namespace)
    const models = new Map<string, Model>()
    if (kv !== undefined) {
      for await (const { value } of kv.entries<Model>(MODEL_PREFIX)) {
        if (providers.has(value.provider_id)) models.set(value.identifier, value)
        else ctx.log.warn({ model: value.identifier, provider: value.provider_id }, 'a registered model names a provider that is no longer configured; not served')
      }
    }
    const state: State = { models, changing: Promise.resolve(), version: nextSequence(0), listing: undefined, watchers: new Set(), providers, runtime: {}, runtimeJson: '{}', kv }
    // The config is the truth for the models it declares: they replace what the store holds.
    for (const model of args.models) await register(state, model, true)
    return state
  },
  receive(state, msg: ModelsMessage, ctx) {
    switch (msg.type) {
      case 'register':
        return inTurn(state, () => register(state, msg.model, msg.replace === true, msg.owner))
      case 'unregister':
        return inTurn(state, () => unregister(state, msg.model_id, msg.expectOwner))
      case 'get':
        return state.models.get(msg.model_id) ?? null
      case 'list':
        return listingOf(state)
      case 'watch':
        throw new ActorError('bad_message', 'watch is a stream: call stream(), not ask()')
      case 'chat':
      case 'completion':
      case 'embeddings':
        return forward(state, msg, ctx)
      case 'runtime': {
        const json = JSON.stringify(msg.providers)
        if (json === state.runtimeJson) return null
        state.runtime = msg.providers
        state.runtimeJson = json
        changed(state)
        return null
      }
      case 'setProviders':
        state.providers = new Map(msg.providers.map(p => [p.providerId, p]))
        changed(state) // watchers route with their own copy of the providers: tell them to look again
        return null
    }
  },
  async *stream(state, msg: ModelsMessage, ctx) {
    if (msg.type === 'watch') return yield* watch(state, ctx)
    if (msg.type !== 'chat' && msg.type !== 'completion') throw new ActorError('bad_message', `the models routing table streams chat, completion and watch only, not ${msg.type}`)
    yield* streamRoute(routeModel(state.models, state.providers, msg.request, 'llm', state.runtime, msg.expect), msg.type, ctx.cancellation, msg.request_id)
  },
})

/** Runs a registry change after the ones before it. */
function inTurn<T>(state: State, change: () => Promise<T>): Promise<T> {
  const next = state.changing.then(change)
  state.changing = next.catch(() => undefined)
  return next
}

/** JSON with object keys sorted: metadata given in another key order is the same metadata. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? Object.fromEntries(Object.keys(v).sort().map(k => [k, (v as Record<string, unknown>)[k]])) : v,
  )
}

async function register(state: State, input: ModelInput, replace: boolean, owner?: ModelOwner): Promise<Model> {
  if (!state.providers.has(input.provider_id)) {
    throw new ActorError('unknown_provider', `model '${input.model_id}' names provider '${input.provider_id}', which is not configured (configured: ${[...state.providers.keys()].join(', ') || 'none'})`)
  }
  const model: Model = {
    identifier: input.model_id,
    provider_id: input.provider_id,
    provider_model_id: input.provider_model_id ?? input.model_id,
    model_type: input.model_type ?? 'llm',
    metadata: input.metadata ?? {},
    ...(owner === undefined ? {} : { owner }),
  }
  // The config's own models (replace) may take any id; one over the API may not take a provider's.
  const namespace = providerModelOf(model.identifier)?.providerId
  if (!replace && namespace !== undefined && state.providers.has(namespace)) {
    throw new ActorError('invalid_request', `model_id '${model.identifier}' is in provider '${namespace}''s namespace, where ids name the models that provider lists; choose a model_id without the '${namespace}/' prefix`, { param: 'model_id' })
  }
  const existing = state.models.get(model.identifier)
  if (existing !== undefined && !replace) {
    // The same words whoever holds it: nothing of a model the caller may not read is shown, not even whose it is.
    if (existing.owner?.principal !== owner?.principal) throw new ActorError('conflict', `model id '${model.identifier}' is registered already; choose another id`, { param: 'model_id' })
    const differing = (['provider_id', 'provider_model_id', 'model_type', 'metadata'] as const).filter(field => canonical(existing[field]) !== canonical(model[field]))
    if (differing.length === 0) return existing
    const shown = differing.map(field => `${field} (registered: ${JSON.stringify(existing[field])}, given: ${JSON.stringify(model[field])})`).join(', ')
    throw new ActorError('conflict', `model '${model.identifier}' is registered already with other fields: ${shown}; unregister it first to change it`, { param: differing[0] })
  }
  // Durable first: a registration is acknowledged only once the registry has it.
  await state.kv?.set(MODEL_PREFIX + model.identifier, model)
  state.models.set(model.identifier, model)
  changed(state)
  return model
}

async function unregister(state: State, modelId: string, expectOwner: ModelOwner | null | undefined): Promise<Model | null> {
  const model = state.models.get(modelId)
  if (model === undefined) return null
  if (expectOwner !== undefined && !sameOwner(model.owner, expectOwner)) return null
  await state.kv?.delete(MODEL_PREFIX + modelId)
  state.models.delete(modelId)
  changed(state)
  return model
}

function listingOf(state: State): ModelListing {
  return (state.listing ??= Object.freeze({ version: state.version, models: Object.freeze([...state.models.values()]), runtime: state.runtime }))
}

function changed(state: State): void {
  state.version = nextSequence(state.version)
  state.listing = undefined
  for (const wake of state.watchers) wake()
  state.watchers.clear()
}

/**
 * The listing now, then again after every change, until the watcher cancels or the table
 * stops. While the consumer has no credit the generator waits at its yield, and changes made
 * meanwhile fold into the one listing it sends next.
 */
async function* watch(state: State, ctx: BehaviorContext<ModelsMessage>): AsyncGenerator<ModelListing> {
  let wake: (() => void) | undefined
  const end = (): void => wake?.()
  const unsubscribe = [ctx.cancellation.onCancel(end), ctx.stopping.onCancel(end)]
  try {
    let sent: ModelListing | undefined
    while (!ctx.cancellation.cancelled && !ctx.stopping.cancelled) {
      const current = listingOf(state)
      if (current !== sent) yield (sent = current)
      else await new Promise<void>(resolve => state.watchers.add((wake = resolve)))
    }
  } finally {
    for (const off of unsubscribe) off()
    if (wake !== undefined) state.watchers.delete(wake)
  }
}

/** Whether `owner` is `expected`, attributes and all (null: unowned). */
function sameOwner(owner: ModelOwner | undefined, expected: ModelOwner | null): boolean {
  return canonical(owner ?? null) === canonical(expected)
}

/**
 * The one answer for a model id that routes nowhere: not registered, not a provider's model, or
 * one the caller may not read. Every path words it alike, so that a hidden model's 404 is a
 * missing one's, byte for byte.
 */
export function modelNotFound(id: string): ActorError {
  return new ActorError('model_not_found', `model '${id}' is not registered, and is not a provider's model (provider_id/model) you may use`)
}

/** `provider_id/model` split at its first slash; undefined for an id that does not read so. */
export function providerModelOf(id: string): { readonly providerId: string; readonly providerModelId: string } | undefined {
  const slash = id.indexOf('/')
  return slash <= 0 || slash === id.length - 1 ? undefined : { providerId: id.slice(0, slash), providerModelId: id.slice(slash + 1) }
}

/** The model in the provider's last listing; Ollama's `name:latest` answers for `name`. */
export function listedBy(availability: ProviderAvailability | undefined, id: string): ServedModel | undefined {
  const models = availability?.models
  if (models === undefined) return undefined
  return models.find(m => m.id === id) ?? (id.includes(':') ? undefined : models.find(m => m.id === `${id}:latest`))
}

/** Where a request goes: its provider, the id it was asked for, and the request as that provider names the model. */
export interface Route {
  readonly provider: ProviderEntry
  readonly model: string
  readonly request: Record<string, unknown>
}

/**
 * The provider that serves `request.model` in this registry. Pure, so that a caller holding a
 * listing the table published (the HTTP server's watched copy) routes exactly as the table does.
 * A provider whose circuit breaker is open (`runtime`) is refused at once, with
 * `provider_unavailable` and how long to wait, rather than asked to time out again. With
 * `expect` it routes only the model a caller's access check resolved (CheckedModel); a
 * `provider_id/model` then routes only while that provider lists the model.
 */
export function routeModel(
  models: ReadonlyMap<string, Model>,
  providers: ReadonlyMap<string, ProviderEntry>,
  request: { model: string },
  needs: 'llm' | 'embedding',
  runtime: Readonly<Record<string, ProviderAvailability>>,
  expect?: CheckedModel,
): Route {
  const id = request.model
  const registered = models.get(id)
  if (registered !== undefined) {
    if (expect !== undefined && !(expect.kind === 'registered' && sameOwner(registered.owner, expect.owner))) throw modelNotFound(id)
    const provider = providers.get(registered.provider_id)
    if (provider === undefined) throw new ActorError('model_not_found', `model '${id}' names provider '${registered.provider_id}', which is not configured`)
    if (registered.model_type !== needs) throw new ActorError('invalid_request', `model '${id}' is an ${registered.model_type} model; this endpoint needs an ${needs} model`)
    refuseIfOpen(runtime[provider.providerId], id)
    return { provider, model: id, request: { ...request, model: registered.provider_model_id } }
  }
  const direct = providerModelOf(id)
  const provider = direct === undefined ? undefined : providers.get(direct.providerId)
  if (direct === undefined || provider === undefined) throw modelNotFound(id)
  const { providerModelId } = direct
  if (expect !== undefined && !(expect.kind === 'listed' && listedBy(runtime[provider.providerId], providerModelId) !== undefined)) throw modelNotFound(id)
  refuseIfOpen(runtime[provider.providerId], id)
  return { provider, model: id, request: { ...request, model: providerModelId } }
}

function refuseIfOpen(availability: ProviderAvailability | undefined, model: string): void {
  if (availability === undefined || availability.refuseUntil === 0) return
  const waitMs = availability.refuseUntil - Date.now()
  if (waitMs <= 0) return
  throw new ActorError('provider_unavailable', `model '${model}': ${availability.reason ?? 'its provider is unreachable'}`, { retryAfterS: Math.ceil(waitMs / 1000) })
}

function forward(state: State, msg: Extract<ModelsMessage, { type: 'chat' | 'completion' | 'embeddings' }>, ctx: BehaviorContext<ModelsMessage>): Promise<unknown> {
  return askRoute(routeModel(state.models, state.providers, msg.request, msg.type === 'embeddings' ? 'embedding' : 'llm', state.runtime, msg.expect), msg.type, ctx.cancellation, msg.request_id)
}

/** Asks the route's provider (for the HTTP request `requestId`, when there is one), and names the model in its reply as it was asked for. */
export async function askRoute<R extends { model?: string }>(route: Route, type: 'chat' | 'completion' | 'embeddings', cancellation: Cancellation, requestId?: string): Promise<R> {
  const reply = await route.provider.ref.ask<R>(inferenceAsk(route, type, requestId), { ...INFERENCE, cancellation })
  reply.model = route.model
  return reply
}

/** Streams a chat or a completion from the route's provider, each chunk naming the model as it was asked for. */
export async function* streamRoute<C extends { model?: string }>(route: Route, type: 'chat' | 'completion', cancellation: Cancellation, requestId?: string): AsyncGenerator<C> {
  for await (const chunk of route.provider.ref.stream<C>(inferenceAsk(route, type, requestId), { cancellation })) {
    chunk.model = route.model
    yield chunk
  }
}

/** The provider's message for `route`; without a request id the field is left out, not sent as undefined. */
function inferenceAsk(route: Route, type: 'chat' | 'completion' | 'embeddings', requestId: string | undefined): InferenceMessage {
  return (requestId === undefined ? { type, request: route.request } : { type, request: route.request, request_id: requestId }) as InferenceMessage
}
