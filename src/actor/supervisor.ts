import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import type { StopReason } from './behavior.js'
import { ActorError, describeThrown } from './errors.js'
import type { ActorRef } from './ref.js'
import {
  DEFAULT_INTENSITY,
  DEFAULT_PERIOD_MS,
  validateRestartChanges,
  validateSpec,
  type ActorChildSpec,
  type BackoffSpec,
  type ChildSpec,
  type RestartChanges,
  type Strategy,
  type SupervisorChildSpec,
  type SupervisorSpec,
} from './supervisor-spec.js'
import type { RestartType } from './system-handle.js'

export type { ActorChildSpec, BackoffSpec, ChildSpec, RestartChanges, Strategy, SupervisorChildSpec, SupervisorSpec } from './supervisor-spec.js'
export { DEFAULT_INTENSITY, DEFAULT_PERIOD_MS } from './supervisor-spec.js'

export type ChildStatus = 'idle' | 'running' | 'restarting' | 'stopping' | 'stopped' | 'failed'

/** One supervised child as its supervisor sees it: an actor, or a nested supervisor. */
export interface ChildHandle {
  readonly id: string
  readonly restart: RestartType
  status: ChildStatus
  restarts: number
  start(): Promise<void>
  stop(reason: StopReason): Promise<void>
  /** Senders hold their messages (restart-wait.ts) until start() runs again. */
  markRestarting(): void
  /** Applies a deliberate restart's changes before it stops; throws if they do not apply to this kind of child. */
  reconfigure(changes: RestartChanges): void
  /** The child will not run again: free what it holds (its slot, its name). */
  release(): void
}

/** What a supervisor needs from the actor system. */
export interface SupervisorRuntime {
  readonly log: Logger
  createActorChild(spec: ActorChildSpec, owner: Supervisor): ChildHandle & { readonly ref: ActorRef }
  random(): number
}

export interface SupervisorEvents {
  /** A child was restarted (after its backoff). */
  restarted: [childId: string]
  /** Intensity was exceeded: every child is stopped and the failure goes to the parent. */
  failed: [error: unknown]
  /** Isolating supervisors only: a child exceeded its own intensity and was given up. */
  gave_up: [childId: string, error: unknown]
}

const isSupervisorSpec = (spec: ChildSpec): spec is SupervisorChildSpec => 'supervisor' in spec

/**
 * An OTP-style supervisor: starts its children in order, restarts them by strategy when they
 * exit, stops them in reverse order, and gives up (escalates) when restarts come faster than
 * intensity/period allows. Exits are handled one at a time, in arrival order.
 */
/** The root's actors stopped together at most (see stopChildren). */
const STOP_TOGETHER = 1024

export class Supervisor extends EventEmitter<SupervisorEvents> {
  readonly id: string
  readonly strategy: Strategy
  status: 'idle' | 'running' | 'stopping' | 'stopped' | 'failed' = 'idle'

  /** By id, in start order (a Map keeps insertion order): found, added and forgotten in constant time. */
  private readonly children = new Map<string, ChildHandle>()
  private readonly intensity: number
  private readonly periodMs: number
  private readonly backoff: BackoffSpec | undefined
  private readonly restartLog = new Map<string, number[]>()
  private exits: Promise<void> = Promise.resolve()
  private sleeping = new AbortController()

  /**
   * @param parent the handle this supervisor is to its own supervisor, told when it escalates.
   * @param isolating count intensity per child and give up only on the child that exceeds it,
   *   instead of escalating: the behaviour of the system's root, so one failing top-level actor
   *   does not take the others down.
   */
  constructor(
    id: string,
    spec: SupervisorSpec,
    private readonly runtime: SupervisorRuntime,
    private readonly parent: { escalated(error: unknown): void } | undefined,
    private readonly isolating = false,
  ) {
    super()
    this.id = id
    this.strategy = spec.strategy
    this.intensity = spec.intensity ?? DEFAULT_INTENSITY
    this.periodMs = spec.periodMs ?? DEFAULT_PERIOD_MS
    this.backoff = spec.backoff
    validateSpec(id, spec)
    for (const childSpec of spec.children) {
      const child = this.createChild(childSpec)
      this.children.set(child.id, child)
    }
  }

