import { z } from 'zod'
import { ActorError, CancelSource, defineBehavior, type ActorRef, type BehaviorContext } from '../actor/index.js'
import type { StackConfig } from '../config/index.js'
import type { InferenceMessage, UpstreamModel } from '../../actors/providers/inference/protocol.js'
import type { ModelListing, ModelsMessage, ProviderAvailability } from '../../actors/routing/models.js'
import { CircuitBreaker, type BreakerSettings, type BreakerView } from './circuit-breaker.js'
import { ModelCache, type InvalidationReason, type ModelCacheStats, type ServedModel } from './model-cache.js'

/**
 * The runtime-state reconciler: it keeps what each declared provider really serves beside what
 * the config declares. Cycles run in the background (at start, every `interval_ms`, and right
 * after a config change); each asks every provider for its models at once, each ask under its
 * own timeout, so a slow backend delays nobody. Per provider a circuit breaker stops asking one
 * that keeps failing and tries it again later, half-open.
 *
 * Readers get the last snapshot at once (`snapshot`); nothing waits on a cycle. After every
 * cycle the routing-relevant part (reachable or not, refused until when, the models served) is
 * published to the models routing table, which routes with it and lists it in /v1/models.
 *
 * It only reads: it never deletes or changes anything on a backend, and never unregisters a
 * declared model; a registered model its provider does not serve is shown as unavailable.
 */

/** A provider as the reconciler knows it: no config, only digests of it (and a masked copy to show). */
export interface ReconciledProvider {
  readonly providerId: string
  readonly providerType: string
  readonly api: string
  readonly ref: ActorRef<InferenceMessage>
  /** providerFingerprint of its config: the model cache key, taken without secrets. */
  readonly fingerprint: string
  /** providerRevision of its whole config, secrets included: it changes when a key is rotated. Never shown. */
  readonly revision: string
  /** `refresh_models` in its config: every model it serves is listed in /v1/models as provider_id/model. */
  readonly refreshModels: boolean
  /** Its config with secrets masked, for /v1/providers. */
  readonly config: unknown
}

export interface ReconcilerSettings extends BreakerSettings {
  readonly intervalMs: number
  /** How long one provider's listing may take before it counts as a failure. */
  readonly timeoutMs: number
  /** How long a listing is reused by a cycle that an event about another provider started. */
  readonly cacheTtlMs: number
}

export function reconcilerSettings(config: StackConfig['troupe']['reconciler']): ReconcilerSettings {
  return {
    intervalMs: config.interval_ms,
    timeoutMs: config.timeout_ms,
    cacheTtlMs: config.cache_ttl_ms,
    failureThreshold: config.failure_threshold,
    backoffMs: config.backoff_ms,
    maxBackoffMs: config.max_backoff_ms,
  }
}

/** One provider in the snapshot. Times are ISO strings; null until known. */
export interface ProviderRuntime {
  readonly provider_id: string
  readonly provider_type: string
  readonly api: string
  /** null until its first answer (or failure). */
  readonly reachable: boolean | null
  /** Since when it has been reachable (or not). */
  readonly since: string | null
  readonly checked_at: string | null
  readonly latency_ms: number | null
  /** The last failure, with its typed code (timeout, upstream, auth, …); null once it answers. */
  readonly error: { readonly code: string; readonly message: string } | null
  readonly breaker: BreakerView
  /** What it served at its last listing (kept while it is unreachable); null if never listed. */
  readonly models: readonly ServedModel[] | null
  readonly models_listed_at: string | null
  readonly refresh_models: boolean
  /** Its config, secrets masked. */
  readonly config: unknown
}

export interface RuntimeSnapshot {
  readonly cycles: number
  readonly last_cycle: { readonly reason: string; readonly started_at: string; readonly duration_ms: number } | null
  /** The settings in force, as troupe.reconciler names them. */
  readonly settings: StackConfig['troupe']['reconciler']
  readonly providers: readonly ProviderRuntime[]
  readonly cache: ModelCacheStats
}

