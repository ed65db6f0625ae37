import { ActorError, type ActorRef } from '../../src/index.js'
import type { TableMessage, WriteOp } from './protocol.js'

/**
 * The write path for records appended far more than read (stored completions, conversation
 * items, workflow events and step journals): one batched writer per producer and table store.
 *
 * - Bounded: at most `maxQueue` writes are queued or in flight. Past that a write waits for
 *   room up to its `waitMs`, in arrival order, then is refused with `backpressure`; it is never
 *   dropped once queued.
 * - Grouped: queued writes travel as one transaction per batch (one commit, one fsync), up to
 *   `maxBatch` each, with at most `writers` batches in flight. A write waits at most `lingerMs`
 *   for others to share its commit; a durable write, a flush or a full batch sends at once, and
 *   writes that arrive while the writers are busy go together in the next batch (group commit).
 * - Encoded once: a `put` (putOp in table/rows.ts) carries the row's bytes, made on the
 *   producer's thread; the store writes them as they are.
 * - Failures: a batch the store refuses outright (one bad row fails its whole transaction) is
 *   retried write by write, so only the bad write fails; a store that is down or restarting is
 *   retried with backoff until it answers (`maxAttempts` bounds that), so a queued write lands.
 *
 * A write resolves `queued` when it enters the queue (at once unless the queue is full) and
 * `done` with its count of rows once committed (and, `durable`, fsynced). What was queued and
 * not yet committed when the process is killed (`kill -9`) is lost; `close` writes it all.
 */

export interface BatchWriterOptions {
  readonly maxQueue: number
  readonly writers: number
  /** How long a write not marked durable may wait for others to share its commit. */
  readonly lingerMs?: number
  readonly maxBatch?: number
  /** Attempts at a write the store fails transiently; Infinity (the default) keeps trying. */
  readonly maxAttempts?: number
  readonly log?: { error(fields: Record<string, unknown>, message: string): void }
}

export interface WriteOptions {
  /** Resolve `done` only once the commit is on disk, and send at once instead of lingering. */
  readonly durable?: boolean
  /** How long to wait for room when the queue is full before `backpressure`; 0 (the default) refuses at once. */
  readonly waitMs?: number
}

export interface Write {
  /** Resolves when the write is in the queue; rejects with `backpressure` when no room came in time. */
  readonly queued: Promise<void>
  /** Resolves with the write's count of rows once committed; rejects when it cannot be written. */
  readonly done: Promise<number>
}

export interface BatchWriterStats {
  readonly queued: number
  readonly waiting: number
  readonly inFlight: number
  readonly written: number
  readonly batches: number
  readonly failures: number
  /** Batches committed, and the time their commits took in all, from the ask to the store's answer. */
  readonly commits: number
  readonly commitMsTotal: number
  readonly maxQueue: number
  readonly writers: number
}

/** How a write's promises are settled; submit's outcome has no promise but the queued one. */
interface Settle {
  queued: () => void
  refuse: (error: unknown) => void
  resolve: (count: number) => void
  reject: (error: unknown) => void
}

const NOTHING = (): void => undefined
const QUEUED = Promise.resolve()

interface Pending {
  readonly seq: number
  /** Written together, in one transaction, or not at all. */
  readonly ops: readonly WriteOp[]
  readonly durable: boolean
  readonly settle: Settle
  timer?: NodeJS.Timeout
}

/** Codes a store refuses a write with for good: retrying the same write cannot succeed. */
const REFUSED = new Set(['conflict', 'bad_row', 'value_too_large', 'unencodable_value', 'unknown_table', 'bad_message', 'invalid_key'])
/** Codes that say the store is down for now: the write waits for it. */
const TRANSIENT = new Set(['restarting', 'crashed', 'backend_unavailable', 'timeout', 'backpressure', 'no_such_actor'])

const DEFAULT_LINGER_MS = 25
const DEFAULT_MAX_BATCH = 512
/**
 * A batch's ask waits this long for the store. A timed-out batch is retried: an upsert lands
 * once whatever happened; an insert that did land is then refused as a conflict.
 */
const ASK_TIMEOUT_MS = 60_000

