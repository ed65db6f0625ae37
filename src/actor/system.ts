import os from 'node:os'
import { pino, type Logger } from 'pino'
import type { z } from 'zod'
import { ActorChild, type ActorPlacer } from './actor-child.js'
import { isBehavior, loadBehavior, type ArgsOf, type Behavior, type MessageOf, type StopReason } from './behavior.js'
import { ActorDirectory, LOCATION_RESTARTING, LOCATION_STOPPED, MAX_ACTORS, SlotAllocator } from './directory.js'
import { ActorError } from './errors.js'
import { EventLoopDelay } from './event-loop-delay.js'
import { failureToError, type FailureData } from './failure.js'
import { ActorHost, MAIN_THREAD, type HostStats, type KernelOp } from './host.js'
import { describeTree, type SystemSnapshot } from './inspect.js'
import { WorkerThreads, type HostThread } from './pool.js'
import type { ActorRef } from './ref.js'
import { DEFAULT_INTENSITY, DEFAULT_PERIOD_MS, Supervisor, type ActorChildSpec, type SupervisorSpec } from './supervisor.js'
import type { SpawnOptions, SystemHandle } from './system-handle.js'
import { logLevelSchema, parse, spawnOptionsSchema, startOptionsSchema, type ActorSystemOptions, type LogLevel } from './system-options.js'
import { withTimeout } from './timeout.js'

export type { ActorSystemOptions, LogLevel } from './system-options.js'

/** Past shutdownMs, how long a stop may still take before the actor is written off. */
const STOP_GRACE_MS = 1000
/** Slots the actor directory starts with; it doubles as actors come, up to maxActors. */
const INITIAL_SLOTS = 4096

/**
 * The actor system: the main thread's actor host, the worker threads, the actor directory and
 * the root of the supervision tree. Everything spawned or supervised hangs under the root;
 * shutdown stops it all in reverse start order.
 */
export class ActorSystem implements SystemHandle, ActorPlacer {
  readonly log: Logger
  private readonly host: ActorHost
  private readonly slots: SlotAllocator
  private readonly threads: WorkerThreads
  private readonly root: Supervisor
  private readonly actors = new Map<number, ActorChild>()
  private readonly names = new Map<string, ActorChild>()
  private readonly mailboxCapacity: number
  private readonly startTimeoutMs: number
  private readonly defaultPlacement: 'main' | 'pool'
  /** The main thread's; each worker runs its own (worker-host.ts). */
  private readonly eventLoop = new EventLoopDelay()
  private anonymous = 0
  private supervisors = 0
  private shuttingDown: Promise<void> | undefined

  static async start(options: ActorSystemOptions = {}): Promise<ActorSystem> {
    const system = new ActorSystem(parse(startOptionsSchema, options, 'options'))
    try {
      await system.threads.startPool(options.workers ?? os.availableParallelism())
    } catch (error) {
      await system.shutdown()
      throw error
    }
    return system
  }

  private constructor(options: z.infer<typeof startOptionsSchema>) {
    this.log = options.logger ?? pino({ level: process.env['TROUPE_LOG_LEVEL'] ?? 'info' })
    const askTimeoutMs = options.askTimeoutMs ?? 30_000
    this.mailboxCapacity = options.mailboxCapacity ?? 1024
    this.startTimeoutMs = options.startTimeoutMs ?? 30_000
    this.defaultPlacement = options.workers === 0 ? 'main' : 'pool'
    const maxSlots = options.maxActors ?? MAX_ACTORS
    const directory = ActorDirectory.create(Math.min(INITIAL_SLOTS, maxSlots), maxSlots)
    this.slots = new SlotAllocator(directory)
    this.host = new ActorHost({
      threadId: MAIN_THREAD,
      directory,
      log: this.log,
      askTimeoutMs,
      system: () => this,
      onExit: (slot, generation, incarnation, reason, error) => this.actorExited(slot, generation, incarnation, reason, error),
      spinAfterSend: 'awaiting',
    })
    this.host.kernel = {
      handle: op => this.kernelOp(op),
      control: (from, message) => {
        if (message.ctl === 'ready') this.threads.markReady(from)
        else if (message.ctl === 'log') this.writeWorkerLog(message['line'] as string)
      },
    }
    this.threads = new WorkerThreads({
      host: this.host,
      logLevel: this.log.level as LogLevel,
      askTimeoutMs,
      resourceLimits: options.resourceLimits,
      execArgv: options.execArgv,
      threadDied: (thread, error) => this.threadDied(thread, error),
    })
    const runtime = { log: this.log, random: Math.random, createActorChild: this.createActorChild }
    const restart = options.restart ?? {}
    this.root = new Supervisor(
      'root',
      { strategy: 'one_for_one', intensity: restart.intensity ?? DEFAULT_INTENSITY, periodMs: restart.periodMs ?? DEFAULT_PERIOD_MS, children: [] },
      runtime,
      undefined,
      true,
    )
    void this.root.start()
  }