const providerList = z.array(z.custom<ReconciledProvider>(p => typeof (p as ReconciledProvider | null)?.providerId === 'string', 'must be a reconciled provider'))
const settings = z.custom<ReconcilerSettings>(s => typeof (s as ReconcilerSettings | null)?.intervalMs === 'number', 'must be reconciler settings')
const reason = z.enum(['reload', 'model_registered', 'model_unregistered', 'provider_restarted'])

export const reconcilerProtocol = z.discriminatedUnion('type', [
  /** The last snapshot, at once: a RuntimeSnapshot. */
  z.object({ type: z.literal('snapshot') }),
  /** Runs a cycle (of one provider, or all) and answers its snapshot once it is done. */
  z.object({ type: z.literal('refresh'), provider_id: z.string().optional() }),
  /** Drops the cached list of one provider (or all) and checks it again, in the background. */
  z.object({ type: z.literal('invalidate'), reason, provider_id: z.string().optional() }),
  /** A config change: new settings and providers; the cache is cleared and a cycle runs, in the background. */
  z.object({ type: z.literal('configure'), settings, providers: providerList }),
  /** The providers running now (a reload is moving them): replaces the set, runs no cycle. */
  z.object({ type: z.literal('setProviders'), providers: providerList }),
  /** Publishes the routing summary again: the routing table restarted without it. */
  z.object({ type: z.literal('publish') }),
])
export type ReconcilerMessage = z.infer<typeof reconcilerProtocol>

export interface ReconcilerArgs {
  readonly providers: readonly ReconciledProvider[]
  readonly settings: ReconcilerSettings
  /** The models routing table, told the routing summary after each cycle. */
  readonly models: ActorRef<ModelsMessage>
}

interface Tracked {
  /** Replaced in place when only its ref changes: a listing under way still reports to this entry. */
  provider: ReconciledProvider
  readonly breaker: CircuitBreaker
  reachable: boolean | null
  since: number | null
  checkedAt: number | null
  latencyMs: number | null
  error: { code: string; message: string } | null
  /** When it last answered a listing (its models are in the cache while that is young enough). */
  listedAt: number | null
  /** Grows with each invalidation of this provider: a listing started before one does not answer for after it. */
  epoch: number
  /** The listing under way and the epoch it started in: a check in the same epoch joins it. */
  asking: { readonly done: Promise<void>; readonly epoch: number } | undefined
}

interface State {
  settings: ReconcilerSettings
  readonly tracked: Map<string, Tracked>
  readonly cache: ModelCache
  readonly models: ActorRef<ModelsMessage>
  cycles: number
  lastCycle: RuntimeSnapshot['last_cycle']
  /** When the next full cycle is due, ms since the epoch. */
  nextCycleAt: number
  timer: NodeJS.Timeout | undefined
  /** The summary last sent to the table, as JSON: the table is told again only when it changes. */
  published: string
  /** When the last summary was made (ms): the cached lists that expired by then are out of it. */
  summarisedAt: number
  /** Cancelled when the actor stops: ends the listings in flight. */
  readonly stopped: CancelSource
  readonly ctx: BehaviorContext<ReconcilerMessage>
}

/** A timer never waits less than this, however close a breaker's retry time is. */
const MIN_DELAY_MS = 10
/** How long a reconciler that starts waits for the routing table's last summary before going on without it. */
const SEED_TIMEOUT_MS = 1000

