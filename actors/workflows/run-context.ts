import { pack } from 'msgpackr'
import type { Logger } from 'pino'
import { ActorError, type ActorRef, type SystemHandle } from '../../src/index.js'
import type { ChatCompletion } from '../providers/inference/protocol.js'
import type { ModelsMessage } from '../routing/models.js'
import type { EmbeddingsResponse, RunContext, SessionState, WaitOptions } from './define.js'
import { GAP_EVENT, TERMINAL_EVENTS, type RunEvent } from './protocol.js'
import { decodeValue, encodeValue, type InboxEvent, type JournalEntry } from './run-store.js'

/** What a run's execution needs from its actor: durable writes and where to announce events. */
export interface ExecutionHost {
  writeJournal(entry: JournalEntry): Promise<unknown>
  appendEvent(event: RunEvent): Promise<unknown>
  readonly system: SystemHandle
  readonly models: ActorRef<ModelsMessage> | undefined
}

/** A run's history as its journal, event log and inbox hold it when it resumes. */
export interface RunHistory {
  readonly journal: readonly JournalEntry[]
  readonly eventTypes: readonly string[]
  readonly inbox: readonly InboxEvent[]
}

/** Event types only the runtime writes: a stream's end and its gap marker. */
const RESERVED_EVENTS = new Set<string>([...Object.values(TERMINAL_EVENTS), GAP_EVENT])

interface Waiter {
  readonly idx: number
  readonly type: string
  readonly deadline: number | null
  readonly resolve: (value: Record<string, unknown>) => void
  readonly reject: (error: unknown) => void
  timer: NodeJS.Timeout | undefined
}

/**
 * One execution of a run: the RunContext its function sees. Durable calls are numbered in the
 * order the function makes them; on a resumed run a call whose number is in the journal takes
 * its recorded outcome (a step's result, a wait's event, a timer's deadline) and an emit whose
 * sequence is in the event log is not written again. A call that does not match what the
 * journal recorded at its number fails the run with `nondeterministic`.
 *
 * Once closed (finished, cancelled, timed out, its lease lost, its actor stopping) every
 * durable call throws and nothing more is written for it: a run function that ignores its
 * signal cannot touch the run's history after that.
 */
export class RunExecution implements RunContext {
  readonly runId: string
  readonly sessionId: string
  readonly attempt: number
  state: SessionState
  /** The actor's logger; the run's own child of it is made when the run's code first logs. */
  readonly #parentLog: Logger
  #log: Logger | undefined
  readonly #host: ExecutionHost
  /** Made when the run's code first asks for `signal`: most runs never do. */
  #abort: AbortController | undefined
  readonly #journal: Map<number, JournalEntry>
  readonly #eventTypes: readonly string[]
  /** Inbox events not yet taken by a wait, in arrival order. */
  readonly #unconsumed: InboxEvent[]
  #nextIdx = 0
  #nextSeq = 0
  /** The encoding of `state` as last journaled, to journal it again only when it changed. */
  #stateBytes: string
  readonly #waiters = new Set<Waiter>()
  readonly #timers = new Set<{ timer: NodeJS.Timeout; reject: (error: unknown) => void }>()
  #closed: ActorError | undefined

