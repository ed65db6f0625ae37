import type { Logger } from 'pino'
import { Counter, Gauge, Registry } from 'prom-client'
import { actorNodes, type ActorRef, type ActorSystem, type SystemSnapshot } from '../actor/index.js'
import { HttpMetrics } from '../server/http-metrics.js'
import type { ServerMetrics } from '../server/routes/metrics.js'
import type { ReconcilerMessage, RuntimeSnapshot } from '../stack/reconciler.js'
import type { InferenceStats, InferenceStoreMessage } from '../../actors/stores/inference-store.js'
import type { WorkflowMessage, WorkflowStats } from '../../actors/workflows/protocol.js'
import type { ReloadReport } from './stack-supervisor.js'

/** The actors a scrape reads, as they run now: a reload replaces them, so they are asked for at each scrape. */
export interface MetricSources {
  readonly reconciler?: ActorRef<ReconcilerMessage> | undefined
  readonly inferenceStore?: ActorRef<InferenceStoreMessage> | undefined
  readonly workflows?: ReadonlyArray<{ readonly name: string; readonly ref: ActorRef<WorkflowMessage> }> | undefined
}

export interface StackMetricsOptions {
  readonly system: ActorSystem
  readonly sources: () => MetricSources
  readonly log: Logger
  /** How long a scrape waits on each source; one that has not answered by then is left out of that scrape. */
  readonly sourceTimeoutMs?: number
}

const DEFAULT_SOURCE_TIMEOUT_MS = 1000
const RELOAD_RESULTS = ['applied', 'unchanged', 'invalid', 'partial', 'refused'] as const satisfies ReadonlyArray<ReloadReport['result']>
const BREAKER_STATES = ['closed', 'open', 'half_open'] as const
/** The sources a scrape reads, as `troupe_metrics_source_errors_total` names them. */
const SOURCES = ['actors', 'reconciler', 'inference_store', 'workflows'] as const
type Source = (typeof SOURCES)[number]
const LATE = Symbol('late')

/** One actor kind's figures, summed over its actors. */
interface KindFigures {
  readonly byStatus: Map<string, number>
  mailboxDepth: number
  mailboxDepthMax: number
  messagesHandled: number
  restarts: number
}

/** What one scrape read; a source that failed or timed out is undefined (or left out). */
interface Gathered {
  readonly actors: { readonly snapshot: SystemSnapshot; readonly byKind: ReadonlyMap<string, KindFigures> } | undefined
  readonly runtime: RuntimeSnapshot | undefined
  readonly inference: InferenceStats | undefined
  readonly workflows: ReadonlyArray<{ readonly name: string; readonly stats: WorkflowStats }>
}

type Fill<L extends string> = (gathered: Gathered, record: (labels: Record<L, string>, value: number) => void) => void

/**
 * The stack's Prometheus metrics, in a registry of their own (never prom-client's global one, so
 * that two stacks in one process, as in tests, never share a figure). Requests are counted as
 * they are answered (HttpMetrics); everything else is read when scraped, and only then: one
 * `system.inspect()` (which asks each worker for its stats over the admin channel, so the
 * message path pays nothing), one `stats` ask to the inference store and to each workflow, the
 * reconciler's snapshot. Each source is bounded by `sourceTimeoutMs`: a hung actor costs a
 * scrape that source, counted in `troupe_metrics_source_errors_total`, never the scrape.
 *
 * Actors are labelled by kind (their behaviour's export name), never by id: a stack of 1,000
 * actors makes one series per kind. No label carries a config value other than a provider id,
 * a workflow name or a route's documented path, and none carries anything from a request.
 */
export class StackMetrics implements ServerMetrics {
  readonly registry = new Registry()
  readonly http: HttpMetrics
  readonly #system: ActorSystem
  readonly #sources: () => MetricSources
  readonly #log: Logger
  readonly #timeoutMs: number
  readonly #reloads: Counter<'result'>
  readonly #sourceErrors: Counter<'source'>
  /** The scrape under way: every family's collect reads this one gathering. */
  #gathering: Promise<Gathered> | undefined