export const reconciler = defineBehavior(import.meta.url, 'reconciler', {
  protocol: reconcilerProtocol,
  // A snapshot is answered while a refresh waits on its cycle.
  maxConcurrent: 64,
  async init(args: ReconcilerArgs, ctx): Promise<State> {
    const state: State = {
      settings: args.settings,
      tracked: new Map(),
      cache: new ModelCache(),
      models: args.models,
      cycles: 0,
      lastCycle: null,
      nextCycleAt: 0,
      timer: undefined,
      published: '',
      summarisedAt: 0,
      stopped: new CancelSource(),
      ctx,
    }
    track(state, args.providers)
    await seed(state)
    // The first cycle runs in the background: a start never waits on a backend.
    void runCycle(state, 'start')
    return state
  },
  async receive(state, msg: ReconcilerMessage) {
    switch (msg.type) {
      case 'snapshot':
        return snapshotOf(state)
      case 'refresh':
        await runCycle(state, 'refresh', msg.provider_id)
        return snapshotOf(state)
      case 'invalidate':
        state.cache.invalidate(msg.reason, msg.provider_id)
        for (const t of state.tracked.values()) if (msg.provider_id === undefined || t.provider.providerId === msg.provider_id) t.epoch++
        void runCycle(state, msg.reason, msg.provider_id)
        return null
      case 'configure':
        state.settings = msg.settings
        for (const t of state.tracked.values()) t.breaker.configure(msg.settings)
        track(state, msg.providers)
        state.cache.invalidate('reload')
        for (const t of state.tracked.values()) t.epoch++
        // The routing table may have been restarted by this reload: it is told everything again.
        state.published = ''
        void runCycle(state, 'reload')
        return null
      case 'setProviders':
        track(state, msg.providers)
        await publish(state)
        return null
      case 'publish':
        state.published = ''
        await publish(state)
        return null
    }
  },
  stop(state) {
    clearTimeout(state.timer)
    state.stopped.cancel()
  },
})

/**
 * Makes the tracked set the given providers. New ones start unknown; kept ones keep their state
 * (a new ref after a replace, say), unless their config changed, a rotated key included: then
 * what was found of the old one says nothing of the new, and an open breaker must not keep it
 * from the check that follows.
 */
function track(state: State, providers: readonly ReconciledProvider[]): void {
  const ids = new Set(providers.map(p => p.providerId))
  for (const id of state.tracked.keys()) if (!ids.has(id)) state.tracked.delete(id)
  for (const provider of providers) {
    const known = state.tracked.get(provider.providerId)
    if (known !== undefined && known.provider.fingerprint === provider.fingerprint && known.provider.revision === provider.revision) {
      known.provider = provider
      continue
    }
    state.tracked.set(provider.providerId, {
      provider,
      breaker: new CircuitBreaker(state.settings),
      reachable: null,
      since: null,
      checkedAt: null,
      latencyMs: null,
      error: null,
      listedAt: null,
      epoch: (known?.epoch ?? 0) + 1,
      asking: undefined,
    })
  }
}

/**
 * A reconciler that restarts starts from what the routing table last had of each provider: a
 * provider that was circuit-open stays refused until its retry time, instead of being routed
 * to again until it fails `failure_threshold` more checks.
 */
async function seed(state: State): Promise<void> {
  let listing: ModelListing
  try {
    listing = await state.models.ask<ModelListing>({ type: 'list' }, { timeoutMs: SEED_TIMEOUT_MS, cancellation: state.stopped })
  } catch (error) {
    state.ctx.log.debug({ err: error }, 'the routing table did not give its last runtime summary; starting without it')
    return
  }
  const now = Date.now()
  for (const [id, availability] of Object.entries(listing.runtime)) {
    const t = state.tracked.get(id)
    if (t === undefined || availability.state !== 'unreachable' || availability.error === undefined) continue
    Object.assign(t, { reachable: false, since: availability.error.since, error: { code: availability.error.code, message: availability.error.message } })
    if (availability.refuseUntil > now) t.breaker.restoreOpen(availability.refuseUntil, now)
  }
}

type CycleReason = 'start' | 'interval' | 'probe' | 'refresh' | InvalidationReason

/**
 * One cycle: every provider (or the one named) whose breaker lets it is asked for its models,
 * all at once. A probe cycle asks only the providers whose breaker has come to its half-open
 * time.
 *
 * The next full cycle is timed from this one's start, not its end, and each provider's result
 * is published as it comes: a provider that hangs until its timeout holds up neither the
 * others' results nor the next cycle (which joins its listing still under way).
 */