  // ---- the public API ------------------------------------------------------------------

  /** Spawns an actor under the system's root supervisor (restarted per `restart`, permanent by default). */
  async spawn<B extends Behavior>(behavior: B, options: SpawnOptions<ArgsOf<B>> = {}): Promise<ActorRef<MessageOf<B>>> {
    this.assertRunning()
    if (!isBehavior(behavior)) throw new TypeError('spawn: the first argument must be a behaviour made by defineBehavior')
    const parsed = parse(spawnOptionsSchema, options, 'spawn options')
    if (parsed.name !== undefined && this.names.has(parsed.name)) {
      throw new ActorError('name_taken', `an actor named '${parsed.name}' already exists`)
    }
    const child = await this.root.addChild({
      ...parsed,
      // Short, so it is one flat string (inspect shows the behaviour beside it).
      id: parsed.name ?? `#${++this.anonymous}`,
      behavior,
    } as ActorChildSpec)
    return (child as ActorChild).ref as ActorRef<MessageOf<B>>
  }

  /**
   * Spawns one actor per entry of `argsList`, all with the same behaviour and options, under
   * the root supervisor: refs in the order of `argsList`. On the pool they go to one worker
   * (`near`'s, or the least loaded) in a single message, not a round trip each. All start or
   * none is kept: if one's init fails, those started are stopped and it rejects with that
   * failure. Names are not given here (spawn a named actor on its own). Each actor is then
   * supervised, restarted and stopped as if spawned alone.
   */
  async spawnMany<B extends Behavior>(behavior: B, argsList: readonly ArgsOf<B>[], options: Omit<SpawnOptions<ArgsOf<B>>, 'name' | 'args'> = {}): Promise<ActorRef<MessageOf<B>>[]> {
    this.assertRunning()
    if (!isBehavior(behavior)) throw new TypeError('spawnMany: the first argument must be a behaviour made by defineBehavior')
    if (!Array.isArray(argsList)) throw new TypeError('spawnMany: the second argument must be an array of args, one per actor')
    const parsed = parse(spawnOptionsSchema, options, 'spawnMany options')
    if (parsed.name !== undefined || 'args' in parsed) throw new TypeError('spawnMany options: name and args are not taken here (args come one per actor; spawn a named actor on its own)')
    if (argsList.length === 0) return []
    const specs = argsList.map(args => ({ ...parsed, id: `#${++this.anonymous}`, behavior, args }) as ActorChildSpec)
    const children = await this.root.addChildren(specs, started => this.placeMany(started as readonly ActorChild[]))
    return children.map(child => (child as ActorChild).ref as ActorRef<MessageOf<B>>)
  }

  /** Starts a supervisor with its children under the root; resolves once every child has started. */
  async supervise(spec: SupervisorSpec, options: { id?: string } = {}): Promise<Supervisor> {
    this.assertRunning()
    const id = options.id ?? `supervisor-${++this.supervisors}`
    // Temporary under the root: a supervisor that escalates has given up, and says so itself.
    await this.root.addChild({ id, supervisor: spec, restart: 'temporary' })
    return this.root.supervisor(id)
  }

  async lookup<M = unknown>(name: string): Promise<ActorRef<M> | undefined> {
    return this.names.get(name)?.ref as ActorRef<M> | undefined
  }

  /** Stops an actor for good (its supervisor does not restart it). Resolves once it has stopped. */
  async stop(ref: ActorRef<any>): Promise<void> {
    const child = this.actors.get(ref.slot)
    if (child === undefined || child.generation !== ref.generation) return
    await child.owner.terminateChild(child)
  }

