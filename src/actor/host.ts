import type { MessagePort } from 'node:worker_threads'
import type { Logger } from 'pino'
import { NOT_SENT, PendingAsks } from './ask.js'
import { isCancelled, whenCancelled } from './cancel.js'
import type { Behavior, StopReason } from './behavior.js'
import { ActorCell, type CellHost } from './cell.js'
import { EnvelopeCodec, type RefFactory } from './codec.js'
import { DeadLetters } from './dead-letters.js'
import type { EventLoopDelayStats } from './event-loop-delay.js'
import { ActorDirectory, KERNEL_SLOT, LOCATION_RESTARTING } from './directory.js'
import { FIELDS_PER_ENVELOPE, F_CORRELATION, F_DEADLINE, F_GENERATION, F_KIND, F_PAYLOAD, F_TARGET, Kind, NO_DEADLINE } from './envelope.js'
import { ActorError, describeThrown, type ActorErrorData } from './errors.js'
import { Link, type LinkControl, type LinkEvents, type LinkRings } from './link.js'
import { ActorRef, type AskOptions, type MessageRouter, type StreamOptions } from './ref.js'
import { MAX_HELD_PER_ACTOR, RestartWaits, locationError, type HeldMessage, type HeldMessageRouter } from './restart-wait.js'
import { DEFAULT_STREAM_WINDOW, StreamConsumer, type StreamConsumerHost } from './stream.js'
import type { SystemHandle } from './system-handle.js'

export const MAIN_THREAD = 0

/** A kernel operation: SYSTEM envelopes addressed to a thread rather than to an actor. */
export interface KernelOp {
  readonly op: string
  readonly [field: string]: unknown
}

/** Kernel operations a thread's role adds to the ones every host serves (spawn, stop, thread_down). */
export interface KernelService {
  handle(op: KernelOp, from: number): unknown
  control?(from: number, message: LinkControl): void
}

export interface HostedActor {
  readonly slot: number
  readonly generation: number
  /** Which placement of this actor this is, so a late exit report of an earlier one is ignored. */
  readonly incarnation: number
  readonly name: string | undefined
  readonly behavior: Behavior
  readonly args: unknown
  readonly mailboxCapacity: number
  readonly shutdownMs: number
  /** The actor's ref, when the caller holds one already (the main thread's supervision does). */
  readonly ref?: ActorRef
}

export interface ActorHostOptions {
  readonly threadId: number
  readonly directory: ActorDirectory
  readonly log: Logger
  readonly askTimeoutMs: number
  /** The SystemHandle behaviours on this thread see as ctx.system. */
  readonly system: (host: ActorHost) => SystemHandle
  /**
   * An actor hosted here crashed or stopped itself; its supervisor (on the main thread) must
   * hear of it. Stops the supervisor asked for are not reported: it is already waiting on them.
   */
  readonly onExit: (slot: number, generation: number, incarnation: number, reason: 'crash' | 'normal', error: unknown) => void
  /**
   * After sending, spin briefly for the answer: 'always' on worker threads, whose event loops
   * serve actors only; 'awaiting' on the main thread, only while it waits on an ask or stream.
   */
  readonly spinAfterSend: 'always' | 'awaiting'
}

export interface HostStats {
  readonly thread: number
  readonly actors: Array<{ slot: number; status: string; mailboxDepth: number; messagesHandled: number }>
  readonly deadLetters: { total: number; byCode: Record<string, number> }
  readonly pendingAsks: number
  /** Messages this thread holds for actors that are restarting. */
  readonly heldForRestart: number
  /** Added by the thread's owner (worker-host.ts, ActorSystem), which runs the monitor. */
  readonly eventLoopDelay?: EventLoopDelayStats | null
}

const labelOf = (ref: ActorRef<unknown>): string => ref.name ?? `#${ref.slot}`

/**
 * The actor runtime of one thread: it routes messages to where the directory says an actor
 * lives (straight into a local mailbox, or onto the link to another thread), hosts the cells
 * of the actors placed here, and settles the asks and streams this thread is waiting on.
 *
 * A message for an actor that is restarting waits on this thread, its sender's, and goes to the
 * new incarnation (restart-wait.ts); so do the messages a crashed or restarting actor hands
 * back unhandled. Only an actor gone for good fails them at once.
 */