async function runCycle(state: State, reason: CycleReason, providerId?: string): Promise<void> {
  const started = Date.now()
  if (providerId === undefined && reason !== 'probe') {
    state.nextCycleAt = started + state.settings.intervalMs
    schedule(state)
  }
  const targets = [...state.tracked.values()].filter(t => {
    if (providerId !== undefined) return t.provider.providerId === providerId
    return reason !== 'probe' || (t.breaker.state === 'open' && t.breaker.retryAt <= started)
  })
  await Promise.all(targets.map(t => check(state, t.provider.providerId)))
  if (state.stopped.cancelled) return
  // Before the cycle counts as done: a reader that sees it in the snapshot is routed by it too.
  await publish(state)
  state.cycles++
  state.lastCycle = { reason, started_at: new Date(started).toISOString(), duration_ms: Date.now() - started }
  schedule(state)
}

/** Lists one provider's models, unless its breaker says not to. */
function check(state: State, providerId: string): Promise<void> {
  const tracked = state.tracked.get(providerId)
  if (tracked === undefined) return Promise.resolve()
  if (tracked.asking !== undefined) {
    // One started before an invalidation answers for before it: ask again once it is done.
    return tracked.asking.epoch === tracked.epoch ? tracked.asking.done : tracked.asking.done.then(() => check(state, providerId))
  }
  const now = Date.now()
  if (!tracked.breaker.tryAsk(now)) return Promise.resolve()
  const { provider } = tracked
  // The entry may be replaced meanwhile (a reload changed the provider): results go to the one asked for.
  const current = (): Tracked | undefined => (state.tracked.get(providerId) === tracked ? tracked : undefined)
  const done = listModels(state, provider).then(
    ({ models, latencyMs }) => {
      const at = Date.now()
      tracked.breaker.success()
      if (current() === undefined) return
      if (tracked.reachable !== true) tracked.since = at
      Object.assign(tracked, { reachable: true, checkedAt: at, latencyMs, error: null, listedAt: at })
      state.cache.set(provider.fingerprint, providerId, { models, listedAt: at, latencyMs })
      void publish(state)
    },
    (error: unknown) => {
      if (state.stopped.cancelled) return
      const at = Date.now()
      tracked.breaker.failure(at)
      if (current() === undefined) return
      if (tracked.reachable !== false) tracked.since = at
      const failure = error instanceof ActorError ? { code: error.code, message: error.message } : { code: 'internal', message: String(error) }
      Object.assign(tracked, { reachable: false, checkedAt: at, latencyMs: at - now, error: failure })
      state.ctx.log.warn({ provider: providerId, code: failure.code, breaker: tracked.breaker.state }, `provider '${providerId}' did not list its models: ${failure.message}`)
      void publish(state)
    },
  )
  tracked.asking = { done: done.finally(() => (tracked.asking = undefined)), epoch: tracked.epoch }
  return tracked.asking.done
}

async function listModels(state: State, provider: ReconciledProvider): Promise<{ models: ServedModel[]; latencyMs: number }> {
  const started = performance.now()
  const listed = await provider.ref.ask<UpstreamModel[]>({ type: 'listModels' }, { timeoutMs: state.settings.timeoutMs, cancellation: state.stopped })
  return { models: listed.map(servedModel), latencyMs: Math.round((performance.now() - started) * 10) / 10 }
}

/** Only the fields troupe shows: an external provider module (providers[].module) may answer with more. */
function servedModel(model: UpstreamModel): ServedModel {
  const { id, model_type, context_length, embedding_dimension, capabilities, details } = model
  return {
    id,
    model_type,
    ...(context_length === undefined ? {} : { context_length }),
    ...(embedding_dimension === undefined ? {} : { embedding_dimension }),
    ...(capabilities === undefined ? {} : { capabilities }),
    ...(details === undefined ? {} : { details }),
  }
}

/**
 * The next timer: the next full cycle, or sooner when an open breaker's half-open time comes
 * first, or a provider's cached list expires (the table must stop listing it).
 */