  /** `stateBytes`: `state` as encodeValue encodes it, when the caller has it already. */
  constructor(options: { runId: string; sessionId: string; attempt: number; state: SessionState; stateBytes?: string; log: Logger; host: ExecutionHost; history?: RunHistory | undefined }) {
    this.runId = options.runId
    this.sessionId = options.sessionId
    this.attempt = options.attempt
    this.#parentLog = options.log
    this.state = options.state
    this.#host = options.host
    this.#stateBytes = options.stateBytes ?? encodeValue(options.state)
    const history = options.history
    this.#journal = new Map((history?.journal ?? []).map(entry => [entry.idx, entry]))
    this.#eventTypes = history?.eventTypes ?? []
    const consumed = new Set<number>()
    for (const entry of this.#journal.values()) if (entry.inbox_seq !== null) consumed.add(entry.inbox_seq)
    this.#unconsumed = (history?.inbox ?? []).filter(event => !consumed.has(event.seq))
  }

  get log(): Logger {
    return (this.#log ??= this.#parentLog.child({ run: this.runId }))
  }

  get signal(): AbortSignal {
    if (this.#abort === undefined) {
      this.#abort = new AbortController()
      if (this.#closed !== undefined) this.#abort.abort(this.#closed)
    }
    return this.#abort.signal
  }

  get system(): SystemHandle {
    return this.#host.system
  }

  /** Events emitted so far (replayed or new): the next event's sequence. */
  get nextSeq(): number {
    return this.#nextSeq
  }

  /** Durable calls made so far: the journal's size once the run is over. */
  get journalCount(): number {
    return Math.max(this.#nextIdx, this.#journal.size === 0 ? 0 : Math.max(...this.#journal.keys()) + 1)
  }

  get closed(): boolean {
    return this.#closed !== undefined
  }

  /**
   * Waiting in a durable call (waitFor, sleep): everything before it is journaled, so stopping
   * here loses nothing and a drain need not wait for it.
   */
  get parked(): boolean {
    return this.#waiters.size > 0 || this.#timers.size > 0
  }

  async step<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
    this.#check()
    const idx = this.#nextIdx++
    const recorded = this.#recorded(idx, 'step', name)
    if (recorded !== undefined) {
      if (recorded.state !== null) {
        this.state = decodeValue(recorded.state) as SessionState
        this.#stateBytes = recorded.state
      }
      return (recorded.value === null ? undefined : decodeValue(recorded.value)) as T
    }
    const value = await fn()
    this.#check()
    const encoded = value === undefined ? null : encodeValue(value)
    const stateBytes = encodeValue(this.state)
    const changed = stateBytes !== this.#stateBytes
    this.#stateBytes = stateBytes
    await this.#host.writeJournal(this.#entry(idx, 'step', name, { value: encoded, state: changed ? stateBytes : null, done: true }))
    this.#check()
    return value
  }

  async emit(type: string, value: Record<string, unknown> = {}): Promise<void> {
    this.#check()
    if (typeof type !== 'string' || type.length === 0) throw new ActorError('invalid_request', 'emit: the event type must be a non-empty string')
    if (RESERVED_EVENTS.has(type)) throw new ActorError('invalid_request', `emit: '${type}' is reserved: the runtime ends every stream with it; return from the run instead`)
    const seq = this.#nextSeq++
    const recorded = this.#eventTypes[seq]
    if (recorded !== undefined) {
      if (recorded !== type) throw this.#nondeterministic(`event ${seq} was '${recorded}' and is now '${type}'`)
      return
    }
    pack(value) // an unencodable value fails here, in the run, not in the store
    await this.#host.appendEvent({ seq, type, value, at: Date.now() })
  }

  async waitFor<T extends Record<string, unknown> = Record<string, unknown>>(type: string, options: WaitOptions = {}): Promise<T> {
    this.#check()
    const idx = this.#nextIdx++
    const recorded = this.#recorded(idx, 'wait', type)
    if (recorded?.done === true) {
      if (recorded.timed_out) throw new ActorError('timeout', `no '${type}' event arrived in time`)
      return decodeValue(recorded.value!) as T
    }
    let deadline = recorded?.deadline ?? null
    if (recorded === undefined) {
      deadline = options.timeoutMs === undefined ? null : Date.now() + options.timeoutMs
      await this.#host.writeJournal(this.#entry(idx, 'wait', type, { deadline }))
      this.#check()
    }
    const ready = this.#unconsumed.findIndex(event => event.type === type)
    if (ready !== -1) {
      const [event] = this.#unconsumed.splice(ready, 1)
      await this.#received(idx, type, deadline, event!)
      return event!.value as T
    }
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const waiter: Waiter = { idx, type, deadline, resolve, reject, timer: undefined }
      this.#waiters.add(waiter)
      if (deadline !== null) {
        waiter.timer = setTimeout(() => {
          this.#waiters.delete(waiter)
          this.#host
            .writeJournal(this.#entry(idx, 'wait', type, { deadline, done: true, timed_out: true }))
            .then(() => reject(new ActorError('timeout', `no '${type}' event arrived within the wait's timeout`)), reject)
        }, Math.max(0, deadline - Date.now()))
      }
    }) as Promise<T>
  }

  async sleep(ms: number): Promise<void> {
    this.#check()
    const idx = this.#nextIdx++
    const recorded = this.#recorded(idx, 'sleep', 'sleep')
    const until = recorded?.deadline ?? Date.now() + Math.max(0, ms)
    if (recorded === undefined) await this.#host.writeJournal(this.#entry(idx, 'sleep', 'sleep', { deadline: until }))
    const left = until - Date.now()
    if (left <= 0) return
    await new Promise<void>((resolve, reject) => {
      const entry = { timer: setTimeout(() => {
        this.#timers.delete(entry)
        resolve()
      }, left), reject }
      this.#timers.add(entry)
    })
    this.#check()
  }

  chat(body: { model: string; messages: Array<{ role: string } & Record<string, unknown>> } & Record<string, unknown>): Promise<ChatCompletion> {
    return this.#models().ask<ChatCompletion>({ type: 'chat', request: { ...body, stream: false } }, { timeoutMs: Infinity, signal: this.signal })
  }

  embed(body: { model: string; input: unknown } & Record<string, unknown>): Promise<EmbeddingsResponse> {
    return this.#models().ask<EmbeddingsResponse>({ type: 'embeddings', request: body }, { timeoutMs: Infinity, signal: this.signal })
  }

  /**
   * An event sent into the run (already durable in its inbox): a wait for its type takes it,
   * or it waits for one. Waits are served in the order they began.
   */
  deliver(event: InboxEvent): void {
    if (this.closed) return
    for (const waiter of this.#waiters) {
      if (waiter.type !== event.type) continue
      this.#waiters.delete(waiter)
      clearTimeout(waiter.timer)
      this.#received(waiter.idx, waiter.type, waiter.deadline, event).then(() => waiter.resolve(event.value), waiter.reject)
      return
    }
    this.#unconsumed.push(event)
  }

  /** Ends the execution: aborts its signal, fails its waits and timers, and refuses further durable calls. */
  close(reason: ActorError): void {
    if (this.#closed !== undefined) return
    this.#closed = reason
    this.#abort?.abort(reason)
    for (const waiter of this.#waiters) {
      clearTimeout(waiter.timer)
      waiter.reject(reason)
    }
    this.#waiters.clear()
    for (const { timer, reject } of this.#timers) {
      clearTimeout(timer)
      reject(reason)
    }
    this.#timers.clear()
  }

  async #received(idx: number, type: string, deadline: number | null, event: InboxEvent): Promise<void> {
    await this.#host.writeJournal(this.#entry(idx, 'wait', type, { deadline, done: true, value: encodeValue(event.value), inbox_seq: event.seq }))
    this.#check()
  }

  #recorded(idx: number, kind: JournalEntry['kind'], name: string): JournalEntry | undefined {
    const entry = this.#journal.get(idx)
    if (entry !== undefined && (entry.kind !== kind || entry.name !== name)) {
      throw this.#nondeterministic(`durable call ${idx} was ${entry.kind} '${entry.name}' and is now ${kind} '${name}'`)
    }
    return entry
  }

  #entry(idx: number, kind: JournalEntry['kind'], name: string, fields: Partial<JournalEntry>): JournalEntry {
    return { run_id: this.runId, idx, kind, name, value: null, state: null, done: false, timed_out: false, deadline: null, inbox_seq: null, at: Date.now(), ...fields }
  }

  #nondeterministic(detail: string): ActorError {
    return new ActorError('nondeterministic', `run ${this.runId} resumed differently than it first ran: ${detail}. Code outside ctx.step must make the same durable calls in the same order on every run.`)
  }

  #check(): void {
    if (this.#closed !== undefined) throw this.#closed
  }

  #models(): ActorRef<ModelsMessage> {
    if (this.#host.models === undefined) throw new ActorError('not_configured', 'ctx.chat and ctx.embed need the models routing table (a stack with inference providers)')
    return this.#host.models
  }
}