  /** The supervision tree with every actor's placement, thread, status and counters. */
  async inspect(): Promise<SystemSnapshot> {
    const perThread: HostStats[] = [{ ...this.host.stats(), eventLoopDelay: this.eventLoop.read() }]
    const workers = this.threads.threads()
    const answers = await Promise.allSettled(workers.map(thread => thread.stats()))
    for (const answer of answers) if (answer.status === 'fulfilled') perThread.push(answer.value)
    const kinds = new Map<number, string>([[MAIN_THREAD, 'main'], ...workers.map(t => [t.threadId, t.kind] as [number, string])])
    return describeTree(this.root, perThread, kinds)
  }

  /**
   * Changes the log level on every thread at runtime (a config reload, a debugging session):
   * the system logger here, which the actors' loggers on this thread follow, and each worker's
   * own logger, since a worker's lines arrive already filtered at its level. Workers started
   * later start at it. Resolves once every live thread has applied it.
   */
  async setLogLevel(level: LogLevel): Promise<void> {
    const parsed = parse(logLevelSchema, level, 'setLogLevel(level)')
    this.log.level = parsed
    await this.threads.setLogLevel(parsed)
  }

  /**
   * Changes the default deadline of asks (those without their own timeoutMs) on every thread,
   * for asks sent from now on; workers started later start with it. Resolves once every live
   * thread applied it.
   */
  async setAskTimeout(ms: number): Promise<void> {
    if (!(Number.isFinite(ms) && ms > 0)) throw new TypeError(`setAskTimeout(ms): ms must be a positive number, got ${String(ms)}`)
    this.host.setAskTimeout(ms)
    await this.threads.setAskTimeout(ms)
  }

  /**
   * Resizes the worker pool while the system runs (defaults to the number of CPUs). Growing
   * starts threads that take new actors at once. Shrinking retires the least loaded threads:
   * no new actor goes there, the actors on them are restarted in place by their supervisors
   * (their stop hooks see 'restart', their refs stay, messages wait for them) onto the threads
   * that stay, then the emptied threads stop. Resolves once the pool has its new size.
   */
  async resizePool(size: number = os.availableParallelism()): Promise<void> {
    if (!(Number.isInteger(size) && size >= 1 && size <= 1024)) throw new TypeError(`resizePool(size): size must be an integer from 1 to 1024, got ${String(size)}`)
    if (this.defaultPlacement === 'main') throw new TypeError('resizePool: this system was started with workers: 0, so it has no pool to resize')
    const current = this.threads.poolThreads().length
    if (size > current) await this.threads.grow(size - current)
    if (size >= current) return
    const leaving = new Set(this.threads.beginShrink(current - size))
    const moving = [...this.actors.values()].filter(child => child.thread !== undefined && child.thread !== 'main' && leaving.has(child.thread))
    const moved = await Promise.allSettled(moving.map(child => child.owner.restartChild(child.id)))
    moved.forEach((result, i) => {
      if (result.status === 'rejected') this.log.warn({ err: result.reason, actor: moving[i]!.id }, 'an actor could not be moved off a retiring worker; it restarts elsewhere when its worker stops')
    })
    await Promise.all([...leaving].map(thread => this.retireEmptied(thread)))
  }

  /** Stops a pool thread a shrink emptied; an actor still on it (one that could not move) is restarted elsewhere, as on a worker's death. */
  private async retireEmptied(thread: HostThread): Promise<void> {
    const stranded = [...this.actors.values()].filter(child => child.thread === thread)
    await this.threads.retire(thread)
    if (stranded.length > 0) this.threadDied(thread, new ActorError('stopped', `worker ${thread.threadId} was retired by a shrink of the pool`))
  }

  /** Stops every actor and supervisor in reverse start order, then the worker threads. Idempotent. */
  shutdown(): Promise<void> {
    this.shuttingDown ??= (async () => {
      await this.root.stop('shutdown')
      this.root.release()
      await this.threads.close()
      this.host.close()
      this.eventLoop.close()
    })()
    return this.shuttingDown
  }

