import type { ResourceLimits } from 'node:worker_threads'
import type { Behavior, MessageOf, ArgsOf } from './behavior.js'
import type { ActorRef } from './ref.js'

export type Placement = 'main' | 'pool' | 'dedicated'
export type RestartType = 'permanent' | 'transient' | 'temporary'

export interface SpawnOptions<A = unknown> {
  /** A unique name for lookup(); refused with `bad_message` if already taken. */
  readonly name?: string
  readonly placement?: Placement
  readonly args?: A
  readonly mailbox?: { readonly capacity: number }
  /** Restart type under the system's guardian; defaults to permanent. */
  readonly restart?: RestartType
  /** How long the actor gets to finish its work and run its stop hook; default 5000. */
  readonly shutdownMs?: number
  /** V8 heap limits for a dedicated worker (placement 'dedicated' only). */
  readonly resourceLimits?: ResourceLimits
  /**
   * For placement 'pool': start (and restart) on the worker that hosts this actor, when it is
   * on one, so that the two exchange messages without crossing threads; otherwise on the least
   * loaded worker, as without it.
   */
  readonly near?: ActorRef<any>
}

/**
 * The part of the system a behaviour may use, on whatever thread it runs. On the main thread
 * it is the ActorSystem itself; on a worker, calls travel to the main thread's kernel.
 */
export interface SystemHandle {
  spawn<B extends Behavior>(behavior: B, options?: SpawnOptions<ArgsOf<B>>): Promise<ActorRef<MessageOf<B>>>
  lookup<M = unknown>(name: string): Promise<ActorRef<M> | undefined>
  stop(ref: ActorRef<any>): Promise<void>
}
