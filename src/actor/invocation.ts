import type { Logger } from 'pino'
import type { BehaviorContext } from './behavior.js'
import type { ActorRef, Cancellation } from './ref.js'
import type { StreamCredits } from './stream.js'
import type { SystemHandle } from './system-handle.js'

/**
 * One ask or stream being handled: what cancel, credit and crash need to reach it. It is its own
 * Cancellation, so a behaviour passes its caller's cancel on to the asks it makes for the price
 * of a callback; the AbortSignal is made only if a behaviour asks for one.
 */
export class Invocation implements Cancellation {
  private controller: AbortController | undefined
  private callbacks: Array<(() => void) | undefined> | undefined
  cancelled = false
  credits: StreamCredits | undefined

  constructor(
    readonly from: number,
    readonly correlation: number,
    /** The actor's cell: everything it handles is cancelled once it is `aborted`. */
    private readonly cell: { readonly aborted: boolean },
  ) {}

  /** Created on first use: most asks never look at their signal. */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController()
      if (this.cancelled || this.cell.aborted) this.controller.abort()
    }
    return this.controller.signal
  }

  onCancel(fn: () => void): () => void {
    if (this.cancelled || this.cell.aborted) {
      fn()
      return () => undefined
    }
    const callbacks = (this.callbacks ??= [])
    const at = callbacks.push(fn) - 1
    return () => {
      callbacks[at] = undefined
    }
  }

  cancel(): void {
    if (this.cancelled) return
    this.cancelled = true
    this.controller?.abort()
    const callbacks = this.callbacks
    this.callbacks = undefined
    for (const fn of callbacks ?? []) fn?.()
  }
}

/** The context a behaviour sees while it handles one ask or stream. */
export class InvocationContext<M> implements BehaviorContext<M> {
  constructor(
    private readonly base: BehaviorContext<M>,
    private readonly invocation: Invocation,
  ) {}
  get self(): ActorRef<M> {
    return this.base.self
  }
  get system(): SystemHandle {
    return this.base.system
  }
  get log(): Logger {
    return this.base.log
  }
  get signal(): AbortSignal {
    return this.invocation.signal
  }
  get cancellation(): Cancellation {
    return this.invocation
  }
  get stopping(): Cancellation {
    return this.base.stopping
  }
  stop(): void {
    this.base.stop()
  }
}