  /** A worker's pino line, already serialised at the worker's level, into our destination. */
  private writeWorkerLog(line: string): void {
    ;(this.log as unknown as Record<symbol, { write(line: string): void }>)[pino.symbols.streamSym]?.write(line)
  }

  private assertRunning(): void {
    if (this.shuttingDown !== undefined) throw new ActorError('stopped', 'the actor system is shutting down')
  }

  // ---- supervision: children, placement, exits -----------------------------------------

  private readonly createActorChild = (spec: ActorChildSpec, owner: Supervisor): ActorChild => {
    if (!isBehavior(spec.behavior)) throw new TypeError(`child '${spec.id}': behavior must be made by defineBehavior`)
    const placement = spec.placement ?? this.defaultPlacement
    if (spec.name !== undefined && this.names.has(spec.name)) {
      throw new ActorError('name_taken', `an actor named '${spec.name}' already exists`)
    }
    const { slot, generation } = this.slots.allocate()
    const child = new ActorChild(
      {
        id: spec.id,
        restart: spec.restart ?? 'permanent',
        ref: this.host.refFor(slot, generation, spec.name),
        behavior: spec.behavior,
        args: spec.args,
        placement,
        mailboxCapacity: spec.mailbox?.capacity ?? this.mailboxCapacity,
        shutdownMs: spec.shutdownMs ?? 5000,
        resourceLimits: spec.resourceLimits,
        near: spec.near,
      },
      owner,
      this,
    )
    this.actors.set(slot, child)
    if (spec.name !== undefined) this.names.set(spec.name, child)
    return child
  }

  async place(child: ActorChild): Promise<void> {
    const { config } = child
    const incarnation = ++child.incarnation
    if (config.placement === 'main') {
      child.thread = 'main'
      try {
        await this.host.hostActor({ ...this.hostedFields(child), behavior: config.behavior, incarnation, ref: child.ref })
      } catch (error) {
        child.thread = undefined
        throw error
      }
      return
    }
    const thread = config.placement === 'pool' ? await this.poolThreadFor(config.near) : await this.threads.startDedicated(config.resourceLimits)
    child.thread = thread
    thread.actors++
    try {
      await this.host.askKernel(
        thread.threadId,
        { op: 'spawn', ...this.hostedFields(child), incarnation, url: config.behavior.url, exportName: config.behavior.exportName },
        this.startTimeoutMs,
      )
    } catch (error) {
      child.thread = undefined
      thread.actors--
      if (thread.kind === 'dedicated') await this.threads.retire(thread)
      else if (error instanceof ActorError && error.code === 'timeout') {
        // init is still running over there; make sure it does not come up after all.
        this.host.tellKernel(thread.threadId, { op: 'stop', slot: child.slot, reason: 'shutdown', drainMs: 0 })
      }
      throw error
    }
  }

  /**
   * Places children of one spawnMany together: on the pool, one kernel message to one worker
   * hosts them all; elsewhere each is placed as alone. All run when it resolves; when one
   * fails, none is left running.
   */
  private async placeMany(children: readonly ActorChild[]): Promise<void> {
    const first = children[0]!.config
    if (first.placement !== 'pool') {
      const placed = await Promise.allSettled(children.map(child => child.start()))
      const failed = placed.find(outcome => outcome.status === 'rejected')
      if (failed === undefined) return
      await Promise.all(children.filter((_, i) => placed[i]!.status === 'fulfilled').map(child => child.stop('shutdown')))
      throw failed.reason
    }
    const thread = await this.poolThreadFor(first.near)
    const actors = children.map(child => {
      child.thread = thread
      return { ...this.hostedFields(child), incarnation: ++child.incarnation }
    })
    thread.actors += children.length
    try {
      await this.host.askKernel(thread.threadId, { op: 'spawnMany', url: first.behavior.url, exportName: first.behavior.exportName, actors }, this.startTimeoutMs)
    } catch (error) {
      for (const child of children) child.thread = undefined
      thread.actors -= children.length
      if (error instanceof ActorError && error.code === 'timeout') {
        // Inits still running over there: make sure none comes up after all.
        for (const child of children) this.host.tellKernel(thread.threadId, { op: 'stop', slot: child.slot, reason: 'shutdown', drainMs: 0 })
      }
      throw error
    }
  }

