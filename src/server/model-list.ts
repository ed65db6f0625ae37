import type { Logger } from 'pino'
import { CancelSource, type ActorRef } from '../actor/index.js'
import type { Model, ModelListing, ModelsMessage } from '../../actors/routing/models.js'

/** GET /v1/models's body, as JSON with its length in bytes, and the listing version it shows. */
export interface ServedModelList {
  readonly version: number
  readonly body: string
  readonly bytes: number
  /** The same listing by model id, for routing. */
  readonly byId: ReadonlyMap<string, Model>
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

  constructor(models: ActorRef<ModelsMessage>, log: Logger) {
    this.#models = models
    this.#log = log
  }

  /** The list to serve: the watched one, or asked for when no watch is live. */
  current(): ServedModelList | Promise<ServedModelList> {
    return this.#live ? this.#served! : this.refresh()
  }

  /**
   * The registry by model id while the watch is live, else undefined (and the watch is started):
   * the caller then routes through the table, which always has the current registry.
   */
  registry(): ReadonlyMap<string, Model> | undefined {
    if (this.#live) return this.#served!.byId
    this.#watch()
    return undefined
  }

  /** Asks the routing table for its listing; after a write it includes that write. */
  async refresh(): Promise<ServedModelList> {
    const listing = await this.#models.ask<ModelListing>({ type: 'list' })
    this.#watch()
    return this.#keep(listing)
  }

  /** Ends the watch. */
  close(): void {
    this.#closed.cancel()
  }

  #keep(listing: ModelListing): ServedModelList {
    const served = this.#served
    if (served !== undefined && served.version >= listing.version) return served
    const body = JSON.stringify({ object: 'list', data: listing.models.map(openAiModel) })
    const byId = new Map(listing.models.map(model => [model.identifier, model]))
    return (this.#served = { version: listing.version, body, bytes: Buffer.byteLength(body), byId })
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

/** A model as OpenAI's API shows it, plus where it is served from. */
export function openAiModel(model: Model): Record<string, unknown> {
  return {
    id: model.identifier,
    object: 'model',
    created: 0,
    owned_by: model.provider_id,
    provider_id: model.provider_id,
    provider_model_id: model.provider_model_id,
    model_type: model.model_type,
    metadata: model.metadata,
  }
}
