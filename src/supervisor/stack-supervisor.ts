import type { Logger } from 'pino'
import { actorNodes, type ActorChildSpec, type ActorRef, type ActorSystem, type Supervisor } from '../actor/index.js'
import { ConfigError, diffConfig, loadConfigFile, sameValue, type ConfigChange, type ConfigIssue, type LoadedConfig, type StackConfig } from '../config/index.js'
import { ApiServer, type ServerSettings } from '../server/server.js'
import { quotaSettings } from '../server/quota.js'
import type { WorkflowEntry } from '../server/routes/workflow-entry.js'
import { CONVERSATIONS, INFERENCE_STORE, ownerOf, plan, planReload, RECONCILER, ROUTING_TABLE, SUBTREES, subtreeSpec, type FieldOwner, type ReloadPlan, type StackPlan, type Subtree } from '../stack/plan.js'
import { providerActorName, type ProviderArgs, type ResolvedProvider } from '../stack/providers.js'
import { storeActorName, storeChildSpec } from '../stack/stores.js'
import { providerFingerprint } from '../stack/model-cache.js'
import { maskSecrets, providerRevision } from '../stack/provider-secrets.js'
import { reconciler, reconcilerSettings, type ReconciledProvider, type ReconcilerArgs, type ReconcilerMessage } from '../stack/reconciler.js'
import { workflowActorName, workflowChildSpec, type ResolvedWorkflow } from '../stack/workflows.js'
import { modelsRoutingTable, type ModelInput, type ModelsMessage, type ProviderEntry } from '../../actors/routing/models.js'
import { conversations, type ConversationsMessage } from '../../actors/stores/conversations.js'
import { inferenceSettings, inferenceStore, type InferenceStoreArgs, type InferenceStoreMessage } from '../../actors/stores/inference-store.js'
import type { InferenceMessage } from '../../actors/providers/inference/protocol.js'
import type { KvMessage, TableMessage } from '../../actors/stores/protocol.js'
import type { DrainReport, WorkflowMessage } from '../../actors/workflows/protocol.js'
import { checkStackWithWorkflows, packageVersion, type CheckedStackWithWorkflows } from './stack.js'
import { STACK_ACTOR, stackActor, type StackActorArgs } from './stack-actor.js'
import { SECRET_PATHS } from './redaction.js'
import { StackMetrics } from './metrics.js'


/** What started a reload. */
export type ReloadTrigger = 'watch' | 'signal' | 'admin' | 'api'

/** The outcome of one reload attempt, kept for GET /v1/inspect/config. */
export interface ReloadReport {
  readonly at: string
  readonly trigger: ReloadTrigger
  /**
   * `unchanged`: the file's config equals what runs. `invalid`: refused, nothing changed.
   * `partial`: some changes were applied, then one failed; a reload of the same file applies
   * the rest. `refused`: the stack is shutting down.
   */
  readonly result: 'applied' | 'unchanged' | 'invalid' | 'partial' | 'refused'
  readonly generation: number
  readonly sha256: string | undefined
  readonly errors: readonly ConfigIssue[]
  /** Paths of the hot fields pushed to their owners. */
  readonly appliedLive: readonly string[]
  readonly restarted: readonly string[]
  readonly started: readonly string[]
  readonly stopped: readonly string[]
  /** Changes that need a new process to take effect, with why. */
  readonly notApplied: ReadonlyArray<{ readonly path: string; readonly reason: string }>
  readonly durationMs: number
}

/** What one reload did, as it goes. */
interface Applied {
  readonly appliedLive: string[]
  readonly restarted: string[]
  readonly started: string[]
  readonly stopped: string[]
  readonly notApplied: Array<{ readonly path: string; readonly reason: string }>
}

interface AppliedConfig {
  readonly loaded: LoadedConfig
  readonly checked: CheckedStackWithWorkflows
  readonly plan: StackPlan
}

export interface ConfigInspection {
  readonly source: string
  readonly generation: number
  readonly sha256: string
  readonly loadedAt: string
  readonly lastReload: ReloadReport | undefined
}