export class ActorHost implements MessageRouter, CellHost, RefFactory, StreamConsumerHost, LinkEvents, HeldMessageRouter {
  readonly threadId: number
  readonly directory: ActorDirectory
  readonly log: Logger
  readonly deadLetters: DeadLetters
  readonly system: SystemHandle
  kernel: KernelService | undefined

  private readonly codec: EnvelopeCodec
  private askTimeoutMs: number
  private readonly onExit: ActorHostOptions['onExit']
  private readonly spinAlways: boolean
  private readonly links = new Map<number, Link>()
  /** Envelopes for a thread whose link has not arrived yet, in send order. */
  private readonly awaitingLink = new Map<number, unknown[]>()
  private readonly downThreads = new Set<number>()
  private readonly cells = new Map<number, ActorCell>()
  private readonly asks = new PendingAsks()
  private readonly consumers = new Map<number, StreamConsumer<unknown>>()
  private readonly waits: RestartWaits
  private lastCorrelation = 0
  private shutDown = false

  constructor(options: ActorHostOptions) {
    this.threadId = options.threadId
    this.directory = options.directory
    this.log = options.log
    this.askTimeoutMs = options.askTimeoutMs
    this.onExit = options.onExit
    this.spinAlways = options.spinAfterSend === 'always'
    this.deadLetters = new DeadLetters(options.log)
    this.codec = new EnvelopeCodec(this)
    this.waits = new RestartWaits(options.directory, this)
    this.system = options.system(this)
  }

  refFor(slot: number, generation: number, name: string | undefined): ActorRef {
    return new ActorRef(slot, generation, name, this)
  }

  // ---- sending -------------------------------------------------------------------------

  tell(ref: ActorRef, msg: unknown): void {
    const location = this.directory.locate(ref.slot, ref.generation)
    if (location >= 0 && !this.waits.holds(ref.slot, ref.generation)) this.dispatch(location, Kind.tell, ref.slot, ref.generation, 0, NO_DEADLINE, msg)
    else if (!this.mayWait(location)) this.deadLetters.record(labelOf(ref), msg, locationError(location, '').code)
    else if (!this.waits.hold(this.heldMessage(Kind.tell, ref.slot, ref.generation, labelOf(ref), 0, NO_DEADLINE, msg), false)) {
      this.deadLetters.record(labelOf(ref), msg, this.notHeld(labelOf(ref)).code)
    }
  }

  ask<R>(ref: ActorRef, msg: unknown, options: AskOptions | undefined): Promise<R> {
    const timeoutMs = options?.timeoutMs ?? this.askTimeoutMs
    if (!(timeoutMs > 0)) return Promise.reject(new TypeError(`ask: timeoutMs must be a positive number, got ${timeoutMs}`))
    if (isCancelled(options)) return Promise.reject(new ActorError('cancelled', `ask to ${labelOf(ref)} was cancelled before it was sent`))
    const location = this.directory.locate(ref.slot, ref.generation)
    // Away: restarting, or messages held for it here already, which this one must not overtake.
    const away = location < 0 || this.waits.holds(ref.slot, ref.generation)
    if (away && !this.mayWait(location)) return Promise.reject(ActorError.fromData(locationError(location, labelOf(ref))))
    const correlation = this.nextCorrelation()
    const deadline = Number.isFinite(timeoutMs) ? Date.now() + timeoutMs : NO_DEADLINE
    const reply = this.asks.register<R>(correlation, away ? NOT_SENT : location, labelOf(ref), timeoutMs, options, (abandoned, thread) =>
      this.sendCancel(thread, ref.slot, ref.generation, abandoned),
    )
    if (!away) this.dispatch(location, Kind.ask, ref.slot, ref.generation, correlation, deadline, msg)
    else if (!this.waits.hold(this.heldMessage(Kind.ask, ref.slot, ref.generation, labelOf(ref), correlation, deadline, msg), false)) {
      this.asks.reject(correlation, ActorError.fromData(this.notHeld(labelOf(ref))))
    }
    return reply
  }

  /** Whether a message to `location` may wait for its actor: it is restarting, or messages wait for it already. */
  private mayWait(location: number): boolean {
    return location >= 0 || location === LOCATION_RESTARTING
  }

