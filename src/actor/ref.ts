/**
 * A source of cancellation lighter than an AbortSignal: no EventTarget, one list of callbacks.
 * A behaviour's context has one (`ctx.cancellation`), so passing a caller's cancellation on to
 * the asks made for it costs an array push where an AbortSignal costs an AbortController and an
 * event listener per hop. Where an AbortSignal is needed (fetch, undici), use `ctx.signal`.
 */
export interface Cancellation {
  readonly cancelled: boolean
  /** Runs `fn` once, when cancelled (at once if already); the function returned unsubscribes it. */
  onCancel(fn: () => void): () => void
}

export interface AskOptions {
  /** Reject with `timeout` after this long; Infinity waits forever. Defaults to the system's askTimeoutMs. */
  readonly timeoutMs?: number
  /** Aborting rejects the ask with `cancelled` and cancels it at the callee. */
  readonly signal?: AbortSignal
  /** Like `signal`, for a Cancellation. */
  readonly cancellation?: Cancellation
}

export interface StreamOptions {
  /** Aborting ends the stream with `cancelled` and cancels the producer. */
  readonly signal?: AbortSignal
  /** Like `signal`, for a Cancellation. */
  readonly cancellation?: Cancellation
  /** How many chunks the producer may run ahead of the consumer. */
  readonly window?: number
}

/** What a ref needs from the thread it lives on: the thread's actor host. */
export interface MessageRouter {
  tell(ref: ActorRef, msg: unknown): void
  ask<R>(ref: ActorRef, msg: unknown, options: AskOptions | undefined): Promise<R>
  stream<C>(ref: ActorRef, msg: unknown, options: StreamOptions | undefined): AsyncIterable<C>
  prewake(ref: ActorRef): void
}

/**
 * An address of an actor, valid across its restarts and on any thread: passed inside a message
 * to another thread, it arrives bound to that thread's router.
 */
export class ActorRef<M = unknown> {
  readonly slot: number
  readonly generation: number
  readonly name: string | undefined
  readonly #router: MessageRouter

  constructor(slot: number, generation: number, name: string | undefined, router: MessageRouter) {
    this.slot = slot
    this.generation = generation
    this.name = name
    this.#router = router
  }

  /** Fire and forget. A tell that cannot be delivered is counted and logged as a dead letter. */
  tell(msg: M): void {
    this.#router.tell(this, msg)
  }

  ask<R = unknown>(msg: M, options?: AskOptions): Promise<R> {
    return this.#router.ask<R>(this, msg, options)
  }

  /** A streamed reply with credit-based backpressure; breaking out of the loop cancels the producer. */
  stream<C = unknown>(msg: M, options?: StreamOptions): AsyncIterable<C> {
    return this.#router.stream<C>(this, msg, options)
  }

  /**
   * A hint that a message to this actor follows shortly (the HTTP thread gives it when a request
   * arrives, before it has read the body): if the actor's thread is asleep it is woken now, and
   * waits awake for a moment, so the message does not also pay the wake-up. Does nothing for an
   * actor on this thread, or one whose thread is awake; never fails.
   */
  prewake(): void {
    this.#router.prewake(this)
  }

  equals(other: ActorRef<unknown>): boolean {
    return other.slot === this.slot && other.generation === this.generation
  }

  toString(): string {
    return `ActorRef(${this.name ?? 'anonymous'}#${this.slot}.${this.generation})`
  }

  toJSON(): { slot: number; generation: number; name: string | undefined } {
    return { slot: this.slot, generation: this.generation, name: this.name }
  }
}