export class BatchWriter {
  readonly #store: ActorRef<TableMessage>
  readonly #lingerMs: number
  readonly #maxBatch: number
  readonly #maxAttempts: number
  readonly #log: BatchWriterOptions['log']
  #maxQueue: number
  #writers: number
  /** Admitted, not yet sent. */
  #queue: Pending[] = []
  /** Waiting for room, in arrival order. */
  readonly #waiting: Pending[] = []
  /** Sequence numbers of writes queued or in flight, not yet done. */
  readonly #unfinished = new Set<number>()
  #nextSeq = 0
  #durableQueued = 0
  #inFlight = 0
  #oldestQueuedAt = 0
  #lingerTimer: NodeJS.Timeout | undefined
  /** Flushes waiting for every write up to `upTo` to be done. */
  readonly #flushes: Array<{ upTo: number; done: () => void }> = []
  #closed = false
  #scheduled = false
  #written = 0
  #batches = 0
  #failures = 0
  #commits = 0
  #commitMsTotal = 0

  constructor(store: ActorRef<TableMessage>, options: BatchWriterOptions) {
    this.#store = store
    this.#maxQueue = options.maxQueue
    this.#writers = options.writers
    this.#lingerMs = options.lingerMs ?? DEFAULT_LINGER_MS
    this.#maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH
    this.#maxAttempts = options.maxAttempts ?? Infinity
    this.#log = options.log
  }

  /** Queues a write; a list of ops is one write, all in the same transaction. */
  write(op: WriteOp | readonly WriteOp[], options: WriteOptions = {}): Write {
    let settle!: Settle
    const queued = new Promise<void>((queued, refuse) => (settle = { queued, refuse, resolve: NOTHING, reject: NOTHING }))
    const done = new Promise<number>((resolve, reject) => ((settle.resolve = resolve), (settle.reject = reject)))
    // Either may be ignored: a caller that awaits only `done` still sees a refusal there.
    queued.catch(NOTHING)
    done.catch(NOTHING)
    this.#enqueue(op, options, settle)
    return { queued, done }
  }

  /**
   * Queues a write no one waits for: resolves once it is queued, at once unless the queue is
   * full (rejecting with `backpressure` when no room comes in time). Its outcome is only logged:
   * this is the cheap path for a record acknowledged once queued.
   */
  submit(op: WriteOp | readonly WriteOp[], options: Omit<WriteOptions, 'durable'> = {}): Promise<void> {
    const settle: Settle = { queued: NOTHING, refuse: NOTHING, resolve: NOTHING, reject: NOTHING }
    const outcome = this.#enqueue(op, options, settle)
    if (outcome === 'queued') return QUEUED
    if (outcome !== 'waiting') return Promise.reject(outcome)
    return new Promise((queued, refuse) => ((settle.queued = queued), (settle.refuse = refuse)))
  }