  /** Why a message for a restarting actor could not be held: as if it had not been tried. */
  private notHeld(label: string): ActorErrorData {
    if (this.shutDown) return { code: 'stopped', message: 'the actor system shut down' }
    return { code: 'restarting', message: `${label} is restarting, and ${MAX_HELD_PER_ACTOR} messages already wait for it here` }
  }

  private heldMessage(kind: number, slot: number, generation: number, label: string, correlation: number, deadline: number, payload: unknown): HeldMessage {
    const expiresAt = kind === Kind.ask ? Infinity : Date.now() + this.askTimeoutMs
    return { kind, slot, generation, label, correlation, deadline, payload, expiresAt }
  }

  stream<C>(ref: ActorRef, msg: unknown, options: StreamOptions | undefined): AsyncIterable<C> {
    return { [Symbol.asyncIterator]: () => this.openStream<C>(ref, msg, options) }
  }

  private openStream<C>(ref: ActorRef, msg: unknown, options: StreamOptions | undefined): StreamConsumer<C> {
    const window = options?.window ?? DEFAULT_STREAM_WINDOW
    if (!Number.isInteger(window) || window < 1) throw new TypeError(`stream: window must be a positive integer, got ${window}`)
    const location = this.directory.locate(ref.slot, ref.generation)
    const away = location < 0 || this.waits.holds(ref.slot, ref.generation)
    const consumer = new StreamConsumer<C>(this.nextCorrelation(), away ? NOT_SENT : location, ref.slot, ref.generation, window, this)
    if (!this.mayWait(location)) consumer.fail(ActorError.fromData(locationError(location, labelOf(ref))))
    else if (isCancelled(options)) consumer.fail(new ActorError('cancelled', `stream from ${labelOf(ref)} was cancelled before it opened`))
    if (consumer.done) return consumer
    const unsubscribe = whenCancelled(options, () => {
      if (consumer.done) return
      consumer.fail(new ActorError('cancelled', `stream from ${labelOf(ref)} was cancelled`))
      this.cancel(consumer)
    })
    if (unsubscribe !== undefined) consumer.onFinish(unsubscribe)
    this.consumers.set(consumer.correlation, consumer as StreamConsumer<unknown>)
    if (!away) this.dispatch(location, Kind.stream, ref.slot, ref.generation, consumer.correlation, NO_DEADLINE, [window, msg])
    else if (!this.waits.hold(this.heldMessage(Kind.stream, ref.slot, ref.generation, labelOf(ref), consumer.correlation, NO_DEADLINE, [window, msg]), false)) {
      this.settleError(consumer.correlation, this.notHeld(labelOf(ref)))
    }
    return consumer
  }

  prewake(ref: ActorRef): void {
    const location = this.directory.locate(ref.slot, ref.generation)
    if (location >= 0 && location !== this.threadId) this.links.get(location)?.prewake()
  }

  /** An ask to another thread's kernel (or this one's). */
  /** The default deadline of asks sent from this thread from now on (asks in flight keep theirs). */
  setAskTimeout(ms: number): void {
    this.askTimeoutMs = ms
  }

  askKernel<R>(thread: number, op: KernelOp, timeoutMs = this.askTimeoutMs): Promise<R> {
    const correlation = this.nextCorrelation()
    const reply = this.asks.register<R>(correlation, thread, `kernel of thread ${thread}`, timeoutMs, undefined, () => {})
    if (thread === this.threadId) this.handleKernelOp(this.threadId, correlation, op)
    else this.sendTo(thread, Kind.system, KERNEL_SLOT, 0, correlation, NO_DEADLINE, op)
    return reply
  }

  tellKernel(thread: number, op: KernelOp): void {
    if (thread === this.threadId) this.handleKernelOp(this.threadId, 0, op)
    else this.sendTo(thread, Kind.system, KERNEL_SLOT, 0, 0, NO_DEADLINE, op)
  }

  private nextCorrelation(): number {
    this.lastCorrelation = (this.lastCorrelation + 1) >>> 0 || 1
    return this.lastCorrelation
  }

  private dispatch(location: number, kind: number, slot: number, generation: number, correlation: number, deadline: number, payload: unknown): void {
    if (location === this.threadId) this.deliverHere(kind, slot, generation, this.threadId, correlation, deadline, payload)
    else this.sendTo(location, kind, slot, generation, correlation, deadline, payload)
  }

