import type { Logger } from 'pino'
import { CancelSource, type ActorRef } from '../actor/index.js'
import { listedBy, providerModelOf, type CheckedModel, type Model, type ModelListing, type ModelsMessage, type ProviderAvailability } from '../../actors/routing/models.js'
import type { ServedModel } from '../stack/model-cache.js'
import type { AccessPolicy, ProtectedResource } from './access-policy.js'
import type { Principal } from './auth.js'
import { readableBy } from './ownership.js'

/** A body as GET /v1/models sends it: JSON, and its length in bytes. */
export interface ModelListBody {
  readonly body: string
  readonly bytes: number
}

/** GET /v1/models's body, as JSON with its length in bytes, and the listing version it shows. */
export interface ServedModelList extends ModelListBody {
  readonly version: number
  /** Each model listed, as the access policy sees it, with its JSON: what a caller's own list is made of. */
  readonly listed: ReadonlyArray<{ readonly resource: ProtectedResource; readonly json: string }>
  /** The registered models by id, for routing. */
  readonly byId: ReadonlyMap<string, Model>
  /** The reconciler's summary of each provider, for routing and for model availability. */
  readonly runtime: Readonly<Record<string, ProviderAvailability>>
}

/**
 * The model list as GET /v1/models serves it, kept current by watching the models routing table
 * (a stream of its listing: now, then after each change), so a list is served without an ask and
 * without serialising. While no watch is live (before the first request, after the table
 * stopped or crashed) a request asks instead, and starts the watch again. The same listing
 * routes inference (`registry`), so that a request goes to its provider without a hop through
 * the table.
 *
 * Listings carry a version that grows across restarts, and only a newer one replaces the list
 * kept: an ask and a watch update that cross never put an older list back. A write through this
 * server calls `refresh` before it answers, so its client reads its own registration whichever
 * thread the table runs on; writes made elsewhere show once the watch brings them.
 */
export class ModelList {
  readonly #models: ActorRef<ModelsMessage>
  readonly #log: Logger
  readonly #closed = new CancelSource()
  #served: ServedModelList | undefined
  #watching = false
  /** Whether the watch has delivered and still runs: only then is `#served` known to be current. */
  #live = false
  /**
   * Each caller's list, by the principal object its authenticator answers (the same object for
   * a key, or a token remembered), while the listing and policy it was made from are current:
   * a client listing again is not filtered again. Weak, so it holds no caller that is gone.
   */
  readonly #readable = new WeakMap<Principal, { readonly served: ServedModelList; readonly policy: AccessPolicy; readonly list: ModelListBody }>()

  constructor(models: ActorRef<ModelsMessage>, log: Logger) {
    this.#models = models
    this.#log = log
  }

  /** The list to serve: the watched one, or asked for when no watch is live. */
  current(): ServedModelList | Promise<ServedModelList> {
    return this.#live ? this.#served! : this.refresh()
  }