  /** The ref of actor child `id`. */
  child<M = unknown>(id: string): ActorRef<M> {
    const handle = this.children.get(id)
    if (handle === undefined || !('ref' in handle)) throw new ActorError('no_such_actor', `supervisor ${this.id} has no actor child '${id}'`)
    return handle.ref as ActorRef<M>
  }

  /** The nested supervisor `id`. */
  supervisor(id: string): Supervisor {
    const handle = this.children.get(id)
    if (!(handle instanceof SupervisorChild)) throw new ActorError('no_such_actor', `supervisor ${this.id} has no supervisor child '${id}'`)
    return handle.supervisor
  }

  /** Every child, in start order: a copy, made on each call. */
  get childHandles(): readonly ChildHandle[] {
    return [...this.children.values()]
  }

  /** Child `id`, or undefined. */
  childHandle(id: string): ChildHandle | undefined {
    return this.children.get(id)
  }

  /** Starts every child in order; if one fails, stops those started and throws. */
  async start(): Promise<void> {
    this.status = 'running'
    this.sleeping = new AbortController()
    for (const child of this.children.values()) {
      try {
        await this.startChild(child)
      } catch (error) {
        await this.stopChildren(this.childHandles.filter(c => c.status === 'running'), 'shutdown')
        this.status = 'failed'
        throw new ActorError('crashed', `supervisor ${this.id} could not start child '${child.id}': ${describeThrown(error)}`, undefined, { cause: error })
      }
    }
  }

  /** Adds and starts a child at the end of the start order. */
  async addChild(spec: ChildSpec): Promise<ChildHandle> {
    if (this.status !== 'running') throw new ActorError('stopped', `supervisor ${this.id} is not running`)
    if (this.children.has(spec.id)) throw new TypeError(`supervisor ${this.id} already has a child '${spec.id}'`)
    const child = this.createChild(spec)
    this.children.set(child.id, child)
    try {
      await this.startChild(child)
    } catch (error) {
      this.forget(child)
      throw error
    }
    return child
  }

  /**
   * Adds children at the end of the start order and starts them together with `startAll` (one
   * placement for all, instead of one per child): all run once it resolves, or none is kept.
   * `startAll` must leave none running when it throws.
   */
  async addChildren(specs: readonly ChildSpec[], startAll: (children: readonly ChildHandle[]) => Promise<void>): Promise<ChildHandle[]> {
    if (this.status !== 'running') throw new ActorError('stopped', `supervisor ${this.id} is not running`)
    const ids = new Set<string>()
    for (const spec of specs) {
      if (this.children.has(spec.id) || ids.has(spec.id)) throw new TypeError(`supervisor ${this.id} already has a child '${spec.id}'`)
      ids.add(spec.id)
    }
    const children: ChildHandle[] = []
    try {
      for (const spec of specs) {
        const child = this.createChild(spec)
        this.children.set(child.id, child)
        children.push(child)
      }
      await startAll(children)
    } catch (error) {
      for (const child of children) this.forget(child)
      throw error
    }
    for (const child of children) child.status = 'running'
    return children
  }

  /** Stops a child for good: it is not restarted, whatever its restart type. */
  async terminateChild(child: ChildHandle): Promise<void> {
    await this.exits
    if (!this.holds(child)) return
    if (child.status === 'running' || child.status === 'restarting') await child.stop('normal')
    this.forget(child)
  }