  private sendCancel(location: number, slot: number, generation: number, correlation: number): void {
    if (location === this.threadId) this.cells.get(slot)?.cancel(this.threadId, correlation)
    else if (location !== NOT_SENT) this.sendTo(location, Kind.cancel, slot, generation, correlation, NO_DEADLINE, null)
  }

  private sendTo(thread: number, kind: number, target: number, generation: number, correlation: number, deadline: number, payload: unknown): void {
    const link = this.links.get(thread)
    if (link !== undefined) {
      link.send(kind, target, generation, correlation, deadline, payload)
      return
    }
    if (this.shutDown || this.downThreads.has(thread)) {
      this.undeliverable(thread, kind, target, correlation, payload)
      return
    }
    // The directory can name a thread before its link's handshake reaches us: hold the
    // envelopes, in order, until it does (or until the thread is reported down).
    let queue = this.awaitingLink.get(thread)
    if (queue === undefined) this.awaitingLink.set(thread, (queue = []))
    queue.push(kind, target, generation, correlation, deadline, payload)
  }

  private undeliverable(thread: number, kind: number, target: number, correlation: number, payload: unknown): void {
    const error = { code: 'crashed', message: `thread ${thread} is gone` }
    if (kind === Kind.tell) this.deadLetters.record(`#${target}`, payload, 'crashed')
    else if ((kind === Kind.ask || kind === Kind.stream || kind === Kind.system) && correlation !== 0) this.settleError(correlation, error)
    // Replies, chunks, credits, cancels and returned messages for a dead thread have no one left to read them.
  }

  // ---- receiving -----------------------------------------------------------------------

  batch(peer: number, fields: unknown[]): void {
    for (let i = 0; i < fields.length; i += FIELDS_PER_ENVELOPE) {
      const kind = fields[i + F_KIND] as number
      const target = fields[i + F_TARGET] as number
      const correlation = fields[i + F_CORRELATION] as number
      const payload = fields[i + F_PAYLOAD]
      switch (kind) {
        case Kind.tell:
        case Kind.ask:
        case Kind.stream:
          this.deliverHere(kind, target, fields[i + F_GENERATION] as number, peer, correlation, fields[i + F_DEADLINE] as number, payload)
          break
        case Kind.reply:
          this.asks.resolve(correlation, payload)
          break
        case Kind.error:
          this.settleError(correlation, payload as ActorErrorData)
          break
        case Kind.chunk:
          this.consumers.get(correlation)?.push(payload)
          break
        case Kind.end:
          this.settleEnd(correlation)
          break
        case Kind.cancel:
          this.cells.get(target)?.cancel(peer, correlation)
          break
        case Kind.credit:
          this.cells.get(target)?.credit(peer, correlation, payload as number)
          break
        case Kind.system:
          this.handleKernelOp(peer, correlation, payload as KernelOp)
          break
        case Kind.returned: {
          const [returnedKind, message] = payload as [number, unknown]
          this.takeBack(returnedKind, target, fields[i + F_GENERATION] as number, correlation, fields[i + F_DEADLINE] as number, message)
          break
        }
        default:
          this.log.error({ kind, peer }, 'envelope of unknown kind dropped')
      }
    }
  }

  /**
   * A message for an actor that is restarting, or has moved to another thread, goes back to its
   * sender, which holds it for the actor's next incarnation; only one gone for good is refused.
   */
  private deliverHere(kind: number, slot: number, generation: number, from: number, correlation: number, deadline: number, payload: unknown): void {
    const cell = this.cells.get(slot)
    if (cell !== undefined && cell.generation === generation) {
      if (cell.deliver(kind, payload, from, correlation, deadline)) return
      if (cell.restarting) this.returnUnhandled(kind, slot, generation, from, correlation, deadline, payload)
      else this.refuse(kind, from, correlation, cell.label, payload, this.refusal(cell))
    } else {
      const location = this.directory.locate(slot, generation)
      if (this.mayWait(location)) this.returnUnhandled(kind, slot, generation, from, correlation, deadline, payload)
      else this.refuse(kind, from, correlation, `#${slot}`, payload, locationError(location, `#${slot}`))
    }
  }

