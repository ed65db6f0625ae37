import type { Logger } from 'pino'
import type { z } from 'zod'
import type { ActorRef, Cancellation } from './ref.js'
import type { SystemHandle } from './system-handle.js'

/** Why an actor's `stop` hook runs. */
export type StopReason = 'normal' | 'shutdown' | 'restart' | 'crash'

export interface BehaviorContext<M = unknown> {
  /** This actor's own ref; valid across its restarts. */
  readonly self: ActorRef<M>
  /** Spawn, look up and stop actors from inside a behaviour, on any thread. */
  readonly system: SystemHandle
  /**
   * Aborted when the caller of this ask or stream cancels (abort, timeout, or breaking out of
   * the stream), and when the actor stops. For a tell, it aborts only when the actor stops.
   */
  readonly signal: AbortSignal
  /**
   * The same cancel as `signal`, as a Cancellation: pass it on to the asks and streams made for
   * this message (`{ cancellation: ctx.cancellation }`) when nothing needs an AbortSignal.
   */
  readonly cancellation: Cancellation
  /**
   * Cancelled when this actor begins to stop (or crashes), before its in-flight work drains. A
   * stream with no natural end (a watch, a subscription) ends on it, so that it does not hold
   * the drain up for the whole shutdown timeout.
   */
  readonly stopping: Cancellation
  /** A pino child logger bound to this actor's name. */
  readonly log: Logger
  /**
   * Stops this actor normally once the current message is handled. Its supervisor restarts a
   * permanent actor and lets a transient or temporary one go.
   */
  stop(): void
}

export interface BehaviorDefinition<S, M, A> {
  /**
   * The message protocol: a zod discriminated union on `type`. Messages whose `type` is not in
   * it are refused with `bad_message` on every hop (a Set lookup). Full parsing belongs at
   * process edges, not on hops inside one process.
   */
  readonly protocol?: z.ZodType<M>
  /**
   * How many messages this actor may handle at once (asks awaiting I/O, open streams).
   * 1, the default, is the classic actor: one message at a time, in mailbox order.
   */
  readonly maxConcurrent?: number
  init?(args: A, ctx: BehaviorContext<M>): S | Promise<S>
  /** Returns (or resolves to) the reply to an ask; the value is ignored for a tell. */
  receive(state: S, msg: M, ctx: BehaviorContext<M>): unknown
  /** An async generator whose yields are the chunks of a streamed reply. */
  stream?(state: S, msg: M, ctx: BehaviorContext<M>): AsyncIterable<unknown>
  stop?(state: S, reason: StopReason, ctx: BehaviorContext<M>): void | Promise<void>
}

const BEHAVIOR_MARK = Symbol.for('troupe.behavior')

/**
 * A behaviour any thread can load: a worker imports `url` and takes the export `exportName`.
 * The module must be free of side effects beyond definitions, because every thread that hosts
 * the actor imports it.
 */
export interface Behavior<S = any, M = any, A = any> {
  readonly url: string
  readonly exportName: string
  readonly definition: BehaviorDefinition<S, M, A>
  /** The protocol's `type` values, precomputed for the per-hop check; undefined when open. */
  readonly messageTypes: ReadonlySet<unknown> | undefined
  readonly [BEHAVIOR_MARK]: true
}

/** The message type an actor of behaviour B accepts. */
export type MessageOf<B> = B extends Behavior<any, infer M, any> ? M : never
/** The `args` an actor of behaviour B is spawned with. */
export type ArgsOf<B> = B extends Behavior<any, any, infer A> ? A : never

export function defineBehavior<S = undefined, M = unknown, A = undefined>(
  moduleUrl: string,
  exportName: string,
  definition: BehaviorDefinition<S, M, A>,
): Behavior<S, M, A> {
  if (typeof moduleUrl !== 'string' || !moduleUrl.includes(':')) {
    throw new TypeError(`defineBehavior: moduleUrl must be a module URL (pass import.meta.url), got ${String(moduleUrl)}`)
  }
  if (typeof exportName !== 'string' || exportName.length === 0) {
    throw new TypeError('defineBehavior: exportName must name the export that holds this behaviour')
  }
  if (typeof definition?.receive !== 'function') {
    throw new TypeError(`defineBehavior(${exportName}): definition.receive must be a function`)
  }
  const maxConcurrent = definition.maxConcurrent ?? 1
  if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) {
    throw new TypeError(`defineBehavior(${exportName}): maxConcurrent must be a positive integer, got ${maxConcurrent}`)
  }
  return Object.freeze({
    url: moduleUrl,
    exportName,
    definition,
    messageTypes: definition.protocol ? messageTypesOf(definition.protocol) : undefined,
    [BEHAVIOR_MARK]: true as const,
  })
}

export function isBehavior(value: unknown): value is Behavior {
  return typeof value === 'object' && value !== null && (value as Behavior)[BEHAVIOR_MARK] === true
}

/**
 * The discriminator values of a zod discriminated union on `type`. zod 4 keeps them in
 * `_zod.propValues`, the same table it uses to pick a union branch.
 */
function messageTypesOf(schema: z.ZodType): ReadonlySet<unknown> | undefined {
  const internals = (schema as { _zod?: { propValues?: Record<string, Set<unknown>> } })._zod
  return internals?.propValues?.['type']
}

/** Loads a behaviour on the current thread by module URL and export name. */
export async function loadBehavior(url: string, exportName: string): Promise<Behavior> {
  const module = (await import(url)) as Record<string, unknown>
  const behavior = module[exportName]
  if (!isBehavior(behavior)) {
    throw new TypeError(`${url} has no behaviour exported as '${exportName}' (use defineBehavior)`)
  }
  return behavior
}