  /**
   * Restarts child `id` in place, on purpose (its config changed, say): its ref and name stay,
   * messages sent meanwhile wait for the new incarnation, and its siblings keep running whatever
   * the strategy. It counts neither in `restarts` nor against intensity, which are about crashes.
   * An actor child drains as a stop does (its stop hook sees 'restart', within shutdownMs) and
   * is placed again with `changes` applied; a supervisor child restarts its whole subtree,
   * children stopped in reverse order and started again in order. Resolves once it runs again.
   * If the new incarnation fails to start this rejects, and the failure counts as a crash of the
   * child: the usual restart, backoff and intensity follow, with the new args.
   */
  restartChild(id: string, changes: RestartChanges = {}): Promise<void> {
    return this.inLine(async () => {
      this.validateChanges(id, changes)
      // Applied before the drain: a new shutdownMs bounds this one too.
      await this.suspendNow(id, changes)
      await this.resumeNow(id, {})
    })
  }

  /**
   * The first half of restartChild, for restarts that span supervisors (a store and the actors
   * that use it): drains and stops child `id` as a restart does, leaving it `restarting`, so
   * messages sent to it wait for resumeChild. Nothing restarts it meanwhile.
   */
  suspendChild(id: string): Promise<void> {
    return this.inLine(() => this.suspendNow(id))
  }

  /** The second half: starts a suspended child again, with `changes`. Resolves once it runs. */
  resumeChild(id: string, changes: RestartChanges = {}): Promise<void> {
    return this.inLine(async () => {
      this.validateChanges(id, changes)
      await this.resumeNow(id, changes)
    })
  }

  /**
   * Changes a running actor child's settings for its next stop or restart without restarting
   * it: a new drain deadline, or the args its next incarnation starts with (settings the
   * running one was given live). Only `shutdownMs` applies to the running child itself.
   */
  updateChild(id: string, changes: RestartChanges): void {
    this.validateChanges(id, changes)
    const child = this.children.get(id)
    if (child === undefined) throw new ActorError('no_such_actor', `supervisor ${this.id} has no child '${id}'`)
    child.reconfigure(changes)
  }

  /** Runs `work` in line with exits: a crash being handled finishes first, and none interleaves with it. */
  private inLine(work: () => Promise<void>): Promise<void> {
    const done = this.exits.then(work)
    this.exits = done.catch(() => undefined)
    return done
  }

  private validateChanges(id: string, changes: RestartChanges): void {
    validateRestartChanges(this.id, id, changes)
  }

  /** A child exited on its own: crashed, or stopped itself. Handled in arrival order. */
  childExited(child: ChildHandle, reason: 'crash' | 'normal', error: unknown): void {
    this.exits = this.exits
      .then(() => this.onExit(child, reason, error))
      .catch(failure => this.runtime.log.error({ err: failure, supervisor: this.id }, 'supervisor failed to handle a child exit'))
  }

  /** Stops every child in reverse start order. Idempotent. */
  async stop(reason: StopReason = 'shutdown'): Promise<void> {
    if (this.status === 'stopped' || this.status === 'stopping') return
    this.status = 'stopping'
    this.sleeping.abort()
    await this.exits
    await this.stopChildren(this.childHandles, reason)
    this.status = 'stopped'
  }

  /** Stopped for good: release every child's slot and name. */
  release(): void {
    for (const child of this.children.values()) child.release()
  }

  private async suspendNow(id: string, changes: RestartChanges = {}): Promise<void> {
    const child = this.children.get(id)
    if (child === undefined) throw new ActorError('no_such_actor', `supervisor ${this.id} has no child '${id}'`)
    if (this.status !== 'running' || child.status !== 'running') {
      const what = this.status !== 'running' ? `supervisor ${this.id} is ${this.status}` : `it is ${child.status}`
      throw new ActorError('stopped', `cannot restart child '${id}' of supervisor ${this.id}: ${what}`)
    }
    child.reconfigure(changes)
    child.status = 'restarting'
    child.markRestarting()
    try {
      await child.stop('restart')
    } catch (error) {
      this.runtime.log.error({ err: error, supervisor: this.id, child: id }, 'child did not stop cleanly')
    }
  }