  private refusal(cell: ActorCell): ActorErrorData {
    if (cell.status === 'starting' || cell.status === 'running') return { code: 'backpressure', message: `${cell.label}'s mailbox is full` }
    return { code: 'stopped', message: `${cell.label} is stopping` }
  }

  private refuse(kind: number, from: number, correlation: number, label: string, payload: unknown, error: ActorErrorData): void {
    if (kind === Kind.tell) this.deadLetters.record(label, payload, error.code)
    else this.fail(from, correlation, error)
  }

  undecodable(peer: number, error: ActorError): void {
    // Asks and streams whose envelopes it carried time out: nothing in it can be trusted to fail them.
    this.log.error({ peer, code: error.code, err: error }, `a batch from thread ${peer} could not be decoded and was dropped`)
  }

  unencodable(peer: number, kind: number, target: number, correlation: number, reason: string): void {
    const error = { code: 'bad_message', message: `message could not be encoded for thread ${peer}: ${reason}` }
    switch (kind) {
      case Kind.tell:
        this.deadLetters.record(`#${target}`, undefined, 'bad_message')
        break
      case Kind.ask:
      case Kind.stream:
      case Kind.system:
        if (correlation !== 0) this.settleError(correlation, error)
        break
      case Kind.reply:
        this.sendTo(peer, Kind.error, 0, 0, correlation, NO_DEADLINE, { code: 'bad_message', message: `reply could not be encoded: ${reason}` })
        break
      case Kind.chunk:
        // The chunk's target field carries the producing actor, so the stream can be stopped too.
        this.cells.get(target)?.cancel(peer, correlation)
        this.sendTo(peer, Kind.error, 0, 0, correlation, NO_DEADLINE, { code: 'bad_message', message: `stream chunk could not be encoded: ${reason}` })
        break
      case Kind.returned:
        // A tell handed back carries no correlation; an ask or stream is failed at its sender.
        if (correlation === 0) this.deadLetters.record(`#${target}`, undefined, 'bad_message')
        else this.sendTo(peer, Kind.error, 0, 0, correlation, NO_DEADLINE, error)
        break
      default:
        this.log.error({ kind, peer, reason }, 'kernel envelope could not be encoded')
    }
  }

  control(peer: number, message: LinkControl): void {
    if (message.ctl === 'peer') this.addLink(message['thread'] as number, message['port'] as MessagePort, message['rings'] as LinkRings | undefined)
    else this.kernel?.control?.(peer, message)
  }

  linkClosed(peer: number): void {
    this.links.delete(peer)
  }

  expectsReply(_peer: number): boolean {
    return this.spinAlways || this.asks.size > 0 || this.consumers.size > 0
  }

  // ---- settling on the caller's side ---------------------------------------------------

  private settleError(correlation: number, error: ActorErrorData): void {
    if (this.asks.reject(correlation, ActorError.fromData(error))) return
    const consumer = this.consumers.get(correlation)
    if (consumer === undefined) return
    this.consumers.delete(correlation)
    consumer.fail(ActorError.fromData(error))
  }

  private settleEnd(correlation: number): void {
    const consumer = this.consumers.get(correlation)
    if (consumer === undefined) return
    this.consumers.delete(correlation)
    consumer.end()
  }

  // ---- CellHost: the callee's side -----------------------------------------------------

  reply(to: number, correlation: number, value: unknown): void {
    if (to === this.threadId) this.asks.resolve(correlation, value)
    else this.sendTo(to, Kind.reply, 0, 0, correlation, NO_DEADLINE, value)
  }

  chunk(to: number, correlation: number, value: unknown, producer = 0): void {
    if (to === this.threadId) this.consumers.get(correlation)?.push(value)
    else this.sendTo(to, Kind.chunk, producer, 0, correlation, NO_DEADLINE, value)
  }

  end(to: number, correlation: number): void {
    if (to === this.threadId) this.settleEnd(correlation)
    else this.sendTo(to, Kind.end, 0, 0, correlation, NO_DEADLINE, null)
  }

  fail(to: number, correlation: number, error: ActorErrorData): void {
    if (to === this.threadId) this.settleError(correlation, error)
    else this.sendTo(to, Kind.error, 0, 0, correlation, NO_DEADLINE, error)
  }

  deadLetter(target: string, message: unknown, code: string): void {
    this.deadLetters.record(target, message, code)
  }