  /** Admits, refuses or parks a write: 'queued', 'waiting' for room, or the error it was refused with. */
  #enqueue(op: WriteOp | readonly WriteOp[], options: WriteOptions, settle: Settle): 'queued' | 'waiting' | ActorError {
    const pending: Pending = { seq: this.#nextSeq++, ops: Array.isArray(op) ? op : [op as WriteOp], durable: options.durable === true, settle }
    if (this.#closed) {
      const error = new ActorError('stopped', 'the writer is closed: no more writes')
      this.#refuse(pending, error)
      return error
    }
    if (this.#hasRoom() && this.#waiting.length === 0) {
      this.#admit(pending)
      this.#schedule()
      return 'queued'
    }
    if ((options.waitMs ?? 0) <= 0) {
      const error = full(this.#maxQueue)
      this.#refuse(pending, error)
      return error
    }
    pending.timer = setTimeout(() => {
      const at = this.#waiting.indexOf(pending)
      if (at >= 0) this.#waiting.splice(at, 1)
      this.#refuse(pending, full(this.#maxQueue))
      this.#settleFlushes()
    }, options.waitMs)
    this.#waiting.push(pending)
    this.#kick() // a full queue is written at once
    return 'waiting'
  }

  /** Resolves once every write made before it is done (committed or failed); cuts lingering short. */
  flush(): Promise<void> {
    if (this.#unfinished.size === 0 && this.#waiting.length === 0) return Promise.resolve()
    const flushed = new Promise<void>(done => this.#flushes.push({ upTo: this.#nextSeq - 1, done }))
    this.#kick()
    return flushed
  }

  /** Refuses new writes and writes everything already queued or waiting. */
  async close(): Promise<void> {
    this.#closed = true
    await this.flush()
    clearTimeout(this.#lingerTimer)
    this.#lingerTimer = undefined
  }

  /** New limits, live: a larger queue admits waiting writes at once; a smaller one keeps what it holds. */
  configure(limits: { maxQueue: number; writers: number }): void {
    this.#maxQueue = limits.maxQueue
    this.#writers = limits.writers
    this.#admitWaiting()
    this.#kick()
  }

  stats(): BatchWriterStats {
    return {
      queued: this.#queue.length,
      waiting: this.#waiting.length,
      inFlight: this.#inFlight,
      written: this.#written,
      batches: this.#batches,
      failures: this.#failures,
      commits: this.#commits,
      commitMsTotal: this.#commitMsTotal,
      maxQueue: this.#maxQueue,
      writers: this.#writers,
    }
  }

  /** Writes queued and writes sent but not yet done count alike against the bound. */
  #hasRoom(): boolean {
    return this.#unfinished.size < this.#maxQueue
  }

  #admit(pending: Pending): void {
    if (this.#queue.length === 0) this.#oldestQueuedAt = performance.now()
    this.#queue.push(pending)
    this.#unfinished.add(pending.seq)
    if (pending.durable) this.#durableQueued++
    pending.settle.queued()
  }

  #admitWaiting(): void {
    while (this.#waiting.length > 0 && this.#hasRoom()) {
      const next = this.#waiting.shift()!
      clearTimeout(next.timer)
      this.#admit(next)
    }
  }

  #refuse(pending: Pending, error: unknown): void {
    pending.settle.refuse(error)
    pending.settle.reject(error)
  }

  /** Whether a batch should go now rather than linger for more writes to share its commit. */
  #due(): boolean {
    const queued = this.#queue.length
    if (queued === 0) return false
    return (
      queued >= this.#maxBatch ||
      this.#durableQueued > 0 ||
      this.#flushes.length > 0 ||
      this.#waiting.length > 0 ||
      this.#closed ||
      performance.now() - this.#oldestQueuedAt >= this.#lingerMs
    )
  }