function schedule(state: State): void {
  clearTimeout(state.timer)
  if (state.stopped.cancelled) return
  const now = Date.now()
  let due = state.nextCycleAt
  for (const t of state.tracked.values()) {
    const retryAt = t.breaker.retryAt
    if (retryAt > 0 && retryAt < due) due = retryAt
    // One that expired after the last summary was made, even a moment ago, is still in it.
    const expiry = t.listedAt === null ? 0 : t.listedAt + state.settings.cacheTtlMs
    if (expiry > state.summarisedAt && expiry < due) due = expiry
  }
  state.timer = setTimeout(() => tick(state), Math.max(due - now, MIN_DELAY_MS))
  state.timer.unref()
}

function tick(state: State): void {
  const now = Date.now()
  if (now >= state.nextCycleAt) void runCycle(state, 'interval')
  else if ([...state.tracked.values()].some(t => t.breaker.state === 'open' && t.breaker.retryAt <= now)) void runCycle(state, 'probe')
  // A cached list expired: the summary without it goes out.
  else void publish(state).then(() => schedule(state))
}

/**
 * Tells the routing table what routing needs, when it changed since it was last told. Marked
 * sent before the send, so that of two summaries in flight the later is never taken for the
 * one the table has; a table that does not take it in time (it is restarting) is told again
 * after the next cycle.
 */
async function publish(state: State): Promise<void> {
  const now = Date.now()
  state.summarisedAt = now
  const providers: Record<string, ProviderAvailability> = {}
  for (const [id, t] of state.tracked) providers[id] = availabilityOf(state, t, now)
  const json = JSON.stringify(providers)
  if (json === state.published) return
  state.published = json
  try {
    await state.models.ask({ type: 'runtime', providers }, { timeoutMs: state.settings.timeoutMs, cancellation: state.stopped })
  } catch (error) {
    if (state.published === json) state.published = ''
    if (!state.stopped.cancelled) state.ctx.log.debug({ err: error }, 'the routing table did not take the runtime summary; it is sent again after the next cycle')
  }
}

/** The models a provider served at its last listing, while the cache holds them. */
const modelsOf = (state: State, t: Tracked, now: number): readonly ServedModel[] | undefined => state.cache.get(t.provider.fingerprint, now, state.settings.cacheTtlMs)?.models

function availabilityOf(state: State, t: Tracked, now: number): ProviderAvailability {
  const refuseUntil = t.breaker.retryAt
  const models = modelsOf(state, t, now)
  const base = { refuseUntil, refreshModels: t.provider.refreshModels, ...(models === undefined ? {} : { models }) }
  if (t.reachable === null) return { state: 'unknown', ...base }
  if (t.reachable) return { state: 'reachable', ...base }
  const since = t.since === null ? '' : ` since ${new Date(t.since).toISOString()}`
  const breaker = refuseUntil > 0 ? `; circuit open until ${new Date(refuseUntil).toISOString()}` : ''
  const error = t.error ?? { code: 'internal', message: 'no error was recorded' }
  return {
    state: 'unreachable',
    reason: `provider '${t.provider.providerId}' is unreachable${since}: ${error.code}: ${error.message}${breaker}`,
    error: { ...error, since: t.since ?? now },
    ...base,
  }
}

function snapshotOf(state: State): RuntimeSnapshot {
  const now = Date.now()
  const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString())
  return {
    cycles: state.cycles,
    last_cycle: state.lastCycle,
    settings: {
      interval_ms: state.settings.intervalMs,
      timeout_ms: state.settings.timeoutMs,
      cache_ttl_ms: state.settings.cacheTtlMs,
      failure_threshold: state.settings.failureThreshold,
      backoff_ms: state.settings.backoffMs,
      max_backoff_ms: state.settings.maxBackoffMs,
    },
    providers: [...state.tracked.values()].map(
      (t): ProviderRuntime => ({
        provider_id: t.provider.providerId,
        provider_type: t.provider.providerType,
        api: t.provider.api,
        reachable: t.reachable,
        since: iso(t.since),
        checked_at: iso(t.checkedAt),
        latency_ms: t.latencyMs,
        error: t.error,
        breaker: t.breaker.view(),
        models: modelsOf(state, t, now) ?? null,
        models_listed_at: iso(t.listedAt),
        refresh_models: t.provider.refreshModels,
        config: t.provider.config,
      }),
    ),
    cache: state.cache.stats(),
  }
}