export interface StackOptions {
  /** Overrides server.port (tests and benchmarks bind 0). Kept across reloads. */
  readonly port?: number
  readonly host?: string
  /** The pool size the command line fixed (--workers): troupe.workers then does not resize it. */
  readonly workers?: number
  /** The log destination's redaction (main.ts's RedactingDestination): logging.redact is applied to it live. */
  readonly redaction?: { setPaths(paths: readonly string[]): void }
  /** The clock of server.quota's windows (tests move it); Date.now otherwise. */
  readonly now?: () => number
}

/**
 * The one owner of config truth: it starts the stack from a plan of the config, keeps the
 * config it runs (its generation and sha256), and applies a new one by difference. Reloads run
 * one at a time, in arrival order, as an actor's messages do. Hot fields go to their owners
 * live; restart-class fields restart only the actors that own them (and those that depend on
 * them), in place, so their refs stay valid and requests to them wait rather than fail.
 */
export class StackSupervisor {
  readonly #system: ActorSystem
  readonly #log: Logger
  readonly #options: StackOptions
  #loaded: LoadedConfig
  #checked: CheckedStackWithWorkflows
  #plan: StackPlan
  /** The config fully applied last (at start, or by a reload that finished): what a reload diffs against. */
  #applied: AppliedConfig
  #generation = 1
  #loadedAt = new Date().toISOString()
  #lastReload: ReloadReport | undefined
  #reloads: Promise<unknown> = Promise.resolve()
  readonly #subtrees = new Map<Subtree, Supervisor>()
  #server: ApiServer | undefined
  #metrics: StackMetrics | undefined
  #url = ''
  #fail!: (error: Error) => void
  #stopping: Promise<void> | undefined
  /**
   * Settles when a subtree gave up (its restart intensity exceeded): the stack can no longer
   * serve as configured, and the process should stop in order and exit non-zero.
   */
  readonly failed: Promise<Error> = new Promise(resolve => (this.#fail = resolve))

  private constructor(system: ActorSystem, loaded: LoadedConfig, checked: CheckedStackWithWorkflows, log: Logger, options: StackOptions) {
    this.#system = system
    this.#loaded = loaded
    this.#checked = checked
    this.#plan = plan(loaded.config, checked.providers.map(p => p.providerId))
    this.#applied = { loaded, checked, plan: this.#plan }
    this.#log = log
    this.#options = options
  }

  /** Checks the config, starts every subtree of its plan in order, then HTTP. */
  static async start(system: ActorSystem, loaded: LoadedConfig, log: Logger, options: StackOptions = {}): Promise<StackSupervisor> {
    const stack = new StackSupervisor(system, loaded, await checkStackWithWorkflows(loaded), log, options)
    await stack.#start()
    return stack
  }

  get config(): StackConfig {
    return this.#loaded.config
  }

  get server(): ApiServer {
    return this.#server!
  }

  get url(): string {
    return this.#url
  }

  get models(): ActorRef<ModelsMessage> {
    return this.#subtrees.get('apis')!.child<ModelsMessage>(ROUTING_TABLE)
  }

  inspect(): ConfigInspection {
    return { source: this.#loaded.source, generation: this.#generation, sha256: this.#loaded.sha256, loadedAt: this.#loadedAt, lastReload: this.#lastReload }
  }

  async #start(): Promise<void> {
    const { config } = this.#loaded
    for (const subtree of SUBTREES) {
      const children: ActorChildSpec[] = []
      for (const actor of this.#plan.actors.filter(a => a.subtree === subtree)) children.push(await this.#spec(actor.id))
      // Workflows are the one optional subtree: nothing starts when none is configured.
      if (subtree === 'workflows' && children.length === 0) continue
      this.#adopt(subtree, await this.#system.supervise(subtreeSpec(subtree, children), { id: subtree }))
    }
    if (config.storage.stores.metadata === undefined) this.#log.warn('no storage.stores.metadata: registered models are kept in memory only')
    await this.#system.spawn(stackActor, { name: STACK_ACTOR, placement: 'main', args: { owner: this } satisfies StackActorArgs })

    const snapshot = await this.#system.inspect()
    for (const actor of actorNodes(snapshot.root)) this.#log.info({ actor: actor.id, placement: actor.placement, thread: actor.thread, status: actor.status }, 'actor started')

    this.#metrics = new StackMetrics({ system: this.#system, sources: () => this.#services(), log: this.#log.child({ component: 'metrics' }) })
    this.#server = new ApiServer({
      metrics: this.#metrics,
      system: this.#system,
      models: this.models,
      ...this.#services(),
      version: packageVersion(),
      log: this.#log.child({ component: 'http' }),
      ...this.#settings(),
      tls: this.#checked.tls,
      admin: { reload: () => this.reload('admin'), inspect: () => this.inspect() },
      now: this.#options.now,
    })
    this.#url = await this.#server.listen(this.#options.port ?? config.server.port, this.#options.host ?? config.server.host)
    this.#log.info({ url: this.#url }, `listening on ${this.#url}`)
  }

  /** The server's hot settings under the current config. */
  #settings(): ServerSettings {
    const { config } = this.#loaded
    const { quota } = config.server
    return {
      imageName: config.image_name,
      maxBodyBytes: config.server.max_body_bytes,
      cors: config.server.cors,
      workflowsContextSecret: config.server.workflows_context_secret,
      drainTimeoutMs: config.troupe.drain_timeout_ms,
      auth: this.#checked.auth,
      // Counted in the store actor of its backend, which starts before the server (on a reload, before this is read).
      quota: quota === undefined ? undefined : quotaSettings(quota, this.#subtrees.get('stores')!.child<KvMessage>(storeActorName(quota.kvstore.backend))),
    }
  }

  #adopt(subtree: Subtree, supervisor: Supervisor): void {
    this.#subtrees.set(subtree, supervisor)
    supervisor.on('failed', error => this.#fail(error instanceof Error ? error : new Error(String(error))))
    supervisor.on('restarted', id => this.#restarted(id))
  }

  /**
   * A crash restart: a provider that came back may serve something else now, so the reconciler
   * drops what it cached of it and asks again; a routing table that came back has lost the
   * reconciler's summary, which is sent again.
   */
  #restarted(id: string): void {
    const reconcilerRef = this.#child<ReconcilerMessage>('runtime', RECONCILER)
    if (reconcilerRef === undefined) return
    const provider = this.#checked.providers.find(p => providerActorName(p.providerId) === id)
    if (provider !== undefined) reconcilerRef.tell({ type: 'invalidate', reason: 'provider_restarted', provider_id: provider.providerId })
    else if (id === ROUTING_TABLE) reconcilerRef.tell({ type: 'publish' })
  }

  /** What the HTTP server routes to: the configured actors that are running now. */
  #services() {
    const entries = this.#providerEntries()
    return {
      providers: new Map(entries.map(entry => [entry.providerId, entry])),
      inferenceStore: this.#child<InferenceStoreMessage>('apis', INFERENCE_STORE),
      reconciler: this.#child<ReconcilerMessage>('runtime', RECONCILER),
      conversations: this.#child<ConversationsMessage>('apis', CONVERSATIONS),
      prewakeInference: prewakeAll(entries.filter(entry => entry.api === 'inference').map(entry => entry.ref)),
      workflows: this.#workflowEntries(),
    }
  }