  private async resumeNow(id: string, changes: RestartChanges): Promise<void> {
    const child = this.children.get(id)
    if (child === undefined) throw new ActorError('no_such_actor', `supervisor ${this.id} has no child '${id}'`)
    if (this.status !== 'running' || child.status !== 'restarting') {
      const what = this.status !== 'running' ? `supervisor ${this.id} is ${this.status}` : `it is ${child.status}, not suspended`
      throw new ActorError('stopped', `cannot resume child '${id}' of supervisor ${this.id}: ${what}`)
    }
    child.reconfigure(changes)
    try {
      await this.startChild(child)
    } catch (error) {
      // As in onExit: a failed start is one more crash of that child.
      child.status = 'running'
      this.childExited(child, 'crash', error)
      const code = error instanceof ActorError ? error.code : 'crashed'
      throw new ActorError(code, `restart of child '${id}' of supervisor ${this.id} failed: ${describeThrown(error)}`, undefined, { cause: error })
    }
  }

  private createChild(spec: ChildSpec): ChildHandle {
    if (isSupervisorSpec(spec)) return new SupervisorChild(spec, this.runtime, this)
    return this.runtime.createActorChild(spec, this)
  }

  private async startChild(child: ChildHandle): Promise<void> {
    await child.start()
    child.status = 'running'
  }

  /** Whether `child` is this supervisor's (not a stopped one whose id a newer child took). */
  private holds(child: ChildHandle): boolean {
    return this.children.get(child.id) === child
  }

  private forget(child: ChildHandle): void {
    if (this.holds(child)) this.children.delete(child.id)
    this.restartLog.delete(child.id)
    child.status = 'stopped'
    child.release()
  }

  /**
   * Stops `children` in reverse start order, each after the one started after it has stopped,
   * as OTP does. The isolating root is the exception for its actors: spawned independently,
   * a run of them between two supervisor children stops together, STOP_TOGETHER at a time, so
   * that a system holding a million actors stops in seconds, not a round trip per actor.
   * Supervisor children (a stack's subtrees) still stop alone, in order.
   */
  private async stopChildren(children: readonly ChildHandle[], reason: StopReason): Promise<void> {
    const stopping = [...children].reverse().filter(child => child.status === 'running' || child.status === 'restarting')
    for (let at = 0; at < stopping.length; ) {
      let end = at + 1
      if (this.isolating && !(stopping[at] instanceof SupervisorChild)) {
        while (end < stopping.length && end - at < STOP_TOGETHER && !(stopping[end] instanceof SupervisorChild)) end++
      }
      await Promise.all(stopping.slice(at, end).map(child => this.stopOne(child, reason)))
      at = end
    }
  }

  private async stopOne(child: ChildHandle, reason: StopReason): Promise<void> {
    if (child.status !== 'running' && child.status !== 'restarting') return
    child.status = 'stopping'
    try {
      await child.stop(reason)
    } catch (error) {
      this.runtime.log.error({ err: error, supervisor: this.id, child: child.id }, 'child did not stop cleanly')
    }
    child.status = 'stopped'
  }

  private async onExit(child: ChildHandle, reason: 'crash' | 'normal', error: unknown): Promise<void> {
    if (this.status !== 'running' || child.status !== 'running' || !this.holds(child)) return
    const restart = child.restart === 'permanent' || (child.restart === 'transient' && reason === 'crash')
    if (!restart) {
      this.forget(child)
      return
    }
    const recent = this.recordRestart(child)
    if (recent > this.intensity) {
      if (this.isolating) this.giveUp(child, error)
      else await this.escalate(child, error)
      return
    }
    const group = this.restartGroup(child)
    child.status = 'restarting'
    // Before the siblings drain: what is sent to them meanwhile waits for their next incarnation.
    for (const member of group) member.markRestarting()
    await this.stopChildren(group.filter(c => c !== child && c.status === 'running'), 'restart')
    for (const member of group) {
      member.status = 'restarting'
      member.markRestarting()
    }
    const delayMs = this.backoffDelay(recent)
    if (delayMs > 0 && !(await this.sleep(delayMs))) return
    for (const member of group) {
      if (this.status !== 'running') return
      member.restarts++
      try {
        await this.startChild(member)
      } catch (startError) {
        // A failed restart is one more crash of that child: count it and try again.
        member.status = 'running'
        this.childExited(member, 'crash', startError)
        return
      }
      this.emit('restarted', member.id)
    }
  }

