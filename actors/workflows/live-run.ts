import { ActorError, type Cancellation } from '../../src/index.js'
import type { RunEvent, RunInfo } from './protocol.js'
import type { RunExecution, RunHistory } from './run-context.js'
import { runInfo, type InboxEvent, type RunRow } from './run-store.js'

/**
 * A run this actor holds: queued or executing, with its lease. It outlives its execution by
 * nothing: once finished (or its lease lost, or the actor stopping) it leaves the actor, and
 * the store answers for it.
 */
export class LiveRun {
  row: RunRow
  readonly startEvent: unknown
  /** What a resumed run replays; undefined for a new run. */
  readonly history: RunHistory | undefined
  execution: RunExecution | undefined
  /** Events sent in before the run began executing, in order. */
  readonly early: InboxEvent[] = []
  inboxCount: number
  /** The actor has begun to finish the run: no new work for it. */
  finished = false
  /** Its outcome is written and told: `row` holds its final status. */
  #settled = false
  /** Resolves once the run's outcome is written, or the actor let go of it. */
  readonly #over: Promise<void>
  #overNow: () => void = () => undefined
  timeout: NodeJS.Timeout | undefined
  readonly #waiters: Array<{ resolve: (info: RunInfo) => void; reject: (error: unknown) => void }> = []
  /** Event and journal writes under way. */
  readonly #writing = new Set<Promise<unknown>>()
  readonly #subscribers = new Set<EventFeed>()

  constructor(row: RunRow, startEvent: unknown, history?: RunHistory) {
    this.row = row
    this.startEvent = startEvent
    this.history = history
    this.inboxCount = history?.inbox.length ?? 0
    this.#over = new Promise(resolve => (this.#overNow = resolve))
  }

  /** Resolves once the run's outcome is in the store (or the actor let go of the run). */
  written(): Promise<void> {
    return this.#over
  }

  get runId(): string {
    return this.row.run_id
  }

  /** The sequence of the last event written; -1 before the first. */
  get lastSeq(): number {
    if (this.#settled) return this.row.last_seq
    return (this.execution?.nextSeq ?? this.history?.eventTypes.length ?? 0) - 1
  }

  info(): RunInfo {
    return { ...runInfo(this.row), lastSeq: this.lastSeq }
  }

  /** Resolves with the run's final RunInfo; rejects with `cancelled` if `cancellation` fires first. */
  whenFinished(cancellation?: Cancellation): Promise<RunInfo> {
    if (this.#settled) return Promise.resolve(this.info())
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (info: RunInfo) => {
          unsubscribe?.()
          resolve(info)
        },
        reject: (error: unknown) => {
          unsubscribe?.()
          reject(error)
        },
      }
      // A caller that goes away (an HTTP client that disconnects) leaves nothing behind.
      const gone = (): void => {
        const at = this.#waiters.indexOf(waiter)
        if (at !== -1) this.#waiters.splice(at, 1)
        reject(new ActorError('cancelled', 'the wait was cancelled'))
      }
      if (cancellation?.cancelled === true) return gone()
      const unsubscribe = cancellation?.onCancel(gone)
      this.#waiters.push(waiter)
    })
  }

  /** Keeps count of an event or journal write until it settles. */
  track<T>(write: Promise<T>): Promise<T> {
    this.#writing.add(write)
    const done = (): void => void this.#writing.delete(write)
    write.then(done, done)
    return write
  }

  /** Resolves once every event and journal write begun so far has settled. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#writing])
  }

  subscribe(): EventFeed {
    const feed = new EventFeed(() => this.#subscribers.delete(feed))
    this.#subscribers.add(feed)
    return feed
  }

  publish(event: RunEvent): void {
    for (const feed of this.#subscribers) feed.push(event)
  }

  /** The run's outcome (`row`) is written and its terminal event published: wake whoever waits, end the streams. */
  settle(row: RunRow): void {
    this.row = row
    this.#settled = true
    const info = this.info()
    for (const { resolve } of this.#waiters.splice(0)) resolve(info)
    for (const feed of this.#subscribers) feed.end()
    this.#overNow()
  }

  /**
   * The actor lets go of the run without finishing it (stopping, lease lost): whoever waits for
   * its end gets `reason`, and streams end without a terminal event.
   */
  abandon(reason: unknown): void {
    for (const { reject } of this.#waiters.splice(0)) reject(reason)
    for (const feed of this.#subscribers) feed.end()
    this.#overNow()
  }
}

/** Live events for one stream, buffered until read. */
export class EventFeed {
  readonly #buffer: RunEvent[] = []
  #wake: (() => void) | undefined
  #ended = false
  readonly #unsubscribe: () => void

  constructor(unsubscribe: () => void) {
    this.#unsubscribe = unsubscribe
  }

  push(event: RunEvent): void {
    this.#buffer.push(event)
    this.#wake?.()
  }

  end(): void {
    this.#ended = true
    this.#wake?.()
  }

  /** The next event, or undefined once the feed ended (or `cancelled` fired) with nothing left. */
  async next(cancelled: Promise<void>): Promise<RunEvent | undefined> {
    for (;;) {
      const event = this.#buffer.shift()
      if (event !== undefined) return event
      if (this.#ended) return undefined
      let stop = false
      await Promise.race([new Promise<void>(resolve => (this.#wake = resolve)), cancelled.then(() => (stop = true))])
      this.#wake = undefined
      if (stop) return undefined
    }
  }

  close(): void {
    this.#unsubscribe()
  }
}