  /** Hands a message its actor did not handle back to the thread that sent it, to wait there. */
  returnUnhandled(kind: number, slot: number, generation: number, to: number, correlation: number, deadline: number, payload: unknown): void {
    if (to === this.threadId) this.takeBack(kind, slot, generation, correlation, deadline, payload)
    else this.sendTo(to, Kind.returned, slot, generation, correlation, deadline, [kind, payload])
  }

  unavailable(cell: ActorCell): void {
    this.directory.publish(cell.slot, cell.generation, LOCATION_RESTARTING)
  }

  exited(cell: ActorCell, reason: StopReason, error: unknown): void {
    if (this.cells.get(cell.slot) === cell) this.cells.delete(cell.slot)
    if (reason !== 'crash' && !cell.stoppedItself) return
    this.directory.publish(cell.slot, cell.generation, LOCATION_RESTARTING)
    this.onExit(cell.slot, cell.generation, cell.incarnation, reason === 'crash' ? 'crash' : 'normal', error)
  }

  // ---- StreamConsumerHost --------------------------------------------------------------

  credit(consumer: StreamConsumer<unknown>, n: number): void {
    if (consumer.producerThread === this.threadId) this.cells.get(consumer.slot)?.credit(this.threadId, consumer.correlation, n)
    else if (consumer.producerThread !== NOT_SENT) {
      this.sendTo(consumer.producerThread, Kind.credit, consumer.slot, consumer.generation, consumer.correlation, NO_DEADLINE, n)
    }
  }

  cancel(consumer: StreamConsumer<unknown>): void {
    this.consumers.delete(consumer.correlation)
    this.sendCancel(consumer.producerThread, consumer.slot, consumer.generation, consumer.correlation)
  }

  // ---- HeldMessageRouter: messages waiting for a restart ---------------------------------

  /** A message handed back unhandled: the sender holds it, unless its caller has given up on it. */
  private takeBack(kind: number, slot: number, generation: number, correlation: number, deadline: number, payload: unknown): void {
    if (kind === Kind.ask && !this.asks.moveTo(correlation, NOT_SENT)) return
    if (kind === Kind.stream) {
      const consumer = this.consumers.get(correlation)
      if (consumer === undefined) return
      consumer.producerThread = NOT_SENT
    }
    const held = this.heldMessage(kind, slot, generation, `#${slot}`, correlation, deadline, payload)
    if (!this.waits.hold(held, true)) this.abandon(held, this.notHeld(held.label))
  }

  wanted(message: HeldMessage): boolean {
    if (message.kind === Kind.ask) return this.asks.has(message.correlation)
    if (message.kind === Kind.stream) return this.consumers.has(message.correlation)
    return true
  }

  resend(message: HeldMessage, location: number): void {
    if (message.kind === Kind.ask) this.asks.moveTo(message.correlation, location)
    else if (message.kind === Kind.stream) this.consumers.get(message.correlation)!.producerThread = location
    this.dispatch(location, message.kind, message.slot, message.generation, message.correlation, message.deadline, message.payload)
  }

  abandon(message: HeldMessage, error: ActorErrorData): void {
    if (message.kind === Kind.tell) this.deadLetters.record(message.label, message.payload, error.code)
    else this.settleError(message.correlation, error)
  }

  // ---- hosting -------------------------------------------------------------------------

  async hostActor(actor: HostedActor): Promise<ActorRef> {
    const self = actor.ref ?? this.refFor(actor.slot, actor.generation, actor.name)
    const label = actor.name ?? `#${actor.slot}`
    const cell = new ActorCell(this, {
      incarnation: actor.incarnation,
      behavior: actor.behavior,
      mailboxCapacity: actor.mailboxCapacity,
      self,
      shutdownMs: actor.shutdownMs,
    })
    this.cells.set(actor.slot, cell)
    this.directory.publish(actor.slot, actor.generation, this.threadId)
    try {
      await cell.start(actor.args)
    } catch (error) {
      if (this.cells.get(actor.slot) === cell) this.cells.delete(actor.slot)
      this.directory.publish(actor.slot, actor.generation, LOCATION_RESTARTING)
      // A typed error from init (a store whose server is unreachable, say) keeps its code.
      const code = error instanceof ActorError ? error.code : 'crashed'
      throw new ActorError(code, `${label} failed to start: ${describeThrown(error)}`, error instanceof ActorError ? error.data : undefined, { cause: error })
    }
    return self
  }

