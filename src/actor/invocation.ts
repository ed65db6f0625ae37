import type { Logger } from 'pino'
import type { BehaviorContext } from './behavior.js'
import type { ActorRef } from './ref.js'
import type { StreamCredits } from './stream.js'
import type { SystemHandle } from './system-handle.js'

/** One ask or stream being handled: what cancel, credit and crash need to reach it. */
export class Invocation {
  private controller: AbortController | undefined
  cancelled = false
  credits: StreamCredits | undefined

  constructor(
    readonly from: number,
    readonly correlation: number,
    private readonly cellSignal: AbortSignal,
  ) {}

  /** Created on first use: most asks never look at their signal. */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController()
      if (this.cancelled || this.cellSignal.aborted) this.controller.abort()
    }
    return this.controller.signal
  }

  cancel(): void {
    this.cancelled = true
    this.controller?.abort()
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
  stop(): void {
    this.base.stop()
  }
}
