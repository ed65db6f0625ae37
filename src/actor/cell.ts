import type { Logger } from 'pino'
import type { Behavior, BehaviorContext, BehaviorDefinition, StopReason } from './behavior.js'
import { CancelSource } from './cancel.js'
import { Kind, NO_DEADLINE } from './envelope.js'
import { ActorError, describeThrown, type ActorErrorData } from './errors.js'
import { flushOverdue } from './link.js'
import { Mailbox } from './mailbox.js'
import type { ActorRef } from './ref.js'
import { Invocation, InvocationContext } from './invocation.js'
import { StreamCredits } from './stream.js'
import type { SystemHandle } from './system-handle.js'

/** Messages handled in one go before the cell yields the thread to I/O and other actors. */
const DRAIN_BUDGET = 4096

export type CellStatus = 'starting' | 'running' | 'stopping' | 'stopped' | 'crashed'

/** What a cell needs from the thread that hosts it. */
export interface CellHost {
  /** The system as this thread's actors see it. */
  readonly system: SystemHandle
  /** The thread's logger: an actor's child of it is made when the actor first logs. */
  readonly log: Logger
  reply(to: number, correlation: number, value: unknown): void
  /** `producer` is the streaming actor's slot, so an unencodable chunk can stop its stream. */
  chunk(to: number, correlation: number, value: unknown, producer: number): void
  end(to: number, correlation: number): void
  fail(to: number, correlation: number, error: ActorErrorData): void
  deadLetter(target: string, message: unknown, code: string): void
  /** A message the actor will not handle, for its sender to hold until the actor's next incarnation. */
  returnUnhandled(kind: number, slot: number, generation: number, to: number, correlation: number, deadline: number, payload: unknown): void
  /** The actor can take no messages until its supervisor decides: mark it restarting. */
  unavailable(cell: ActorCell): void
  /** The cell stopped or crashed and holds nothing any more. */
  exited(cell: ActorCell, reason: StopReason, error: unknown): void
}

export interface CellOptions {
  readonly incarnation: number
  readonly behavior: Behavior
  readonly mailboxCapacity: number
  /** The actor's address: its slot, generation and name. */
  readonly self: ActorRef
  readonly shutdownMs: number
}

const RESOLVED: Promise<void> = Promise.resolve()

const invocationKey = (from: number, correlation: number): number => from * 0x1_0000_0000 + correlation

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as PromiseLike<unknown>).then === 'function'
}

/**
 * Runs one actor: its mailbox, its state, its behaviour. Messages are handled in mailbox order,
 * at most `maxConcurrent` at a time; a behaviour whose receive returns synchronously is driven
 * in a tight loop with no promise per message.
 *
 * A thrown ActorError rejects that one message and the actor carries on. Anything else thrown
 * is a crash: the asker gets `crashed` with the thrown message, every other ask in flight gets
 * `crashed` at once (it may have had effects), and the supervisor decides. What is still queued
 * was never handled: it goes back to its senders, who send it again to the next incarnation, as
 * Akka keeps a mailbox across a restart. So does the queue of an actor stopped to be restarted.
 */
export class ActorCell {
  readonly incarnation: number
  readonly behavior: Behavior
  status: CellStatus = 'starting'
  handled = 0
  /** The actor asked to stop (ctx.stop()), as opposed to being stopped by its supervisor. */
  stoppedItself = false
  private stopReason: StopReason | undefined

  readonly self: ActorRef
  readonly shutdownMs: number
  /** Every message's work is cancelled: the actor crashed or its stop's drain ran out. */
  aborted = false

  private readonly mailbox: Mailbox
  private readonly context: BehaviorContext
  // An idle actor holds only what it needs to take a message (a few hundred bytes): these are
  // made when first used (see npm run bench: actor_idle_bytes_main, actor_idle_bytes_pool).
  private childLog: Logger | undefined
  private controller: AbortController | undefined
  private abortSource: CancelSource | undefined
  private stopSource: CancelSource | undefined
  private stopAsked = false
  /** Asks and streams still being handled, by caller and correlation. */
  private invocations: Map<number, Invocation> | undefined
  private state: unknown
  private active = 0
  private scheduled = false
  private idle: (() => void) | undefined
  private initialised: Promise<void> = RESOLVED
  private stopping: Promise<void> | undefined

