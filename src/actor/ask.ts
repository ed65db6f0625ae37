import { abortReason, whenCancelled, type CancelSources } from './cancel.js'
import { ActorError } from './errors.js'

interface PendingAsk {
  readonly thread: number
  readonly resolve: (value: unknown) => void
  readonly reject: (error: ActorError) => void
  readonly timer: NodeJS.Timeout | undefined
  readonly unsubscribe: (() => void) | undefined
}

/**
 * The caller's side of asks on one thread: each waits for its reply, its timeout or its abort,
 * whichever comes first, and exactly one of them settles it. Asks remember the thread they were
 * sent to, so a thread that dies fails its asks at once instead of at their timeouts.
 */
export class PendingAsks {
  private readonly pending = new Map<number, PendingAsk>()

  get size(): number {
    return this.pending.size
  }

  /**
   * `giveUp` runs when the caller stops waiting (timeout or abort), so the callee can be told
   * to drop or abort the work.
   */
  register<R>(
    correlation: number,
    thread: number,
    label: string,
    timeoutMs: number,
    cancel: CancelSources | undefined,
    giveUp: (correlation: number) => void,
  ): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const timer = Number.isFinite(timeoutMs)
        ? setTimeout(() => {
            if (this.reject(correlation, new ActorError('timeout', `ask to ${label} timed out after ${timeoutMs} ms`))) {
              giveUp(correlation)
            }
          }, timeoutMs)
        : undefined
      const unsubscribe = whenCancelled(cancel, () => {
        if (this.reject(correlation, new ActorError('cancelled', `ask to ${label} was cancelled`, abortReason(cancel)))) giveUp(correlation)
      })
      this.pending.set(correlation, { thread, resolve: resolve as (value: unknown) => void, reject, timer, unsubscribe })
    })
  }

  resolve(correlation: number, value: unknown): boolean {
    const ask = this.take(correlation)
    ask?.resolve(value)
    return ask !== undefined
  }

  reject(correlation: number, error: ActorError): boolean {
    const ask = this.take(correlation)
    ask?.reject(error)
    return ask !== undefined
  }

  has(correlation: number): boolean {
    return this.pending.has(correlation)
  }

  /** Fails every ask sent to `thread`. */
  rejectThread(thread: number, error: () => ActorError): void {
    for (const [correlation, ask] of this.pending) {
      if (ask.thread === thread) this.reject(correlation, error())
    }
  }

  rejectAll(error: () => ActorError): void {
    for (const correlation of [...this.pending.keys()]) this.reject(correlation, error())
  }

  private take(correlation: number): PendingAsk | undefined {
    const ask = this.pending.get(correlation)
    if (ask === undefined) return undefined
    this.pending.delete(correlation)
    if (ask.timer !== undefined) clearTimeout(ask.timer)
    ask.unsubscribe?.()
    return ask
  }
}