  /** Restarts of `child`'s scope within the period, this one included. */
  private recordRestart(child: ChildHandle): number {
    const key = this.isolating ? child.id : ''
    const now = Date.now()
    const log = (this.restartLog.get(key) ?? []).filter(at => now - at < this.periodMs)
    log.push(now)
    this.restartLog.set(key, log)
    return log.length
  }

  private restartGroup(child: ChildHandle): ChildHandle[] {
    const restartable = (c: ChildHandle): boolean => c === child || c.status === 'running'
    switch (this.strategy) {
      case 'one_for_one':
        return [child]
      case 'one_for_all':
        return this.childHandles.filter(restartable)
      case 'rest_for_one': {
        const all = this.childHandles
        return all.slice(all.indexOf(child)).filter(restartable)
      }
    }
  }

  private backoffDelay(restartsInPeriod: number): number {
    if (this.backoff === undefined) return 0
    const { minMs, maxMs, randomFactor = 0 } = this.backoff
    const base = Math.min(maxMs, minMs * 2 ** (restartsInPeriod - 1))
    return Math.round(base * (1 + randomFactor * this.runtime.random()))
  }

  /** Resolves true after `ms`, or false if the supervisor stops first. */
  private sleep(ms: number): Promise<boolean> {
    const signal = this.sleeping.signal
    return new Promise(resolve => {
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort)
        resolve(true)
      }, ms)
      const onAbort = (): void => {
        clearTimeout(timer)
        resolve(false)
      }
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  private giveUp(child: ChildHandle, error: unknown): void {
    this.runtime.log.error({ err: error, supervisor: this.id, child: child.id, intensity: this.intensity, periodMs: this.periodMs }, 'child restarted too often; giving up on it')
    child.status = 'failed'
    child.release()
    this.emit('gave_up', child.id, error)
  }

  private async escalate(child: ChildHandle, error: unknown): Promise<void> {
    this.runtime.log.error(
      { err: error, supervisor: this.id, child: child.id, intensity: this.intensity, periodMs: this.periodMs },
      'restart intensity exceeded; escalating',
    )
    this.status = 'stopping'
    this.sleeping.abort()
    await this.stopChildren(this.childHandles, 'shutdown')
    for (const c of this.children.values()) c.markRestarting()
    this.status = 'failed'
    const failure = new ActorError('crashed', `supervisor ${this.id} gave up: child '${child.id}' restarted more than ${this.intensity} times in ${this.periodMs} ms`, undefined, { cause: error })
    this.emit('failed', failure)
    this.parent?.escalated(failure)
  }
}

/** A nested supervisor as its parent sees it. */
export class SupervisorChild implements ChildHandle {
  readonly id: string
  readonly restart: RestartType
  readonly supervisor: Supervisor
  status: ChildStatus = 'idle'
  restarts = 0

  constructor(spec: SupervisorChildSpec, runtime: SupervisorRuntime, private readonly owner: Supervisor) {
    this.id = spec.id
    this.restart = spec.restart ?? 'permanent'
    this.supervisor = new Supervisor(spec.id, spec.supervisor, runtime, this)
  }

  start(): Promise<void> {
    return this.supervisor.start()
  }

  async stop(reason: StopReason): Promise<void> {
    await this.supervisor.stop(reason)
  }

  markRestarting(): void {
    for (const child of this.supervisor.childHandles) child.markRestarting()
  }

  reconfigure(changes: RestartChanges): void {
    if ('args' in changes || changes.shutdownMs !== undefined) {
      throw new TypeError(`supervisor '${this.id}' is restarted as a whole subtree: args and shutdownMs apply to actor children only`)
    }
  }

  release(): void {
    this.supervisor.release()
  }

  escalated(error: unknown): void {
    this.owner.childExited(this, 'crash', error)
  }
}
