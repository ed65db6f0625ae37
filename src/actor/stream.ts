import { ActorError } from './errors.js'

export const DEFAULT_STREAM_WINDOW = 16

/** What the consumer end needs from its thread. */
export interface StreamConsumerHost {
  /** Grants the producer `n` more chunks. */
  credit(consumer: StreamConsumer<unknown>, n: number): void
  /** Tells the producer to stop, and forgets the consumer. */
  cancel(consumer: StreamConsumer<unknown>): void
}

/**
 * The caller's end of a streamed reply. The producer starts with `window` credits and may never
 * send more chunks than it holds credits for; the consumer returns credits in batches of half a
 * window as it takes chunks, so at most `window` chunks are ever produced ahead of consumption.
 */
export class StreamConsumer<C> implements AsyncIterator<C> {
  private readonly buffered: C[] = []
  private waiter: { resolve(result: IteratorResult<C>): void; reject(error: unknown): void } | undefined
  private finished = false
  private failure: ActorError | undefined
  private taken = 0
  private finishHook: (() => void) | undefined

  constructor(
    readonly correlation: number,
    /**
     * The thread the producer runs on, so a dead thread can fail this stream at once; NOT_SENT
     * while the open waits for its actor to restart, then the thread it was sent to.
     */
    public producerThread: number,
    readonly slot: number,
    readonly generation: number,
    readonly window: number,
    private readonly host: StreamConsumerHost,
  ) {}

  /** Runs once when the stream ends, fails or is cancelled. */
  onFinish(hook: () => void): void {
    this.finishHook = hook
  }

  get done(): boolean {
    return this.finished
  }

  push(chunk: C): void {
    if (this.finished) return
    if (this.waiter !== undefined) {
      const waiter = this.waiter
      this.waiter = undefined
      this.took()
      waiter.resolve({ value: chunk, done: false })
    } else this.buffered.push(chunk)
  }

  end(): void {
    this.settle(undefined)
  }

  fail(error: ActorError): void {
    this.settle(error)
  }

  next(): Promise<IteratorResult<C>> {
    if (this.buffered.length > 0) {
      this.took()
      return Promise.resolve({ value: this.buffered.shift() as C, done: false })
    }
    if (this.failure !== undefined) return Promise.reject(this.failure)
    if (this.finished) return Promise.resolve({ value: undefined, done: true })
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject }
    })
  }

  /** Called by `break` or `return` in a for-await loop: cancels the producer. */
  return(): Promise<IteratorResult<C>> {
    if (!this.finished) {
      this.finished = true
      this.buffered.length = 0
      this.host.cancel(this)
      this.runFinishHook()
    }
    return Promise.resolve({ value: undefined, done: true })
  }

  private took(): void {
    if (++this.taken >= Math.max(1, this.window >> 1)) {
      const n = this.taken
      this.taken = 0
      if (!this.finished) this.host.credit(this, n)
    }
  }

  private runFinishHook(): void {
    const hook = this.finishHook
    this.finishHook = undefined
    hook?.()
  }

  private settle(error: ActorError | undefined): void {
    if (this.finished) return
    this.finished = true
    this.failure = error
    this.runFinishHook()
    const waiter = this.waiter
    this.waiter = undefined
    if (waiter === undefined) return
    // Buffered chunks are delivered before the end or the error: only an idle consumer waits here.
    if (error !== undefined) waiter.reject(error)
    else waiter.resolve({ value: undefined, done: true })
  }
}

/**
 * The producer's credit account: the pump awaits `available()` before pulling the next chunk
 * from the behaviour's generator, which is what keeps the generator at most a window ahead.
 */
export class StreamCredits {
  private credits: number
  private wake: (() => void) | undefined

  constructor(window: number) {
    this.credits = window
  }

  grant(n: number): void {
    this.credits += n
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }

  spend(): void {
    this.credits--
  }

  /** Resolves once a credit is held or the signal aborts. */
  available(signal: AbortSignal): Promise<void> | undefined {
    if (this.credits > 0 || signal.aborted) return undefined
    return new Promise(resolve => {
      const onAbort = (): void => {
        this.wake = undefined
        resolve()
      }
      signal.addEventListener('abort', onAbort, { once: true })
      // A long stream waits for credit many times: each wait must take its listener with it.
      this.wake = () => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      }
    })
  }
}