  /**
   * The listing while the watch is live, else undefined (and the watch is started): the caller
   * then routes through the table, which always has the current registry.
   */
  live(): ServedModelList | undefined {
    if (this.#live) return this.#served
    this.#watch()
    return undefined
  }

  /** Asks the routing table for its listing; after a write it includes that write. */
  async refresh(): Promise<ServedModelList> {
    const listing = await this.#models.ask<ModelListing>({ type: 'list' })
    this.#watch()
    return this.#keep(listing)
  }

  /** The part of `served` that `user` may read under `policy`. */
  readableBy(served: ServedModelList, user: Principal, policy: AccessPolicy): ModelListBody {
    const kept = this.#readable.get(user)
    if (kept !== undefined && kept.served === served && kept.policy === policy) return kept.list
    const list = listBody(readableBy(policy, user, served.listed, model => model.resource).map(model => model.json))
    this.#readable.set(user, { served, policy, list })
    return list
  }

  /** Ends the watch. */
  close(): void {
    this.#closed.cancel()
  }

  #keep(listing: ModelListing): ServedModelList {
    const served = this.#served
    if (served !== undefined && served.version >= listing.version) return served
    const byId = new Map(listing.models.map(model => [model.identifier, model]))
    const listed = listedModels(listing, byId).map(({ resource, view }) => ({ resource, json: JSON.stringify(view) }))
    return (this.#served = { version: listing.version, ...listBody(listed.map(model => model.json)), listed, byId, runtime: listing.runtime })
  }

  #watch(): void {
    if (this.#watching || this.#closed.cancelled) return
    this.#watching = true
    void (async () => {
      try {
        for await (const listing of this.#models.stream<ModelListing>({ type: 'watch' }, { cancellation: this.#closed, window: 2 })) {
          this.#keep(listing)
          this.#live = true
        }
      } catch (error) {
        // The table stopped or crashed under the watch: requests ask until it is back.
        if (!this.#closed.cancelled) this.#log.debug({ err: error }, 'model list watch ended')
      } finally {
        this.#live = false
        this.#watching = false
      }
    })()
  }
}

/** A model as the access policy sees it. */
export function modelResource(model: Model): ProtectedResource {
  return { type: 'model', identifier: model.identifier, owner: model.owner }
}

/**
 * What `id` names in `served`, for an access check and for the act it guards: the registered
 * model (with its owner), or a model its provider listed at its last check (`provider_id/model`,
 * unowned: llama-stack registers the models its providers list as unowned resources of their
 * own, so a private model registered over the same provider model does not hide it). Undefined
 * for anything else: an authenticated caller reaches nothing a provider does not list.
 */
export function resolveModel(served: ServedModelList, id: string): { readonly resource: ProtectedResource; readonly checked: CheckedModel } | undefined {
  const registered = served.byId.get(id)
  if (registered !== undefined) return { resource: modelResource(registered), checked: { kind: 'registered', owner: registered.owner ?? null } }
  const direct = providerModelOf(id)
  if (direct === undefined || listedBy(served.runtime[direct.providerId], direct.providerModelId) === undefined) return undefined
  return { resource: { type: 'model', identifier: id }, checked: { kind: 'listed' } }
}

/** `{ "object": "list", "data": [...] }` from the JSON of each item, as JSON.stringify would write it. */
function listBody(items: readonly string[]): ModelListBody {
  const body = `{"object":"list","data":[${items.join(',')}]}`
  return { body, bytes: Buffer.byteLength(body) }
}

/**
 * What GET /v1/models lists: the registered models, then, for each provider with
 * `refresh_models`, every model it served at its last check as `provider_id/model` (unless a
 * registered model has that id already), unowned.
 */
function listedModels(listing: ModelListing, byId: ReadonlyMap<string, Model>): Array<{ resource: ProtectedResource; view: Record<string, unknown> }> {
  const data = listing.models.map((model): { resource: ProtectedResource; view: Record<string, unknown> } => ({
    resource: modelResource(model),
    view: openAiModel(model, listing.runtime[model.provider_id]),
  }))
  for (const [providerId, availability] of Object.entries(listing.runtime)) {
    if (!availability.refreshModels) continue
    for (const served of availability.models ?? []) {
      const id = `${providerId}/${served.id}`
      if (!byId.has(id)) data.push({ resource: { type: 'model', identifier: id }, view: servedModelView(providerId, served.id, availability) })
    }
  }
  return data
}

/**
 * A model as OpenAI's API shows it, with llama-stack's `custom_metadata` (provider_id,
 * provider_resource_id, model_type: its test helpers read them) and whether its provider serves
 * it now: `available` is null until the reconciler has checked, and false with
 * `unavailable_reason` when the provider is unreachable or does not list the model.
 */
export function openAiModel(model: Model, availability: ProviderAvailability | undefined): Record<string, unknown> {
  const served = listedBy(availability, model.provider_model_id)
  return {
    id: model.identifier,
    object: 'model',
    created: 0,
    owned_by: model.provider_id,
    provider_id: model.provider_id,
    provider_model_id: model.provider_model_id,
    model_type: model.model_type,
    metadata: model.metadata,
    custom_metadata: { ...reported(served), ...model.metadata, provider_id: model.provider_id, provider_resource_id: model.provider_model_id, model_type: model.model_type },
    ...availabilityOf(model.provider_id, model.provider_model_id, availability, served),
  }
}

/**
 * `provider_id/model`, which routes to that provider without registration: shown from what the
 * provider last listed (its type, context length, …) when it listed it.
 */
export function servedModelView(providerId: string, providerModelId: string, availability: ProviderAvailability | undefined): Record<string, unknown> {
  const served = listedBy(availability, providerModelId)
  const modelType = served?.model_type ?? 'llm'
  const metadata = reported(served)
  return {
    id: `${providerId}/${providerModelId}`,
    object: 'model',
    created: 0,
    owned_by: providerId,
    provider_id: providerId,
    provider_model_id: providerModelId,
    model_type: modelType,
    metadata,
    custom_metadata: { ...metadata, provider_id: providerId, provider_resource_id: providerModelId, model_type: modelType },
    ...availabilityOf(providerId, providerModelId, availability, served),
  }
}

/** What the backend reported of a model, as metadata. */
function reported(served: ServedModel | undefined): Record<string, unknown> {
  if (served === undefined) return {}
  const { context_length, embedding_dimension, capabilities, details } = served
  return {
    ...details,
    ...(context_length === undefined ? {} : { context_length }),
    ...(embedding_dimension === undefined ? {} : { embedding_dimension }),
    ...(capabilities === undefined ? {} : { capabilities }),
  }
}

/** Whether `providerId` serves `modelId` now, as /v1/models shows it: available, not (with why), or not known yet. */
export function modelAvailability(providerId: string, modelId: string, availability: ProviderAvailability | undefined): { available: boolean | null; unavailable_reason?: string } {
  return availabilityOf(providerId, modelId, availability, listedBy(availability, modelId))
}

function availabilityOf(providerId: string, modelId: string, availability: ProviderAvailability | undefined, served: ServedModel | undefined): { available: boolean | null; unavailable_reason?: string } {
  if (availability === undefined || availability.state === 'unknown') return { available: null }
  if (availability.state === 'unreachable') return { available: false, unavailable_reason: availability.reason ?? `provider '${providerId}' is unreachable` }
  if (served !== undefined || availability.models === undefined) return { available: true }
  return { available: false, unavailable_reason: `provider '${providerId}' does not serve '${modelId}': it is not among the ${availability.models.length} models it listed at its last check` }
}