  /** The pool worker hosting `near`, when it is on a live one; else the least loaded worker. */
  private poolThreadFor(near: ActorRef | undefined): Promise<HostThread> {
    const beside = near === undefined ? undefined : this.actors.get(near.slot)
    const thread = beside !== undefined && beside.generation === near!.generation ? beside.thread : undefined
    if (thread !== undefined && thread !== 'main' && thread.kind === 'pool' && this.threads.isLive(thread)) return Promise.resolve(thread)
    return this.threads.pickPoolThread()
  }

  private hostedFields(child: ActorChild) {
    return {
      slot: child.slot,
      generation: child.generation,
      name: child.ref.name, // msgpack carries undefined as such
      args: child.config.args,
      mailboxCapacity: child.config.mailboxCapacity,
      shutdownMs: child.config.shutdownMs,
    }
  }

  async unplace(child: ActorChild, reason: StopReason): Promise<void> {
    const where = child.thread
    child.thread = undefined
    const { slot, generation } = child
    const { shutdownMs } = child.config
    if (where === 'main') {
      await withTimeout(this.host.stopActor(slot, reason, shutdownMs), shutdownMs + STOP_GRACE_MS, `stopping ${child.id}`).catch(error =>
        this.log.error({ err: error, actor: child.id }, 'actor did not stop in time'),
      )
    } else if (where !== undefined) {
      try {
        await this.host.askKernel(where.threadId, { op: 'stop', slot, reason, drainMs: shutdownMs }, shutdownMs + STOP_GRACE_MS)
      } catch (error) {
        this.log.error({ err: error, actor: child.id, thread: where.threadId }, 'actor did not stop cleanly')
      }
      where.actors--
      // A dedicated worker goes with its actor; destroying it also ends an actor stuck in a loop.
      if (where.kind === 'dedicated') await this.threads.retire(where)
    }
    this.host.directory.publish(slot, generation, reason === 'restart' ? LOCATION_RESTARTING : LOCATION_STOPPED)
  }

  markRestarting(child: ActorChild): void {
    this.host.directory.publish(child.slot, child.generation, LOCATION_RESTARTING)
  }

  release(child: ActorChild): void {
    if (this.actors.get(child.slot) !== child) return
    this.actors.delete(child.slot)
    if (child.ref.name !== undefined && this.names.get(child.ref.name) === child) this.names.delete(child.ref.name)
    this.slots.release(child.slot)
  }

  private actorExited(slot: number, generation: number, incarnation: number, reason: 'crash' | 'normal', error: unknown): void {
    const child = this.actors.get(slot)
    if (child === undefined || child.generation !== generation || child.incarnation !== incarnation || child.status !== 'running') return
    const where = child.thread
    child.thread = undefined
    if (where !== undefined && where !== 'main') {
      where.actors--
      if (where.kind === 'dedicated') void this.threads.retire(where)
    }
    child.owner.childExited(child, reason, error)
  }

  private threadDied(thread: HostThread, error: unknown): void {
    this.log.error({ err: error, thread: thread.threadId, kind: thread.kind }, 'worker thread died; restarting its actors')
    for (const child of this.actors.values()) {
      if (child.thread !== thread) continue
      child.thread = undefined
      this.host.directory.publish(child.slot, child.generation, LOCATION_RESTARTING)
      if (child.status === 'running') child.owner.childExited(child, 'crash', error)
    }
  }

  /** Kernel operations other threads ask of the main thread. */
  private async kernelOp(op: KernelOp): Promise<unknown> {
    switch (op.op) {
      case 'exited':
        this.actorExited(
          op['slot'] as number,
          op['generation'] as number,
          op['incarnation'] as number,
          op['reason'] as 'crash' | 'normal',
          failureToError(op['error'] as FailureData | null),
        )
        return null
      case 'lookup':
        return (await this.lookup(op['name'] as string)) ?? null
      case 'spawn_request':
        return this.spawn(await loadBehavior(op['url'] as string, op['exportName'] as string), op['options'] as SpawnOptions)
      case 'stop_request':
        await this.stop(op['ref'] as ActorRef)
        return null
      default:
        throw new ActorError('internal', `the main thread has no kernel op '${op.op}'`)
    }
  }
}
