import { LOCATION_RESTARTING, type ActorDirectory } from './directory.js'
import type { ActorErrorData } from './errors.js'

/**
 * How many messages one thread holds for one restarting actor. Past it, a tell is a dead letter
 * and an ask or stream fails at once with `restarting`, as if nothing were held: the bound keeps
 * a sender that floods a dead actor from growing without limit. It matches the default mailbox
 * capacity, which is what the actor could have queued had it been running.
 */
export const MAX_HELD_PER_ACTOR = 1024

/**
 * A publish wakes a held queue at once; these bound the wait when none comes (a message came
 * back while the directory still names the old thread), so a re-send is tried again soon and
 * never in a tight loop.
 */
const FIRST_RECHECK_MS = 1
const MAX_RECHECK_MS = 20

/** A tell, ask or stream open that waits on its sender's thread for its actor to run again. */
export interface HeldMessage {
  readonly kind: number
  readonly slot: number
  readonly generation: number
  readonly label: string
  readonly correlation: number
  readonly deadline: number
  readonly payload: unknown
  /**
   * When the sender stops holding it (a Date.now() instant): for tells and stream opens, which
   * have no deadline of their own; Infinity for asks, whose own timer ends the wait.
   */
  readonly expiresAt: number
}

/** What a thread's host does with the messages it held once their actor runs again, or will not. */
export interface HeldMessageRouter {
  /** False once its caller gave up (an ask timed out or was cancelled, a stream was closed). */
  wanted(message: HeldMessage): boolean
  /** Sends it again, to the thread the actor runs on now. */
  resend(message: HeldMessage, location: number): void
  /** It will not be sent: fail the ask or stream, or dead-letter the tell, with `error`. */
  abandon(message: HeldMessage, error: ActorErrorData): void
}

/** Why an actor cannot be reached, from its directory location. */
export const locationError = (location: number, label: string): ActorErrorData =>
  location === LOCATION_RESTARTING
    ? { code: 'restarting', message: `${label} is restarting` }
    : { code: 'no_such_actor', message: `${label} is not running` }

class HeldQueue {
  /** Handed back unhandled by the actor's last incarnation: sent before `unsent`, which came later. */
  readonly returned: HeldMessage[] = []
  /** Never sent: the directory said the actor was restarting, or messages were held before them. */
  readonly unsent: HeldMessage[] = []
  recheckMs = FIRST_RECHECK_MS
  armed = false

  constructor(
    readonly slot: number,
    readonly generation: number,
  ) {}

  get size(): number {
    return this.returned.length + this.unsent.length
  }
}

/**
 * The sender's side of a restart: messages for an actor that is restarting wait here, on the
 * thread that sent them, and go to its new incarnation once the directory shows it running,
 * in the order they were sent (those its old incarnation handed back first). An actor given up
 * or stopped fails them at once. Nothing here runs while no actor is away: the send path only
 * asks `holds()`, one Map size read.
 */
export class RestartWaits {
  private readonly queues = new Map<number, HeldQueue>()
  private closed = false

  constructor(
    private readonly directory: ActorDirectory,
    private readonly router: HeldMessageRouter,
  ) {}

  /**
   * Whether messages to (slot, generation) wait here: a new one must queue behind them to keep
   * its sender's order. An actor back already, whose wake-up has not run yet, waits no longer:
   * what was held for it goes now, in order, and a new message follows it at once (it would
   * otherwise find the queue full and be refused while its actor runs).
   */
  holds(slot: number, generation: number): boolean {
    if (this.queues.size === 0) return false
    const queue = this.queues.get(slot)
    if (queue?.generation !== generation) return false
    if (this.directory.locate(slot, generation) < 0) return true
    this.release(queue)
    return false
  }

  /** Messages held on this thread, all actors together, less those whose callers gave up. */
  get size(): number {
    let n = 0
    for (const queue of this.queues.values()) {
      for (const message of [...queue.returned, ...queue.unsent]) if (this.router.wanted(message)) n++
    }
    return n
  }

  /**
   * Holds `message` until its actor runs again. `returned`: its actor's last incarnation handed
   * it back unhandled. False when it cannot be held (this actor's queue is full, or the host is
   * closing): the caller then fails it as it would have without waiting.
   */
  hold(message: HeldMessage, returned: boolean): boolean {
    if (this.closed) return false
    let queue = this.queues.get(message.slot)
    if (queue !== undefined && queue.generation !== message.generation) {
      // The slot has a new actor: the one these were held for is gone for good.
      this.release(queue)
      queue = undefined
    }
    if (queue === undefined) this.queues.set(message.slot, (queue = new HeldQueue(message.slot, message.generation)))
    if (queue.size >= MAX_HELD_PER_ACTOR) this.drop(queue, false)
    if (queue.size >= MAX_HELD_PER_ACTOR) return false
    ;(returned ? queue.returned : queue.unsent).push(message)
    this.arm(queue)
    return true
  }

  /** Fails everything held with `stopped`; nothing is held from now on. Idempotent. */
  close(): void {
    if (this.closed) return
    this.closed = true
    const queues = [...this.queues.values()]
    this.queues.clear()
    for (const queue of queues) {
      for (const message of [...queue.returned, ...queue.unsent]) {
        if (this.router.wanted(message)) this.router.abandon(message, { code: 'stopped', message: 'the actor system shut down' })
      }
    }
  }

  /** Waits for the actor's location to change, or for the recheck delay, whichever is first. */
  private arm(queue: HeldQueue): void {
    if (queue.armed) return
    queue.armed = true
    const seen = this.directory.locate(queue.slot, queue.generation)
    const moved = this.directory.whenMoved(queue.slot, seen, queue.recheckMs)
    queue.recheckMs = Math.min(queue.recheckMs * 2, MAX_RECHECK_MS)
    if (moved === undefined) queueMicrotask(() => this.check(queue))
    else void moved.then(() => this.check(queue))
  }

  private check(queue: HeldQueue): void {
    queue.armed = false
    if (this.queues.get(queue.slot) !== queue) return // released or closed meanwhile
    this.drop(queue, true)
    if (queue.size > 0 && this.directory.locate(queue.slot, queue.generation) === LOCATION_RESTARTING) this.arm(queue)
    else this.release(queue)
  }

  /** Sends the queue to where its actor runs now, or fails it if the actor is gone. */
  private release(queue: HeldQueue): void {
    // As a whole: whatever comes back from here on starts a new queue.
    this.queues.delete(queue.slot)
    const location = this.directory.locate(queue.slot, queue.generation)
    for (const message of [...queue.returned, ...queue.unsent]) {
      if (!this.router.wanted(message)) continue
      if (location >= 0) this.router.resend(message, location)
      else this.router.abandon(message, locationError(location, message.label))
    }
  }

  /** Forgets what its callers gave up on and, with `expire`, fails what was held too long. */
  private drop(queue: HeldQueue, expire: boolean): void {
    const now = Date.now()
    for (const list of [queue.returned, queue.unsent]) {
      let kept = 0
      for (const message of list) {
        if (!this.router.wanted(message)) continue
        if (expire && message.expiresAt <= now) {
          this.router.abandon(message, { code: 'restarting', message: `${message.label} was still restarting when the wait for it ran out` })
          continue
        }
        list[kept++] = message
      }
      list.length = kept
    }
  }
}
