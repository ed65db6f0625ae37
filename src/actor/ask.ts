import { abortReason, whenCancelled, type CancelSources } from './cancel.js'
import { ActorError } from './errors.js'

/** The thread of an ask held on the caller's side while its actor restarts: it is at none. */
export const NOT_SENT = -1

interface PendingAsk {
  /** Where the ask was sent, or NOT_SENT while it waits for its actor to come back. */
  thread: number
  readonly resolve: (value: unknown) => void
  readonly reject: (error: ActorError) => void
  readonly timer: NodeJS.Timeout | undefined
  readonly unsubscribe: (() => void) | undefined
}

/**
 * The caller's side of asks on one thread: each waits for its reply, its timeout or its abort,
 * whichever comes first, and exactly one of them settles it. Asks remember the thread they were
 * sent to, so a thread that dies fails its asks at once instead of at their timeouts.
 *
 * An ask whose deadline comes while it is held (NOT_SENT: its actor is restarting) fails with
 * `restarting`, not `timeout`: the callee never saw it, which is what the caller needs to know.
 */
export class PendingAsks {
  private readonly pending = new Map<number, PendingAsk>()

  get size(): number {
    return this.pending.size
  }

  /**
   * `giveUp` runs when the caller stops waiting (timeout or abort) on an ask that was sent, so
   * the thread it went to can tell the callee to drop or abort the work.
   */
  register<R>(
    correlation: number,
    thread: number,
    label: string,
    timeoutMs: number,
    cancel: CancelSources | undefined,
    giveUp: (correlation: number, thread: number) => void,
  ): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const timer = Number.isFinite(timeoutMs)
        ? setTimeout(() => {
            const ask = this.take(correlation)
            if (ask === undefined) return
            if (ask.thread === NOT_SENT) {
              ask.reject(new ActorError('restarting', `ask to ${label} gave up after ${timeoutMs} ms: the actor was still restarting`))
              return
            }
            ask.reject(new ActorError('timeout', `ask to ${label} timed out after ${timeoutMs} ms`))
            giveUp(correlation, ask.thread)
          }, timeoutMs)
        : undefined
      const unsubscribe = whenCancelled(cancel, () => {
        const ask = this.take(correlation)
        if (ask === undefined) return
        ask.reject(new ActorError('cancelled', `ask to ${label} was cancelled`, abortReason(cancel)))
        if (ask.thread !== NOT_SENT) giveUp(correlation, ask.thread)
      })
      this.pending.set(correlation, { thread, resolve: resolve as (value: unknown) => void, reject, timer, unsubscribe })
    })
  }

  /** The ask is held (NOT_SENT) or was sent again to `thread`; false if it has settled meanwhile. */
  moveTo(correlation: number, thread: number): boolean {
    const ask = this.pending.get(correlation)
    if (ask === undefined) return false
    ask.thread = thread
    return true
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