  /** The ref of a running child of a subtree; undefined when it has none by that id (yet, or any more). */
  #child<M>(subtree: Subtree, id: string): ActorRef<M> | undefined {
    const supervisor = this.#subtrees.get(subtree)
    return supervisor?.childHandle(id) !== undefined ? supervisor.child<M>(id) : undefined
  }

  #providerEntries(): ProviderEntry[] {
    return this.#checked.providers.flatMap(provider => {
      const ref = this.#child<InferenceMessage>('providers', providerActorName(provider.providerId))
      return ref === undefined ? [] : [{ providerId: provider.providerId, providerType: provider.spec.type, api: provider.api, ref }]
    })
  }

  /** The providers as the reconciler takes them: no config, only digests of it and a masked copy. */
  #reconciledProviders(entries: readonly ProviderEntry[] = this.#providerEntries()): ReconciledProvider[] {
    return entries.map(entry => {
      const { config } = this.#checked.providers.find(p => p.providerId === entry.providerId)!
      return {
        ...entry,
        fingerprint: providerFingerprint(entry.providerId, entry.providerType, config),
        revision: providerRevision(config),
        refreshModels: (config as { refresh_models?: unknown }).refresh_models === true,
        config: maskSecrets(config),
      }
    })
  }

  #workflowEntries(): WorkflowEntry[] {
    return this.#checked.workflows.flatMap(w => {
      const ref = this.#child<WorkflowMessage>('workflows', workflowActorName(w.name))
      return ref === undefined ? [] : [{ name: w.name, url: w.url, exportName: w.exportName, ref }]
    })
  }

  /** The child spec of a planned actor under the current config: start and reload build them here alike. */
  async #spec(id: string): Promise<ActorChildSpec> {
    const { config } = this.#loaded
    const drainMs = config.troupe.drain_timeout_ms
    const common = { id, name: id, restart: 'permanent' as const, shutdownMs: drainMs }
    const store = <M>(backend: string): ActorRef<M> => this.#subtrees.get('stores')!.child<M>(storeActorName(backend))
    const provider = this.#checked.providers.find(p => providerActorName(p.providerId) === id)
    if (provider !== undefined) return { ...common, ...providerSpec(provider) }
    const workflow = this.#checked.workflows.find(w => workflowActorName(w.name) === id)
    if (workflow !== undefined) {
      const { runs, sessions } = config.storage.stores
      return workflowChildSpec(workflow, config, { runs: store<TableMessage>(runs!.backend), ...(sessions === undefined ? {} : { sessions: store<KvMessage>(sessions.backend) }), models: this.models })
    }
    const backend = Object.entries(config.storage.backends).find(([name]) => storeActorName(name) === id)
    if (backend !== undefined) return storeChildSpec(backend[0], backend[1], drainMs)
    const { metadata, inference, conversations: conversationsStore } = config.storage.stores
    switch (id) {
      case ROUTING_TABLE:
        return {
          ...common,
          behavior: modelsRoutingTable,
          args: {
            providers: this.#providerEntries(),
            models: config.registered_resources.models,
            ...(metadata === undefined ? {} : { metadata: { store: store<KvMessage>(metadata.backend), namespace: metadata.namespace } }),
          },
          // On the pool, as every routing table: the HTTP thread routes from its watched copy of
          // the registry (ModelList), so a request asks the table nothing (npm run bench: http_*).
          placement: 'pool',
        }
      case INFERENCE_STORE:
        return {
          ...common,
          behavior: inferenceStore,
          args: { store: store<TableMessage>(inference!.backend), table: inference!.table_name, settings: inferenceSettings(inference!) } satisfies InferenceStoreArgs,
          placement: 'main',
        }
      case RECONCILER:
        return {
          ...common,
          behavior: reconciler,
          args: { providers: this.#reconciledProviders(), settings: reconcilerSettings(config.troupe.reconciler), models: this.models } satisfies ReconcilerArgs,
          // Its cycles wait on providers and do no work of their own; on main, the server reads its snapshot without a thread hop.
          placement: 'main',
        }
      case CONVERSATIONS:
        return { ...common, behavior: conversations, args: { store: store<TableMessage>(conversationsStore!.backend), table: conversationsStore!.table_name, writeMode: conversationsStore!.write_mode }, placement: 'main' }
      default:
        throw new Error(`the plan names actor '${id}', which no part of the config defines`)
    }
  }

  // ---- reload ------------------------------------------------------------------------------

  /**
   * Re-reads the config file (the path given at start, as given: a symlink swapped under it is
   * followed), checks it as start does, and applies the difference. An invalid file changes
   * nothing. Reloads queue: each sees the state the one before it left.
   */
  reload(trigger: ReloadTrigger = 'api'): Promise<ReloadReport> {
    const next = this.#reloads.then(() => this.#reload(trigger))
    this.#reloads = next.catch(() => undefined)
    return next
  }

  async #reload(trigger: ReloadTrigger): Promise<ReloadReport> {
    const started = performance.now()
    const at = new Date().toISOString()
    const report = (fields: Partial<ReloadReport> & Pick<ReloadReport, 'result'>): ReloadReport => {
      const done: ReloadReport = {
        at,
        trigger,
        generation: this.#generation,
        sha256: this.#loaded.sha256,
        errors: [],
        appliedLive: [],
        restarted: [],
        started: [],
        stopped: [],
        notApplied: [],
        durationMs: Math.round((performance.now() - started) * 10) / 10,
        ...fields,
      }
      if (done.result !== 'unchanged' || trigger !== 'watch') this.#lastReload = done
      this.#metrics?.countReload(done.result)
      return done
    }
    if (this.#stopping !== undefined) return report({ result: 'refused', errors: [{ path: this.#loaded.source, message: 'the stack is shutting down; nothing is reloaded' }] })

    let loaded: LoadedConfig
    let checked: CheckedStackWithWorkflows
    try {
      loaded = await loadConfigFile(this.#loaded.source, process.env, { strict: this.#loaded.strict })
      checked = await checkStackWithWorkflows(loaded)
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      for (const issue of error.issues) this.#log.error({ path: issue.path, trigger }, `reload refused: ${issue.path}: ${issue.message}`)
      this.#log.error({ source: error.source, errors: error.issues.length, generation: this.#generation }, 'the new config is invalid; nothing changed')
      return report({ result: 'invalid', errors: error.issues, sha256: undefined })
    }
    // Against what is applied: after a reload that failed part way, the same file applies again.
    const applied = this.#applied
    const changes = [...diffConfig(applied.loaded.config, loaded.config), ...tlsRotation(applied.checked, checked, loaded.config)]
    if (changes.length === 0) {
      // The same config (a touch, a comment, an equal value): adopt the file's hash, change nothing.
      this.#loaded = loaded
      this.#applied = { ...applied, loaded }
      return report({ result: 'unchanged', sha256: loaded.sha256 })
    }
    if (this.#stopping !== undefined) return report({ result: 'refused', errors: [{ path: loaded.source, message: 'the stack is shutting down; nothing is reloaded' }] })

    const next = plan(loaded.config, checked.providers.map(p => p.providerId))
    const steps = planReload(applied.plan, next, changes, loaded.config)
    this.#log.info({ trigger, changes: changes.map(c => `${c.path} (${c.reload})`), restart: steps.restart, start: steps.start, stop: steps.stop, replace: steps.replace }, 'reloading config')
    // From here on the new config is the truth the specs are built from.
    this.#loaded = loaded
    this.#checked = checked
    this.#plan = next
    this.#generation++
    this.#loadedAt = at
    const done: Applied = { appliedLive: [], restarted: [], started: [], stopped: [], notApplied: [...steps.unapplied] }
    try {
      await this.#apply(steps, applied, done)
    } catch (error) {
      // Part of it is live, and `applied` stays as it was: the next reload diffs against it and
      // applies the same file again (each step finds what is done already).
      this.#log.error({ err: error, ...done }, 'reload failed part way; what is listed was applied, and a reload applies the rest')
      return report({ result: 'partial', errors: [{ path: loaded.source, message: error instanceof Error ? error.message : String(error) }], ...done })
    }
    this.#applied = { loaded, checked, plan: next }
    for (const { path, reason } of done.notApplied) this.#log.warn({ path }, `not applied: ${reason}`)
    this.#log.info({ generation: this.#generation, ...done }, 'config reloaded')
    return report({ result: 'applied', sha256: loaded.sha256, ...done })
  }

  /**
   * Applies a reload plan, so that nothing is ever routed to an actor that is not there: new
   * actors start first (stores before their users); a replaced provider is swapped; restarts
   * stop the actors that use a store before the store, then start them after it; the server and
   * the routing table are told what runs; only then do the actors the new config drops stop;
   * then the hot fields and the listener. Each step skips what an earlier, partial attempt did.
   */
  async #apply(steps: ReloadPlan, applied: AppliedConfig, done: Applied): Promise<void> {
    const subtreeOf = (id: string): Subtree => (this.#plan.actors.find(a => a.id === id) ?? applied.plan.actors.find(a => a.id === id))!.subtree
    const running = (id: string): boolean => this.#subtrees.get(subtreeOf(id))?.childHandle(id) !== undefined

    if (steps.resize) {
      if (this.#options.workers !== undefined) done.notApplied.push({ path: 'troupe.workers', reason: `the pool size was fixed on the command line (--workers ${this.#options.workers})` })
      else {
        // Grown first, so that what starts below spreads over the new threads.
        await this.#system.resizePool(this.#loaded.config.troupe.workers)
        done.appliedLive.push('troupe.workers (pool resized)')
      }
    }

    for (const id of steps.start) {
      if (running(id)) continue
      const subtree = subtreeOf(id)
      const supervisor = this.#subtrees.get(subtree)
      if (supervisor === undefined) this.#adopt(subtree, await this.#system.supervise(subtreeSpec(subtree, [await this.#spec(id)]), { id: subtree }))
      else await supervisor.addChild(await this.#spec(id))
      done.started.push(id)
    }
    for (const id of steps.replace) {
      // Another behaviour: a new actor under the same id, routed to once it runs.
      const supervisor = this.#subtrees.get(subtreeOf(id))!
      const child = supervisor.childHandle(id)
      await this.#reroute([id])
      if (child !== undefined) await supervisor.terminateChild(child)
      await supervisor.addChild(await this.#spec(id))
      await this.#reroute(steps.stop)
      done.restarted.push(id)
    }
    if (steps.restart.length > 0) await this.#restart(steps.restart, subtreeOf, done)
    await this.#reroute(steps.stop)
    for (const id of steps.stop) {
      const supervisor = this.#subtrees.get(subtreeOf(id))
      const child = supervisor?.childHandle(id)
      if (supervisor !== undefined && child !== undefined) await supervisor.terminateChild(child)
      done.stopped.push(id)
    }
    await this.#applyHot(steps, applied.loaded.config, done)
    await this.#refreshSpecs()
    // Any change may change what is served (a provider's config, a model declared): the
    // reconciler drops its cache and checks every provider now, in the background.
    this.#child<ReconcilerMessage>('runtime', RECONCILER)?.tell({ type: 'configure', settings: reconcilerSettings(this.#loaded.config.troupe.reconciler), providers: this.#reconciledProviders() })
    if (steps.rebind) {
      const { server } = this.#loaded.config
      this.#url = await this.server.rebind(this.#options.port ?? server.port, this.#options.host ?? server.host, this.#checked.tls)
      done.appliedLive.push('server (listener moved or its TLS files replaced)')
    }
  }

  /**
   * Restarts actors in place across subtrees: each stops (drains) before anything it depends on
   * stops, in reverse start order, and starts again after it, in start order, with its new
   * settings. Meanwhile requests to them wait for their new incarnations. One that fails to
   * start does not keep the others down: they all start, then the failure is thrown.
   */
  async #restart(ids: readonly string[], subtreeOf: (id: string) => Subtree, done: Applied): Promise<void> {
    const suspended: string[] = []
    try {
      for (const id of [...ids].reverse()) {
        await this.#subtrees.get(subtreeOf(id))!.suspendChild(id)
        suspended.unshift(id)
      }
    } finally {
      const failures: unknown[] = []
      for (const id of suspended) {
        try {
          const spec = await this.#spec(id)
          await this.#subtrees.get(subtreeOf(id))!.resumeChild(id, { args: spec.args, ...(spec.shutdownMs === undefined ? {} : { shutdownMs: spec.shutdownMs }) })
          done.restarted.push(id)
        } catch (error) {
          failures.push(error)
        }
      }
      if (failures.length > 0) throw failures[0]
    }
  }

  /**
   * Rebuilds every running actor's child spec from the config now applied, so that a crash
   * restarts it with what was applied live (a workflow's limits, the inference store's write
   * mode, the registered models), not with the settings it first started with.
   */
  async #refreshSpecs(): Promise<void> {
    for (const supervisor of this.#subtrees.values()) {
      for (const child of supervisor.childHandles) {
        if (!this.#plan.actors.some(actor => actor.id === child.id)) continue
        supervisor.updateChild(child.id, { args: (await this.#spec(child.id)).args })
      }
    }
  }

  /** Tells the server and the routing table what runs now, less `leaving`. */
  async #reroute(leaving: readonly string[]): Promise<void> {
    const services = this.#services()
    const gone = new Set(leaving)
    const providers = [...services.providers.values()].filter(entry => !gone.has(providerActorName(entry.providerId)))
    await this.models.ask({ type: 'setProviders', providers })
    await services.reconciler?.ask({ type: 'setProviders', providers: this.#reconciledProviders(providers) })
    this.server.setServices({
      ...services,
      providers: new Map(providers.map(entry => [entry.providerId, entry])),
      inferenceStore: gone.has(INFERENCE_STORE) ? undefined : services.inferenceStore,
      reconciler: gone.has(RECONCILER) ? undefined : services.reconciler,
      conversations: gone.has(CONVERSATIONS) ? undefined : services.conversations,
      workflows: services.workflows.filter(entry => !gone.has(workflowActorName(entry.name))),
    })
  }

  /** Pushes each hot change to its owner (plan.ts FIELD_OWNERS); an owner restarted or started by this reload already has it. */
  async #applyHot(steps: ReloadPlan, before: StackConfig, done: Applied): Promise<void> {
    const { config } = this.#loaded
    const fresh = new Set([...steps.restart, ...steps.start])
    const byOwner = new Map<FieldOwner, ConfigChange[]>()
    for (const change of steps.hot) {
      const { owner } = ownerOf(change)
      byOwner.set(owner, [...(byOwner.get(owner) ?? []), change])
    }
    for (const [owner, changes] of byOwner) {
      switch (owner) {
        case 'server':
          this.server.configure(this.#settings())
          break
        case 'drain': {
          // The server's deadline, and every actor's shutdownMs for its next stop or restart.
          this.server.configure(this.#settings())
          const shutdownMs = config.troupe.drain_timeout_ms
          for (const supervisor of this.#subtrees.values()) for (const child of supervisor.childHandles) supervisor.updateChild(child.id, { shutdownMs })
          break
        }
        case 'log-level':
          await this.#system.setLogLevel(config.logging.level)
          break
        case 'ask-timeout':
          await this.#system.setAskTimeout(config.troupe.ask_timeout_ms)
          break
        case 'log-redact':
          if (this.#options.redaction === undefined) {
            for (const change of changes) done.notApplied.push({ path: change.path, reason: 'this stack was started with a logger of its own, without a redacting destination to update' })
            continue
          }
          this.#options.redaction.setPaths([...SECRET_PATHS, ...config.logging.redact])
          break
        case 'models':
          // Also after a restart of the table: its init registers the declared models, but one
          // no longer declared is still in the metadata store until it is unregistered.
          await this.#reconcileModels(before.registered_resources.models, config.registered_resources.models)
          break
        case 'inference-queue': {
          const inference = config.storage.stores.inference
          if (inference !== undefined && !fresh.has(INFERENCE_STORE)) {
            await this.#subtrees.get('apis')!.child<InferenceStoreMessage>(INFERENCE_STORE).ask({ type: 'configure', settings: inferenceSettings(inference) })
          }
          break
        }
        case 'workflow-limits':
          for (const name of new Set(changes.map(change => change.segments[1]!))) {
            const workflow = config.workflows.find(w => w.name === name)
            if (workflow === undefined || fresh.has(workflowActorName(name))) continue
            await this.#subtrees.get('workflows')!.child<WorkflowMessage>(workflowActorName(name)).ask({
              type: 'configure',
              maxConcurrent: workflow.max_concurrent_tasks,
              queueSize: workflow.queue_size,
              ...(workflow.timeout_ms === undefined ? {} : { timeoutMs: workflow.timeout_ms }),
              resumable: workflow.resumable,
              ...(workflow.retention === undefined ? {} : { retentionMs: workflow.retention }),
            })
          }
          break
        case 'reconciler':
          // Carried by the configure message every applied reload ends with (#apply).
          break
        default:
          throw new Error(`plan.ts classed ${changes.map(c => c.path).join(', ')} as hot, owned by '${owner}', which applies nothing live`)
      }
      done.appliedLive.push(...changes.map(change => change.path))
    }
  }

  /** Registers the models the new config declares that differ, unregisters those it no longer declares. */
  async #reconcileModels(before: readonly ModelInput[], after: readonly ModelInput[]): Promise<void> {
    const models = this.models
    const kept = new Set(after.map(m => m.model_id))
    for (const model of before) if (!kept.has(model.model_id)) await models.ask({ type: 'unregister', model_id: model.model_id })
    const previous = new Map(before.map(m => [m.model_id, m]))
    for (const model of after) {
      if (!sameValue(previous.get(model.model_id), model)) await models.ask({ type: 'register', model, replace: true })
    }
  }

  // ---- stop --------------------------------------------------------------------------------

  /**
   * The draining shutdown, under one deadline (troupe.drain_timeout_ms) for HTTP and runs
   * together: intake stops at once (new requests 503, new runs refused); in-flight requests and
   * streams drain while each workflow actor gives its executing runs the same deadline to
   * finish or reach a durable wait; then the workflows stop (runs still held are let go, their
   * leases released, to resume on the next start), which also ends the HTTP waits on them;
   * what HTTP still holds at the deadline is cancelled. Then the rest stops in reverse start
   * order: the APIs (the inference store flushes its queue), providers, stores last. A reload
   * under way finishes first; any after it is refused.
   */
  async stop(): Promise<void> {
    if (this.#stopping !== undefined) return this.#stopping
    this.#stopping = this.#stop()
    return this.#stopping
  }

  async #stop(): Promise<void> {
    const deadlineMs = this.#loaded.config.troupe.drain_timeout_ms
    const started = performance.now()
    // A reload under way finishes first (bounded by the deadline); those queued behind it are refused.
    await Promise.race([this.#reloads, new Promise(resolve => setTimeout(resolve, deadlineMs).unref())])
    const server = this.#server
    server?.beginDrain()
    const http = server?.close(deadlineMs) ?? Promise.resolve()
    const drains = await Promise.all(
      this.#workflowEntries().map(entry =>
        entry.ref.ask<DrainReport>({ type: 'drain', timeoutMs: deadlineMs }, { timeoutMs: deadlineMs + DRAIN_ASK_GRACE_MS }).catch((error: unknown) => {
          this.#log.warn({ err: error, workflow: entry.name }, 'a workflow did not drain; its runs resume on the next start')
          return undefined
        }),
      ),
    )
    await this.#subtrees.get('workflows')?.stop('shutdown')
    await http
    const runs = drains.reduce((sum, report) => ({ finished: sum.finished + (report?.finished ?? 0), remaining: sum.remaining + (report?.remaining ?? 0) }), { finished: 0, remaining: 0 })
    this.#log.info({ ms: Math.round(performance.now() - started), runsFinished: runs.finished, runsToResume: runs.remaining }, 'drained')
    await this.#system.shutdown()
  }
}

/**
 * The same server.tls paths with other contents (a certificate renewed in place): no field
 * changed, but the listener must take the new files.
 */
function tlsRotation(before: CheckedStackWithWorkflows, after: CheckedStackWithWorkflows, config: StackConfig): ConfigChange[] {
  const [a, b] = [before.tls, after.tls]
  if (a === undefined || b === undefined) return []
  const same = (x: Buffer | undefined, y: Buffer | undefined): boolean => (x === undefined ? y === undefined : y !== undefined && x.equals(y))
  if (same(a.cert, b.cert) && same(a.key, b.key) && same(a.ca, b.ca)) return []
  return [{ segments: ['server', 'tls'], path: 'server.tls (files)', reload: 'restart', before: 'the files read at the last reload', after: config.server.tls }]
}

/** How much longer than the drain deadline a drain ask may take to answer. */
const DRAIN_ASK_GRACE_MS = 1000

function providerSpec(provider: ResolvedProvider): Pick<ActorChildSpec, 'behavior' | 'args' | 'placement'> {
  return { behavior: provider.spec.behavior, args: { providerId: provider.providerId, config: provider.config } satisfies ProviderArgs, placement: 'pool' }
}

/** Prewakes the threads of these actors; undefined when there are none. */
function prewakeAll(refs: readonly ActorRef[]): (() => void) | undefined {
  if (refs.length === 0) return undefined
  return () => {
    for (const ref of refs) ref.prewake()
  }
}

export type { ResolvedWorkflow }