  constructor(options: StackMetricsOptions) {
    this.#system = options.system
    this.#sources = options.sources
    this.#log = options.log
    this.#timeoutMs = options.sourceTimeoutMs ?? DEFAULT_SOURCE_TIMEOUT_MS
    this.http = new HttpMetrics(this.registry)
    this.#reloads = new Counter({ name: 'troupe_config_reloads_total', help: 'Config reloads, by result', labelNames: ['result'], registers: [this.registry] })
    for (const result of RELOAD_RESULTS) this.#reloads.inc({ result }, 0)
    const gathered = (): Promise<Gathered> => this.#gathered()
    this.#sourceErrors = new Counter({
      name: 'troupe_metrics_source_errors_total',
      help: 'Scrapes that left a source out: it failed, or did not answer within the source timeout',
      labelNames: ['source'],
      registers: [this.registry],
      // Waits for the gathering, so that a scrape reports its own timeouts.
      async collect() {
        await gathered()
      },
    })
    for (const source of SOURCES) this.#sourceErrors.inc({ source }, 0)
    this.#actorFamilies()
    this.#threadFamilies()
    this.#storeFamilies()
    this.#providerFamilies()
    this.#workflowFamilies()
  }

  /** Counts one reload by its result. */
  countReload(result: ReloadReport['result']): void {
    this.#reloads.inc({ result })
  }

  async scrape(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() }
  }

  #actorFamilies(): void {
    const perKind = (read: (figures: KindFigures) => number): Fill<'kind'> => (g, record) => {
      for (const [kind, figures] of g.actors?.byKind ?? []) record({ kind }, read(figures))
    }
    this.#gauge('troupe_actors', 'Actors, by kind (behaviour) and status', ['kind', 'status'], (g, record) => {
      for (const [kind, { byStatus }] of g.actors?.byKind ?? []) for (const [status, count] of byStatus) record({ kind, status }, count)
    })
    this.#gauge('troupe_actor_mailbox_depth', 'Messages waiting in the mailboxes of the actors of a kind', ['kind'], perKind(f => f.mailboxDepth))
    this.#gauge('troupe_actor_mailbox_depth_max', 'The deepest mailbox among the actors of a kind', ['kind'], perKind(f => f.mailboxDepthMax))
    this.#counter('troupe_actor_messages_handled_total', 'Messages (tells and asks) handled by the running incarnations of the actors of a kind', ['kind'], perKind(f => f.messagesHandled))
    this.#counter('troupe_actor_restarts_total', 'Restarts of the actors of a kind by their supervisors (each follows a crash or an exit of a permanent actor)', ['kind'], perKind(f => f.restarts))
    this.#counter('troupe_dead_letters_total', 'Tells that could not be delivered, by code (backpressure, stopped, crashed, …)', ['code'], (g, record) => {
      const byCode = new Map<string, number>()
      for (const thread of g.actors?.snapshot.threads ?? []) for (const [code, count] of Object.entries(thread.deadLetters.byCode)) byCode.set(code, (byCode.get(code) ?? 0) + count)
      for (const [code, count] of byCode) record({ code }, count)
    })
  }

  #threadFamilies(): void {
    const perThread = (read: (thread: SystemSnapshot['threads'][number]) => number | undefined): Fill<'thread' | 'placement'> => (g, record) => {
      for (const thread of g.actors?.snapshot.threads ?? []) {
        const value = read(thread)
        if (value !== undefined) record({ thread: String(thread.thread), placement: thread.kind }, value)
      }
    }
    this.#gauge('troupe_threads', 'Threads hosting actors, by placement (main, pool, dedicated)', ['placement'], (g, record) => {
      const counts = new Map<string, number>()
      for (const thread of g.actors?.snapshot.threads ?? []) counts.set(thread.kind, (counts.get(thread.kind) ?? 0) + 1)
      for (const [placement, count] of counts) record({ placement }, count)
    })
    this.#gauge('troupe_thread_actors', 'Actors hosted by each thread', ['thread', 'placement'], perThread(t => t.actors))
    this.#gauge('troupe_thread_pending_asks', 'Asks each thread is waiting on', ['thread', 'placement'], perThread(t => t.pendingAsks))
    this.#gauge('troupe_thread_held_for_restart', 'Messages each thread holds for restarting actors', ['thread', 'placement'], perThread(t => t.heldForRestart))
    const quantiles = [
      ['0.5', 'p50Ms'],
      ['0.99', 'p99Ms'],
      ['1', 'maxMs'],
    ] as const
    this.#gauge(
      'troupe_thread_event_loop_delay_seconds',
      "How late each thread's event loop ran its timers, over its last window of 10 s (quantile 1 is the maximum)",
      ['thread', 'placement', 'quantile'],
      (g, record) => {
        for (const thread of g.actors?.snapshot.threads ?? []) {
          const delay = thread.eventLoopDelay
          if (delay === null) continue
          for (const [quantile, field] of quantiles) record({ thread: String(thread.thread), placement: thread.kind, quantile }, delay[field] / 1000)
        }
      },
    )
  }

  #storeFamilies(): void {
    const inference = (read: (stats: InferenceStats) => number): Fill<'store'> => (g, record) => {
      if (g.inference !== undefined) record({ store: 'inference' }, read(g.inference))
    }
    this.#gauge('troupe_store_write_queue', "Writes in a store's write queue: queued, waiting for room, in flight", ['store', 'state'], (g, record) => {
      const stats = g.inference
      if (stats === undefined) return
      record({ store: 'inference', state: 'queued' }, stats.queued)
      record({ store: 'inference', state: 'waiting' }, stats.waiting)
      record({ store: 'inference', state: 'in_flight' }, stats.inFlight)
    })
    this.#gauge('troupe_store_write_queue_capacity', 'Writes a store queues or has in flight at most (max_write_queue_size)', ['store'], inference(s => s.maxQueue))
    this.#counter('troupe_store_writes_total', 'Writes committed', ['store'], inference(s => s.written))
    this.#counter('troupe_store_write_failures_total', 'Batches the store failed or refused (each retried or failed)', ['store'], inference(s => s.failures))
    this.#counter('troupe_store_commits_total', 'Batches committed, each one transaction', ['store'], inference(s => s.commits))
    this.#counter('troupe_store_commit_seconds_total', 'Time the committed batches took, from the ask to the store to its answer (divide by commits for the mean)', ['store'], inference(s => s.commitMsTotal / 1000))
  }

  #providerFamilies(): void {
    this.#gauge('troupe_provider_reachable', "1 if the provider answered its last check, 0 if not; absent until first checked", ['provider'], (g, record) => {
      for (const p of g.runtime?.providers ?? []) if (p.reachable !== null) record({ provider: p.provider_id }, p.reachable ? 1 : 0)
    })
    this.#gauge('troupe_provider_latency_seconds', "How long the provider's last check (its model list) took", ['provider'], (g, record) => {
      for (const p of g.runtime?.providers ?? []) if (p.latency_ms !== null) record({ provider: p.provider_id }, p.latency_ms / 1000)
    })
    this.#gauge('troupe_provider_breaker_state', "1 for the state the provider's circuit breaker is in, 0 for the others", ['provider', 'state'], (g, record) => {
      for (const p of g.runtime?.providers ?? []) for (const state of BREAKER_STATES) record({ provider: p.provider_id, state }, p.breaker.state === state ? 1 : 0)
    })
    this.#counter('troupe_reconciler_cycles_total', 'Reconciler cycles run', [], (g, record) => {
      if (g.runtime !== undefined) record({}, g.runtime.cycles)
    })
  }

  #workflowFamilies(): void {
    this.#gauge('troupe_workflow_runs', 'Runs executing or queued, by workflow', ['workflow', 'status'], (g, record) => {
      for (const { name, stats } of g.workflows) {
        record({ workflow: name, status: 'running' }, stats.running)
        record({ workflow: name, status: 'queued' }, stats.queued)
      }
    })
    this.#counter('troupe_workflow_runs_finished_total', "Runs finished since the workflow's actor started, by status", ['workflow', 'status'], (g, record) => {
      for (const { name, stats } of g.workflows) for (const status of ['completed', 'failed', 'cancelled'] as const) record({ workflow: name, status }, stats[status])
    })
    this.#counter('troupe_workflow_runs_resumed_total', "Runs resumed since the workflow's actor started", ['workflow'], (g, record) => {
      for (const { name, stats } of g.workflows) record({ workflow: name }, stats.resumed)
    })
  }

  /** A gauge set from the scrape's gathering; series not recorded this time are dropped. */
  #gauge<L extends string>(name: string, help: string, labelNames: readonly L[], fill: Fill<L>): void {
    new Gauge<L>({ name, help, labelNames, registers: [this.registry], collect: this.#collector<Gauge<L>, L>(fill, (gauge, labels, value) => gauge.set(labels, value)) })
  }

  /**
   * A counter whose total is kept by the runtime and read at the scrape (reset, then set by one
   * increment). A total that restarts with its actor or thread reads as a counter reset.
   */
  #counter<L extends string>(name: string, help: string, labelNames: readonly L[], fill: Fill<L>): void {
    new Counter<L>({ name, help, labelNames, registers: [this.registry], collect: this.#collector<Counter<L>, L>(fill, (counter, labels, value) => counter.inc(labels, value)) })
  }

  /** A collect callback: the metric emptied, then filled from the scrape's shared gathering by `record`. */
  #collector<M extends { reset(): void }, L extends string>(fill: Fill<L>, record: (metric: M, labels: Partial<Record<L, string | number>>, value: number) => void): (this: M) => Promise<void> {
    const gathered = (): Promise<Gathered> => this.#gathered()
    return async function (this: M) {
      const g = await gathered()
      this.reset()
      fill(g, (labels, value) => record(this, labels, value))
    }
  }

  /**
   * The gathering every collect of one scrape shares: prom-client calls them all in the same
   * turn, so the first starts it and the rest join it; it is dropped once done, and the next
   * scrape gathers afresh.
   */
  #gathered(): Promise<Gathered> {
    this.#gathering ??= this.#gather().finally(() => (this.#gathering = undefined))
    return this.#gathering
  }

  async #gather(): Promise<Gathered> {
    const sources = this.#sources()
    const options = { timeoutMs: this.#timeoutMs }
    const [snapshot, runtime, inference, workflows] = await Promise.all([
      this.#bounded('actors', this.#system.inspect()),
      sources.reconciler === undefined ? undefined : this.#bounded('reconciler', sources.reconciler.ask<RuntimeSnapshot>({ type: 'snapshot' }, options)),
      sources.inferenceStore === undefined ? undefined : this.#bounded('inference_store', sources.inferenceStore.ask<InferenceStats>({ type: 'stats' }, options)),
      Promise.all(
        (sources.workflows ?? []).map(async ({ name, ref }) => {
          const stats = await this.#bounded('workflows', ref.ask<WorkflowStats>({ type: 'stats' }, options))
          return stats === undefined ? [] : [{ name, stats }]
        }),
      ),
    ])
    return { actors: snapshot === undefined ? undefined : { snapshot, byKind: byKind(snapshot) }, runtime, inference, workflows: workflows.flat() }
  }

  /**
   * The source's answer, or undefined when it failed or has not answered within the timeout:
   * counted and logged, not thrown, so that the scrape reports what did answer.
   */
  async #bounded<T>(source: Source, answer: Promise<T>): Promise<T | undefined> {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<typeof LATE>(resolve => (timer = setTimeout(resolve, this.#timeoutMs, LATE)))
    try {
      const first = await Promise.race([answer, late])
      if (first !== LATE) return first
      this.#log.warn({ source, timeoutMs: this.#timeoutMs }, 'a metrics source did not answer in time; the scrape leaves it out')
    } catch (error) {
      this.#log.warn({ err: error, source }, 'a metrics source failed; the scrape leaves it out')
    } finally {
      clearTimeout(timer)
    }
    this.#sourceErrors.inc({ source })
    return undefined
  }
}

/** The actors of a snapshot summed by kind. */
function byKind(snapshot: SystemSnapshot): Map<string, KindFigures> {
  const kinds = new Map<string, KindFigures>()
  for (const actor of actorNodes(snapshot.root)) {
    let figures = kinds.get(actor.behavior)
    if (figures === undefined) kinds.set(actor.behavior, (figures = { byStatus: new Map(), mailboxDepth: 0, mailboxDepthMax: 0, messagesHandled: 0, restarts: 0 }))
    figures.byStatus.set(actor.status, (figures.byStatus.get(actor.status) ?? 0) + 1)
    figures.mailboxDepth += actor.mailboxDepth
    figures.mailboxDepthMax = Math.max(figures.mailboxDepthMax, actor.mailboxDepth)
    figures.messagesHandled += actor.messagesHandled
    figures.restarts += actor.restarts
  }
  return kinds
}