  constructor(
    private readonly host: CellHost,
    options: CellOptions,
  ) {
    this.incarnation = options.incarnation
    this.behavior = options.behavior
    this.mailbox = new Mailbox(options.mailboxCapacity)
    this.self = options.self
    this.shutdownMs = options.shutdownMs
    this.context = new CellContext(this)
  }

  // Read from the ref and the behaviour rather than copied into every cell.
  get slot(): number {
    return this.self.slot
  }

  get generation(): number {
    return this.self.generation
  }

  get name(): string | undefined {
    return this.self.name
  }

  private get definition(): BehaviorDefinition<unknown, unknown, unknown> {
    return this.behavior.definition as BehaviorDefinition<unknown, unknown, unknown>
  }

  get label(): string {
    return this.name ?? `#${this.slot}`
  }

  get mailboxDepth(): number {
    return this.mailbox.depth
  }

  get system(): SystemHandle {
    return this.host.system
  }

  get log(): Logger {
    return (this.childLog ??= this.host.log.child({ actor: this.label }))
  }

  /** Aborted with `aborted`: made for the first behaviour that asks for it. */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController()
      if (this.aborted) this.controller.abort()
    }
    return this.controller.signal
  }

  /** The same as `signal`, as a Cancellation. */
  get cancellation(): CancelSource {
    if (this.abortSource === undefined) {
      this.abortSource = new CancelSource()
      if (this.aborted) this.abortSource.cancel()
    }
    return this.abortSource
  }

  /** Cancelled when the actor begins to stop or crashes. */
  get stopRequested(): CancelSource {
    if (this.stopSource === undefined) {
      this.stopSource = new CancelSource()
      if (this.stopAsked) this.stopSource.cancel()
    }
    return this.stopSource
  }

  /** ctx.stop(): the actor stops itself. */
  stopItself(): void {
    if (this.status !== 'running' && this.status !== 'starting') return
    this.stoppedItself = true
    // Defer past the current receive: until it returns, its promise is not yet counted as
    // in flight, and stopping now would cancel the very message that asked to stop.
    queueMicrotask(() => void this.stop('normal', this.shutdownMs))
  }

  private abortAll(): void {
    this.aborted = true
    this.controller?.abort()
    this.abortSource?.cancel()
  }

  private askStop(): void {
    this.stopAsked = true
    this.stopSource?.cancel()
  }

  /** Taking no messages, but another incarnation follows: crashed, or stopping to be restarted. */
  get restarting(): boolean {
    return this.status === 'crashed' || (this.status === 'stopping' && this.stopReason === 'restart')
  }

  /** Runs init; messages delivered meanwhile wait in the mailbox. Throws what init threw. */
  start(args: unknown): Promise<void> {
    const init = this.init(args)
    // Held only while init runs: a started actor keeps no promise of it.
    const initialised = init.then(
      () => undefined,
      () => undefined,
    )
    this.initialised = initialised
    void initialised.then(() => {
      if (this.initialised === initialised) this.initialised = RESOLVED
    })
    return init
  }

  private async init(args: unknown): Promise<void> {
    try {
      this.state = this.definition.init ? await this.definition.init(args, this.context) : undefined
    } catch (error) {
      this.status = 'crashed'
      this.host.unavailable(this)
      this.abortAll()
      // Sent while init ran: they wait for the supervisor's next attempt, or fail if it gives up.
      this.returnQueued()
      throw error
    }
    this.status = 'running'
    this.schedule()
  }

  /** Queues a user message; false when the mailbox is full or the actor is no longer taking messages. */
  deliver(kind: number, payload: unknown, from: number, correlation: number, deadline: number): boolean {
    if (this.status !== 'running' && this.status !== 'starting') return false
    const types = this.behavior.messageTypes
    if (types !== undefined) {
      const msg = (kind === Kind.stream ? (payload as [number, unknown])[1] : payload) as { type?: unknown } | null
      if (!types.has(msg?.type)) {
        this.refuseUnknownType(kind, msg, from, correlation)
        return true
      }
    }
    if (!this.mailbox.push(kind, payload, from, correlation, deadline)) return false
    this.schedule()
    return true
  }

  /** The caller gave up: drop the message if still queued, else abort its signal. */
  cancel(from: number, correlation: number): void {
    if (this.mailbox.cancel(from, correlation)) return
    this.invocations?.get(invocationKey(from, correlation))?.cancel()
  }

  /** The caller's thread died: nobody will read the replies, so stop the work meant for it. */
  abandonCaller(thread: number): void {
    const invocations = this.invocations
    if (invocations === undefined) return
    for (const [key, invocation] of invocations) {
      if (invocation.from !== thread) continue
      invocations.delete(key)
      invocation.cancel()
    }
  }

  credit(from: number, correlation: number, n: number): void {
    this.invocations?.get(invocationKey(from, correlation))?.credits?.grant(n)
  }

  /**
   * Graceful stop: no new messages; in-flight ones get `drainMs` to finish, then their signals
   * abort and their callers get `stopped`; queued asks get `stopped`, queued tells become dead
   * letters (or, when stopping to restart, all go back to their senders to wait for the next
   * incarnation); then the stop hook runs.
   */
  stop(reason: StopReason, drainMs: number): Promise<void> {
    this.stopping ??= this.stopGracefully(reason, drainMs)
    return this.stopping
  }

  private async stopGracefully(reason: StopReason, drainMs: number): Promise<void> {
    if (this.status === 'starting') await this.initialised // the stop hook needs the state init builds
    if (this.status !== 'running') return
    this.status = 'stopping'
    this.stopReason = reason
    this.askStop()
    if (reason === 'restart') {
      // Senders hold new messages from now on, instead of sending them to a cell that refuses them.
      this.host.unavailable(this)
      this.returnQueued()
    } else this.failQueued({ code: 'stopped', message: `${this.label} stopped before handling the message` }, 'stopped')
    if (this.active > 0) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        new Promise<void>(resolve => (this.idle = resolve)),
        new Promise<void>(resolve => (timer = setTimeout(resolve, drainMs))),
      ])
      clearTimeout(timer)
    }
    this.abortAll()
    this.failInvocations({ code: 'stopped', message: `${this.label} stopped while handling the message` })
    await this.runStopHook(reason)
    this.status = 'stopped'
    this.host.exited(this, reason, undefined)
  }

  private refuseUnknownType(kind: number, msg: unknown, from: number, correlation: number): void {
    const type = (msg as { type?: unknown } | null)?.type
    const message = `${this.label} has no message of type ${JSON.stringify(type) ?? String(type)}`
    if (kind === Kind.tell) this.host.deadLetter(this.label, msg, 'bad_message')
    else this.host.fail(from, correlation, { code: 'bad_message', message })
  }

  private schedule(): void {
    if (!this.scheduled && this.status === 'running') {
      this.scheduled = true
      queueMicrotask(() => this.drain())
    }
  }

  /** Handles queued messages; a method, not a bound closure, so an idle actor holds none. */
  private drain(): void {
    this.scheduled = false
    const mailbox = this.mailbox
    let budget = DRAIN_BUDGET
    const maxConcurrent = this.definition.maxConcurrent ?? 1
    while (this.status === 'running' && this.active < maxConcurrent && mailbox.take()) {
      const deadline = mailbox.deadline
      if (deadline !== NO_DEADLINE && deadline < Date.now()) continue // the asker has already timed out
      this.handled++
      const kind = mailbox.kind
      const payload = mailbox.payload
      mailbox.payload = undefined // an idle actor keeps no message it handled
      if (kind === Kind.tell) this.runTell(payload)
      else if (kind === Kind.ask) this.runAsk(payload, mailbox.from, mailbox.correlation)
      else this.runStream(payload as [number, unknown], mailbox.from, mailbox.correlation)
      if (--budget === 0) {
        this.scheduled = true
        setImmediate(() => this.drain())
        return
      }
      if (flushOverdue()) {
        // The pending flush was queued before this, so it runs first.
        this.scheduled = true
        queueMicrotask(() => this.drain())
        return
      }
    }
  }

  private runTell(msg: unknown): void {
    let result: unknown
    try {
      result = this.definition.receive(this.state, msg, this.context)
    } catch (error) {
      this.tellFailed(error)
      return
    }
    if (isThenable(result)) {
      this.active++
      result.then(
        () => this.settled(),
        error => {
          this.settled()
          this.tellFailed(error)
        },
      )
    }
  }

  private runAsk(msg: unknown, from: number, correlation: number): void {
    const invocation = new Invocation(from, correlation, this)
    let result: unknown
    try {
      result = this.definition.receive(this.state, msg, new InvocationContext(this.context, invocation))
    } catch (error) {
      this.rejectAsk(invocation, error)
      return
    }
    // A synchronous answer goes straight back: nothing could cancel it or crash under it, so
    // only asks still pending need to be findable by cancel, credit and crash.
    if (!isThenable(result)) {
      this.host.reply(from, correlation, result)
      return
    }
    this.tracked().set(invocationKey(from, correlation), invocation)
    this.active++
    result.then(
      value => {
        this.settled()
        this.finish(invocation, value)
      },
      error => {
        this.settled()
        this.askFailed(invocation, error)
      },
    )
  }

  private runStream([window, msg]: [number, unknown], from: number, correlation: number): void {
    const invocation = this.begin(from, correlation)
    if (this.definition.stream === undefined) {
      this.askFailed(invocation, new ActorError('bad_message', `${this.label} does not stream replies`))
      return
    }
    invocation.credits = new StreamCredits(window)
    this.active++
    void this.pump(invocation, msg).finally(() => this.settled())
  }

  private async pump(invocation: Invocation, msg: unknown): Promise<void> {
    const { from, correlation } = invocation
    const credits = invocation.credits!
    const signal = invocation.signal
    let iterator: AsyncIterator<unknown> | undefined
    try {
      iterator = this.definition.stream!(this.state, msg, new InvocationContext(this.context, invocation))[Symbol.asyncIterator]()
      for (;;) {
        const waiting = credits.available(signal)
        if (waiting !== undefined) await waiting
        if (invocation.cancelled || !this.tracking(invocation)) break
        const next = await iterator.next()
        if (!this.tracking(invocation)) break // crashed or stopped meanwhile
        if (next.done) {
          this.untrack(invocation)
          if (!invocation.cancelled) this.host.end(from, correlation)
          return
        }
        if (invocation.cancelled) break
        credits.spend()
        this.host.chunk(from, correlation, next.value, this.slot)
      }
      this.untrack(invocation)
      // Cancelled: let the generator run its finally blocks, without waiting on it forever.
      iterator.return?.()?.then(undefined, (error: unknown) => this.log.warn({ err: error }, 'stream generator failed while closing'))
    } catch (error) {
      this.askFailed(invocation, error)
    }
  }

  private begin(from: number, correlation: number): Invocation {
    const invocation = new Invocation(from, correlation, this)
    this.tracked().set(invocationKey(from, correlation), invocation)
    return invocation
  }

  private tracked(): Map<number, Invocation> {
    return (this.invocations ??= new Map())
  }

  private tracking(invocation: Invocation): boolean {
    return this.invocations?.get(invocationKey(invocation.from, invocation.correlation)) === invocation
  }

  /** Stops tracking `invocation`; false when it was not (crashed, stopped or finished meanwhile). */
  private untrack(invocation: Invocation): boolean {
    return this.invocations?.delete(invocationKey(invocation.from, invocation.correlation)) === true
  }

  private finish(invocation: Invocation, value: unknown): void {
    if (!this.untrack(invocation)) return
    if (!invocation.cancelled) this.host.reply(invocation.from, invocation.correlation, value)
  }

  private askFailed(invocation: Invocation, error: unknown): void {
    if (!this.untrack(invocation)) return
    this.rejectAsk(invocation, error)
  }

  /** A thrown ActorError rejects this one ask; anything else crashes the actor. */
  private rejectAsk(invocation: Invocation, error: unknown): void {
    if (error instanceof ActorError) {
      if (!invocation.cancelled) this.host.fail(invocation.from, invocation.correlation, error.toJSON())
      return
    }
    this.crash(error, invocation)
  }

  private tellFailed(error: unknown): void {
    if (error instanceof ActorError) {
      this.log.warn({ err: error, code: error.code }, 'tell rejected')
      return
    }
    this.crash(error)
  }

  private settled(): void {
    this.active--
    if (this.active === 0 && this.idle !== undefined) {
      const idle = this.idle
      this.idle = undefined
      idle()
    }
    this.schedule()
  }

  /**
   * The behaviour failed: fail everything it holds, run its stop hook, report the crash.
   * `culprit`, the ask whose handling threw, gets the thrown message itself.
   */
  crash(error: unknown, culprit?: Invocation): void {
    if (this.status === 'crashed' || this.status === 'stopped') return
    this.status = 'crashed'
    // Before anyone hears of the crash: a caller that retries on `crashed` must find the actor
    // marked restarting, not be routed to where it used to run.
    this.host.unavailable(this)
    this.askStop()
    this.abortAll()
    if (culprit !== undefined) this.host.fail(culprit.from, culprit.correlation, { code: 'crashed', message: describeThrown(error) })
    this.failInvocations({ code: 'crashed', message: `${this.label} crashed: ${describeThrown(error)}` })
    this.returnQueued()
    this.log.error({ err: error }, 'actor crashed')
    void this.runStopHook('crash').finally(() => this.host.exited(this, 'crash', error))
  }

  private failInvocations(failure: ActorErrorData): void {
    const invocations = this.invocations
    if (invocations === undefined) return
    this.invocations = undefined
    for (const invocation of invocations.values()) {
      invocation.cancel()
      this.host.fail(invocation.from, invocation.correlation, failure)
    }
  }

  private returnQueued(): void {
    const mailbox = this.mailbox
    while (mailbox.take()) {
      this.host.returnUnhandled(mailbox.kind, this.slot, this.generation, mailbox.from, mailbox.correlation, mailbox.deadline, mailbox.payload)
    }
  }

  private failQueued(failure: ActorErrorData, deadLetterCode: string): void {
    const mailbox = this.mailbox
    while (mailbox.take()) {
      if (mailbox.kind === Kind.tell) this.host.deadLetter(this.label, mailbox.payload, deadLetterCode)
      else this.host.fail(mailbox.from, mailbox.correlation, failure)
    }
  }

  private async runStopHook(reason: StopReason): Promise<void> {
    if (this.definition.stop === undefined) return
    try {
      await this.definition.stop(this.state, reason, this.context)
    } catch (error) {
      this.log.error({ err: error, reason }, 'stop hook failed')
    }
  }
}

/**
 * What a behaviour's init, receive of a tell, and stop hook see (an ask's or stream's own is an
 * InvocationContext over it): one small object per actor, each part fetched from the cell,
 * where it is made when first used.
 */
class CellContext implements BehaviorContext {
  constructor(private readonly cell: ActorCell) {}
  get self(): ActorRef {
    return this.cell.self
  }
  get system(): SystemHandle {
    return this.cell.system
  }
  get log(): Logger {
    return this.cell.log
  }
  get signal(): AbortSignal {
    return this.cell.signal
  }
  get cancellation(): CancelSource {
    return this.cell.cancellation
  }
  get stopping(): CancelSource {
    return this.cell.stopRequested
  }
  stop(): void {
    this.cell.stopItself()
  }
}