  /**
   * Kicks once the current turn of the event loop is over, promise continuations included, so
   * that the writes one turn makes go in one batch even when one is durable: a new run's row and
   * its first step's journal entry, a finished run's terminal event, row update and session.
   */
  #schedule(): void {
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      this.#kick()
    })
  }

  /** Sends batches while one is due and a writer is free, or arms the linger timer for the writes that wait. */
  #kick(): void {
    while (this.#inFlight < this.#writers && this.#due()) {
      const batch = this.#takeBatch()
      for (const pending of batch) if (pending.durable) this.#durableQueued--
      this.#oldestQueuedAt = performance.now()
      this.#admitWaiting()
      void this.#send(batch)
    }
    if (this.#queue.length === 0) {
      // Everything lingering went early: no timer is left to wake an idle (or closed) writer.
      clearTimeout(this.#lingerTimer)
      this.#lingerTimer = undefined
    } else if (this.#inFlight < this.#writers && this.#lingerTimer === undefined) {
      this.#lingerTimer = setTimeout(
        () => {
          this.#lingerTimer = undefined
          this.#kick()
        },
        Math.max(0, this.#lingerMs - (performance.now() - this.#oldestQueuedAt)),
      )
    }
  }

  /** The oldest queued writes, up to maxBatch ops (a write of several ops is never split; one larger goes alone). */
  #takeBatch(): Pending[] {
    let ops = 0
    let count = 0
    while (count < this.#queue.length && (count === 0 || ops + this.#queue[count]!.ops.length <= this.#maxBatch)) ops += this.#queue[count++]!.ops.length
    return this.#queue.splice(0, count)
  }

  async #send(batch: Pending[]): Promise<void> {
    this.#inFlight++
    try {
      await this.#commit(batch)
    } finally {
      this.#inFlight--
      this.#admitWaiting()
      this.#settleFlushes()
      this.#kick()
    }
  }

  /** Writes one batch as one transaction, retrying as the header says; settles every write in it. */
  async #commit(batch: Pending[]): Promise<void> {
    const durable = batch.some(pending => pending.durable)
    const { ops, opOf } = coalesce(batch.flatMap(pending => pending.ops))
    const message: TableMessage = { type: 'transaction', ops, ...(durable ? { durable } : {}) }
    for (let attempt = 1; ; attempt++) {
      try {
        this.#batches++
        const sentAt = performance.now()
        const counts = await this.#store.ask<number[]>(message, { timeoutMs: ASK_TIMEOUT_MS })
        this.#commits++
        this.#commitMsTotal += performance.now() - sentAt
        this.#written += batch.length
        let at = 0
        for (const pending of batch) {
          let count = 0
          // A put sent within a putMany wrote its row: the transaction committed whole.
          for (let i = 0; i < pending.ops.length; i++, at++) count += opOf[at]! < 0 ? 1 : (counts[opOf[at]!] ?? 0)
          this.#finish(pending, () => pending.settle.resolve(count))
        }
        return
      } catch (error) {
        this.#failures++
        const code = error instanceof ActorError ? error.code : 'internal'
        if (REFUSED.has(code) && batch.length > 1) {
          await Promise.all(batch.map(pending => this.#commit([pending])))
          return
        }
        if (!TRANSIENT.has(code) || attempt >= this.#maxAttempts) {
          this.#log?.error({ err: error, writes: batch.length, attempt }, 'a write to the store failed; it is not stored')
          for (const pending of batch) this.#finish(pending, () => pending.settle.reject(error))
          return
        }
        if (attempt % 10 === 1) this.#log?.error({ err: error, writes: batch.length, attempt }, 'writing to the store failed; retrying')
        await new Promise(resolve => setTimeout(resolve, Math.min(25 * 2 ** Math.min(attempt, 10), 2000)))
      }
    }
  }

  #finish(pending: Pending, settle: () => void): void {
    this.#unfinished.delete(pending.seq)
    settle()
  }

  #settleFlushes(): void {
    if (this.#flushes.length === 0) return
    let oldest = Infinity
    for (const seq of this.#unfinished) if (seq < oldest) oldest = seq
    if (this.#waiting.length > 0) oldest = Math.min(oldest, this.#waiting[0]!.seq)
    for (let i = this.#flushes.length - 1; i >= 0; i--) {
      const flush = this.#flushes[i]!
      if (oldest > flush.upTo) {
        this.#flushes.splice(i, 1)
        flush.done()
      }
    }
  }
}

function full(maxQueue: number): ActorError {
  return new ActorError('backpressure', `the write queue is full (${maxQueue} writes queued or in flight); retry later`)
}

/**
 * A batch's ops as sent: each run of two or more consecutive puts into one table, with one
 * mode and the same key columns, becomes one putMany (the rows' bytes copied back to back into
 * one buffer, their keys into one flat list), so that the message crossing to the store's
 * thread holds one buffer and two lists instead of an object and a buffer per row. `opOf[i]`
 * is the index in `ops` of the i-th op given, or -1 for a put sent within a putMany.
 */
function coalesce(given: readonly WriteOp[]): { ops: WriteOp[]; opOf: number[] } {
  const ops: WriteOp[] = []
  const opOf: number[] = []
  for (let i = 0; i < given.length; ) {
    const first = given[i]!
    let end = i + 1
    if (first.type === 'put') {
      const columns = Object.keys(first.key)
      while (end < given.length && sameRun(first, columns, given[end]!)) end++
    }
    if (end - i < 2) {
      opOf.push(ops.length)
      ops.push(first)
      i = end
      continue
    }
    const puts = given.slice(i, end) as Array<Extract<WriteOp, { type: 'put' }>>
    const columns = Object.keys((first as Extract<WriteOp, { type: 'put' }>).key)
    let size = 0
    for (const put of puts) size += put.bytes.byteLength
    const bytes = new Uint8Array(size)
    const ends: number[] = []
    const keys: unknown[] = []
    let at = 0
    for (const put of puts) {
      bytes.set(put.bytes, at)
      ends.push((at += put.bytes.byteLength))
      for (const column of columns) keys.push(put.key[column])
      opOf.push(-1)
    }
    ops.push({ type: 'putMany', table: first.table, mode: (first as Extract<WriteOp, { type: 'put' }>).mode, columns, keys, bytes, ends })
    i = end
  }
  return { ops, opOf }
}

function sameRun(first: Extract<WriteOp, { type: 'put' }>, columns: readonly string[], next: WriteOp): boolean {
  if (next.type !== 'put' || next.table !== first.table || next.mode !== first.mode) return false
  const keys = Object.keys(next.key)
  return keys.length === columns.length && keys.every((column, i) => column === columns[i])
}