  async stopActor(slot: number, reason: StopReason, drainMs: number): Promise<void> {
    await this.cells.get(slot)?.stop(reason, drainMs)
  }

  /** A thread died: fail at once everything that was waiting on it. */
  threadDown(thread: number): void {
    this.downThreads.add(thread)
    this.links.get(thread)?.close()
    this.links.delete(thread)
    const queued = this.awaitingLink.get(thread) ?? []
    this.awaitingLink.delete(thread)
    for (let i = 0; i < queued.length; i += FIELDS_PER_ENVELOPE) {
      this.undeliverable(thread, queued[i + F_KIND] as number, queued[i + F_TARGET] as number, queued[i + F_CORRELATION] as number, queued[i + F_PAYLOAD])
    }
    const crashed = (): ActorError => new ActorError('crashed', `worker thread ${thread} died with the message in flight`)
    this.asks.rejectThread(thread, crashed)
    for (const [correlation, consumer] of this.consumers) {
      if (consumer.producerThread !== thread) continue
      this.consumers.delete(correlation)
      consumer.fail(crashed())
    }
    for (const cell of this.cells.values()) cell.abandonCaller(thread)
  }

  addLink(peer: number, port: MessagePort, rings?: LinkRings): void {
    const link = new Link(peer, port, this.codec, this, rings)
    this.links.set(peer, link)
    const queued = this.awaitingLink.get(peer)
    this.awaitingLink.delete(peer)
    if (queued === undefined) return
    for (let i = 0; i < queued.length; i += FIELDS_PER_ENVELOPE) {
      link.send(
        queued[i + F_KIND] as number,
        queued[i + F_TARGET] as number,
        queued[i + F_GENERATION] as number,
        queued[i + F_CORRELATION] as number,
        queued[i + F_DEADLINE] as number,
        queued[i + F_PAYLOAD],
      )
    }
  }

  link(peer: number): Link | undefined {
    return this.links.get(peer)
  }

  stats(): HostStats {
    return {
      thread: this.threadId,
      actors: [...this.cells.values()].map(cell => ({
        slot: cell.slot,
        status: cell.status,
        mailboxDepth: cell.mailboxDepth,
        messagesHandled: cell.handled,
      })),
      deadLetters: this.deadLetters.snapshot(),
      pendingAsks: this.asks.size,
      heldForRestart: this.waits.size,
    }
  }

  /** Closes every link; asks and streams still waiting fail with `stopped`. Idempotent. */
  close(): void {
    if (this.shutDown) return
    this.shutDown = true
    for (const link of this.links.values()) link.close()
    this.links.clear()
    this.waits.close()
    const stopped = (): ActorError => new ActorError('stopped', 'the actor system shut down')
    this.asks.rejectAll(stopped)
    for (const consumer of this.consumers.values()) consumer.fail(stopped())
    this.consumers.clear()
  }

  // ---- kernel operations ---------------------------------------------------------------

  private handleKernelOp(from: number, correlation: number, op: KernelOp): void {
    let result: unknown
    try {
      result = this.runKernelOp(op, from)
    } catch (error) {
      this.kernelOpFailed(from, correlation, op, error)
      return
    }
    Promise.resolve(result).then(
      value => {
        if (correlation !== 0) this.reply(from, correlation, value)
      },
      error => this.kernelOpFailed(from, correlation, op, error),
    )
  }

  private kernelOpFailed(from: number, correlation: number, op: KernelOp, error: unknown): void {
    if (correlation !== 0) {
      this.fail(from, correlation, error instanceof ActorError ? error.toJSON() : { code: 'internal', message: describeThrown(error) })
    } else this.log.error({ err: error, op: op.op }, 'kernel operation failed')
  }

  private runKernelOp(op: KernelOp, from: number): unknown {
    switch (op.op) {
      case 'stop':
        return this.stopActor(op['slot'] as number, op['reason'] as StopReason, op['drainMs'] as number)
      case 'thread_down':
        this.threadDown(op['thread'] as number)
        return undefined
      default:
        if (this.kernel === undefined) throw new ActorError('internal', `thread ${this.threadId} has no kernel op '${op.op}'`)
        return this.kernel.handle(op, from)
    }
  }
}
