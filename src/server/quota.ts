import type { Logger } from 'pino'
import type { ActorRef } from '../actor/index.js'
import type { StackConfig } from '../config/index.js'
import type { KvMessage } from '../../actors/stores/protocol.js'
import { ConcurrencySlots, RequestSlots } from './concurrency-slots.js'
import { HttpError } from './http.js'
import { QuotaLedger, QuotaUnavailableError } from './quota-ledger.js'
import type { ServedRequest } from './served-request.js'

type QuotaConfig = NonNullable<StackConfig['server']['quota']>

/** server.quota as the server takes it: the limits, and the store actor of the backend the counts are kept in. */
export interface QuotaSettings {
  readonly store: Pick<ActorRef<KvMessage>, 'ask'>
  /** The backend's name: with the namespace, what tells one place of the counts from another. */
  readonly backend: string
  readonly namespace: string
  readonly anonymousMaxRequests: number
  readonly authenticatedMaxRequests: number
  readonly periodMs: number
  readonly maxConcurrentStreams?: number | undefined
  readonly maxConcurrentRuns?: number | undefined
}

/** llama-stack's periods (its QuotaPeriod), in ms. */
const PERIOD_MS: Readonly<Record<QuotaConfig['period'], number>> = { day: 86_400_000 }

/** The server's settings for a server.quota section, counting in `store`, the actor of its kvstore's backend. */
export function quotaSettings(quota: QuotaConfig, store: Pick<ActorRef<KvMessage>, 'ask'>): QuotaSettings {
  return {
    store,
    backend: quota.kvstore.backend,
    namespace: quota.kvstore.namespace,
    anonymousMaxRequests: quota.anonymous_max_requests,
    authenticatedMaxRequests: quota.authenticated_max_requests,
    periodMs: PERIOD_MS[quota.period],
    maxConcurrentStreams: quota.max_concurrent_streams,
    maxConcurrentRuns: quota.max_concurrent_runs,
  }
}

export interface QuotaContext {
  /** The clock windows are read from. */
  readonly now: () => number
  readonly log: Logger
}

/**
 * server.quota at the HTTP server: the step after authentication that counts each request of a
 * route needing credentials against its client's quota (QuotaLedger), answers the count in
 * RateLimit-* headers, and refuses a request past it with 429 `quota_exceeded` and Retry-After
 * (seconds to the window's end). A client is its principal, or without authentication its IP
 * address, as llama-stack counts (which keys a principal by its bearer token instead: troupe
 * writes no token to a store). It also gives each request its client's concurrency slots.
 */
export class RequestQuota {
  #settings: QuotaSettings
  readonly #ledger: QuotaLedger
  readonly #slots: ConcurrencySlots
  readonly #now: () => number
  readonly #log: Logger

  private constructor(settings: QuotaSettings, slots: ConcurrencySlots, context: QuotaContext) {
    this.#settings = settings
    this.#slots = slots
    this.#now = context.now
    this.#log = context.log
    this.#ledger = new QuotaLedger({ store: settings.store, namespace: settings.namespace, periodMs: settings.periodMs, now: context.now, log: context.log })
  }

  /**
   * The quota for new settings: the current one with its limits replaced while the counts stay
   * where they are (backend, namespace and period unchanged), else a new one, the current one
   * closed (its counts written); undefined without settings. Concurrency slots held go over to
   * the new one, so that they are still counted against its limits.
   */
  static reconfigure(current: RequestQuota | undefined, settings: QuotaSettings | undefined, context: QuotaContext): RequestQuota | undefined {
    if (settings === undefined) {
      void current?.close()
      return undefined
    }
    const limits = { streams: settings.maxConcurrentStreams, runs: settings.maxConcurrentRuns }
    if (current === undefined) return new RequestQuota(settings, new ConcurrencySlots(limits), context)
    current.#slots.configure(limits)
    const before = current.#settings
    if (before.backend === settings.backend && before.namespace === settings.namespace && before.periodMs === settings.periodMs) {
      current.#settings = settings
      return current
    }
    void current.close()
    return new RequestQuota(settings, current.#slots, context)
  }

  /**
   * Counts `request` against its client's quota and sets its RateLimit-* headers; throws 429
   * `quota_exceeded` past the quota, or 503 `quota_unavailable` when the client's count could
   * not be read. Returns a promise only for a client's first request in a window, whose count is
   * read from the store first.
   */
  admit(request: ServedRequest): Promise<void> | undefined {
    const principal = request.principal
    const client = principal === undefined ? `a:${request.req.socket.remoteAddress ?? 'unknown'}` : `p:${principal.principal}`
    if (this.#slots.limited) request.slots = new RequestSlots(this.#slots, client, describe(client), request)
    const limit = principal === undefined ? this.#settings.anonymousMaxRequests : this.#settings.authenticatedMaxRequests
    const counted = this.#ledger.take(client, limit)
    if (typeof counted === 'number') return this.#answer(request, client, limit, counted)
    return counted.then(
      used => this.#answer(request, client, limit, used),
      (error: unknown) => {
        if (!(error instanceof QuotaUnavailableError)) throw error
        // Logged by the server with the request, as every 5xx is.
        throw new HttpError(503, 'quota_unavailable', `${error.message}; retry shortly`, null, { 'retry-after': '1' })
      },
    )
  }

  #answer(request: ServedRequest, client: string, limit: number, used: number): undefined {
    const now = this.#now()
    const until = this.#ledger.windowEnd(now)
    const resetS = Math.max(1, Math.ceil((until - now) / 1000))
    const policy = `${limit};w=${this.#settings.periodMs / 1000}`
    if (used > 0) {
      const { res } = request
      res.setHeader('ratelimit-limit', limit)
      res.setHeader('ratelimit-remaining', limit - used)
      res.setHeader('ratelimit-reset', resetS)
      res.setHeader('ratelimit-policy', policy)
      return undefined
    }
    // The first refusal of a client in a window is logged; the rest are counted by the metrics (429).
    if (used === -1) this.#log.warn({ request_id: request.id, client: describe(client), limit, until: new Date(until).toISOString() }, 'a client reached its request quota')
    const field = `server.quota.${request.principal === undefined ? 'anonymous' : 'authenticated'}_max_requests`
    throw new HttpError(
      429,
      'quota_exceeded',
      `Quota exceeded: ${describe(client)} may make ${limit} requests a ${periodName(this.#settings.periodMs)} (${field}); the quota renews at ${new Date(until).toISOString()}, in ${resetS} s`,
      null,
      { 'retry-after': String(resetS), 'ratelimit-limit': String(limit), 'ratelimit-remaining': '0', 'ratelimit-reset': String(resetS), 'ratelimit-policy': policy },
    )
  }

  /** Writes the counts that changed; the counts are in the store when it resolves. */
  close(): Promise<void> {
    return this.#ledger.close()
  }
}

/** A client as a refusal or a log line names it. */
function describe(client: string): string {
  return client.startsWith('p:') ? `principal '${client.slice(2)}'` : `the unauthenticated client at ${client.slice(2)}`
}

function periodName(periodMs: number): string {
  return Object.entries(PERIOD_MS).find(([, ms]) => ms === periodMs)?.[0] ?? `${periodMs / 1000} s`
}
