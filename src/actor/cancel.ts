import type { Cancellation } from './ref.js'

/** Where a cancel may come from: an AbortSignal, a Cancellation, both or neither. */
export interface CancelSources {
  readonly signal?: AbortSignal | undefined
  readonly cancellation?: Cancellation | undefined
}

export function isCancelled(sources: CancelSources | undefined): boolean {
  return sources?.signal?.aborted === true || sources?.cancellation?.cancelled === true
}

/**
 * Runs `fn` once, when either source cancels. Returns the function that unsubscribes, or
 * undefined when there is nothing to listen to.
 */
export function whenCancelled(sources: CancelSources | undefined, fn: () => void): (() => void) | undefined {
  const signal = sources?.signal
  const cancellation = sources?.cancellation
  if (signal === undefined && cancellation === undefined) return undefined
  let fired = false
  const once = (): void => {
    if (fired) return
    fired = true
    fn()
  }
  signal?.addEventListener('abort', once, { once: true })
  const unsubscribe = cancellation?.onCancel(once)
  return () => {
    signal?.removeEventListener('abort', once)
    unsubscribe?.()
  }
}

/** Why an abort happened, as error data, when the signal says. */
export function abortReason(sources: CancelSources | undefined): { reason: string } | undefined {
  const reason: unknown = sources?.signal?.reason
  if (reason === undefined) return undefined
  return { reason: reason instanceof Error ? reason.message : String(reason) }
}

/** A Cancellation that follows an AbortSignal. */
export function cancellationOf(signal: AbortSignal): Cancellation {
  return {
    get cancelled() {
      return signal.aborted
    },
    onCancel(fn) {
      if (signal.aborted) {
        fn()
        return () => undefined
      }
      signal.addEventListener('abort', fn, { once: true })
      return () => signal.removeEventListener('abort', fn)
    },
  }
}

/** A Cancellation its owner cancels: one list of callbacks, each run once. */
export class CancelSource implements Cancellation {
  #callbacks: Array<(() => void) | undefined> | undefined = []

  get cancelled(): boolean {
    return this.#callbacks === undefined
  }

  onCancel(fn: () => void): () => void {
    const callbacks = this.#callbacks
    if (callbacks === undefined) {
      fn()
      return () => undefined
    }
    const at = callbacks.push(fn) - 1
    return () => {
      callbacks[at] = undefined
    }
  }

  cancel(): void {
    const callbacks = this.#callbacks
    this.#callbacks = undefined
    for (const fn of callbacks ?? []) fn?.()
  }
}
