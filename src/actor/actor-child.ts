import type { ResourceLimits } from 'node:worker_threads'
import type { Behavior, StopReason } from './behavior.js'
import type { HostThread } from './pool.js'
import type { ActorRef } from './ref.js'
import type { ChildHandle, ChildStatus, RestartChanges, Supervisor } from './supervisor.js'
import type { Placement, RestartType } from './system-handle.js'

/** Where an actor child runs and how it is stopped: the system's side of supervision. */
export interface ActorPlacer {
  place(child: ActorChild): Promise<void>
  unplace(child: ActorChild, reason: StopReason): Promise<void>
  markRestarting(child: ActorChild): void
  release(child: ActorChild): void
}

export interface ActorChildConfig {
  readonly id: string
  readonly restart: RestartType
  readonly ref: ActorRef
  readonly behavior: Behavior
  readonly args: unknown
  readonly placement: Placement
  readonly mailboxCapacity: number
  readonly shutdownMs: number
  readonly resourceLimits: ResourceLimits | undefined
  /** Placed beside this actor when it is on a pool worker. */
  readonly near: ActorRef | undefined
}

/**
 * A supervised actor. Its slot and generation (its ref) are fixed for its whole life under its
 * supervisor: restarts move it between threads, never to a new address, and a deliberate
 * restart may change its args and shutdownMs, never its identity.
 */
export class ActorChild implements ChildHandle {
  readonly id: string
  readonly restart: RestartType
  readonly ref: ActorRef
  status: ChildStatus = 'idle'
  restarts = 0
  /** Bumped on every placement; exit reports of an earlier placement are stale. */
  incarnation = 0
  /** Where the actor runs now: the main thread, a worker, or nowhere. */
  thread: HostThread | 'main' | undefined
  #config: ActorChildConfig

  constructor(
    config: ActorChildConfig,
    readonly owner: Supervisor,
    private readonly placer: ActorPlacer,
  ) {
    this.#config = config
    this.id = config.id
    this.restart = config.restart
    this.ref = config.ref
  }

  get config(): ActorChildConfig {
    return this.#config
  }

  get slot(): number {
    return this.ref.slot
  }

  get generation(): number {
    return this.ref.generation
  }

  start(): Promise<void> {
    return this.placer.place(this)
  }

  stop(reason: StopReason): Promise<void> {
    return this.placer.unplace(this, reason)
  }

  markRestarting(): void {
    this.placer.markRestarting(this)
  }

  /** Takes effect at the next stop and placement. */
  reconfigure(changes: RestartChanges): void {
    this.#config = {
      ...this.#config,
      ...('args' in changes ? { args: changes.args } : {}),
      ...(changes.shutdownMs === undefined ? {} : { shutdownMs: changes.shutdownMs }),
    }
  }

  release(): void {
    this.placer.release(this)
  }
}
