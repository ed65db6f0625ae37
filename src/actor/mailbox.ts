/**
 * A bounded FIFO of deliveries for one actor, kept as parallel arrays in a ring so that queueing
 * a message allocates nothing. A delivery into an empty mailbox is held in fields of its own,
 * so an actor that takes one message at a time (most do) never makes the arrays; they are made
 * for the second message queued behind another, start small and double up to `capacity`. Past
 * that, push() refuses and the caller turns the refusal into a `backpressure` error or a dead
 * letter.
 *
 * Kernel traffic never queues here: stop and cancel act the moment they arrive, which is how
 * they jump ahead of every user message, and can never be refused by a full mailbox.
 */

const INITIAL_RING = 4
/** Every mailbox's arrays until its first message: never written (push grows first). */
const NONE: never[] = []
/** Marks a delivery cancelled in place; take() skips it. */
const TOMBSTONE = 0

export class Mailbox {
  readonly capacity: number
  /** Fields of the delivery last returned by take(). */
  kind = 0
  payload: unknown = undefined
  from = 0
  correlation = 0
  deadline = 0

  private kinds: number[]
  private payloads: unknown[]
  private froms: number[]
  private correlations: number[]
  private deadlines: number[]
  private head = 0
  /** Deliveries held, the first one's included. */
  private count = 0
  /** The oldest delivery, when it came into an empty mailbox; the arrays hold those after it. */
  private hasFirst = false
  private firstKind = 0
  private firstPayload: unknown = undefined
  private firstFrom = 0
  private firstCorrelation = 0
  private firstDeadline = 0

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`mailbox capacity must be a positive integer, got ${capacity}`)
    }
    this.capacity = capacity
    this.kinds = this.payloads = this.froms = this.correlations = this.deadlines = NONE
  }

  /** User deliveries waiting, cancelled ones included until they are skipped. */
  get depth(): number {
    return this.count
  }

  push(kind: number, payload: unknown, from: number, correlation: number, deadline: number): boolean {
    if (this.count === 0) {
      this.hasFirst = true
      this.firstKind = kind
      this.firstPayload = payload
      this.firstFrom = from
      this.firstCorrelation = correlation
      this.firstDeadline = deadline
      this.count = 1
      return true
    }
    if (this.count >= this.capacity) return false
    const queued = this.queued
    if (queued === this.kinds.length) this.grow()
    const ring = this.kinds.length
    const at = (this.head + queued) % ring
    this.kinds[at] = kind
    this.payloads[at] = payload
    this.froms[at] = from
    this.correlations[at] = correlation
    this.deadlines[at] = deadline
    this.count++
    return true
  }

  /** Moves the oldest live delivery into this.kind/payload/...; false when empty. */
  take(): boolean {
    while (this.count > 0) {
      if (this.hasFirst) {
        this.hasFirst = false
        const kind = this.firstKind
        this.kind = kind
        this.payload = this.firstPayload
        this.from = this.firstFrom
        this.correlation = this.firstCorrelation
        this.deadline = this.firstDeadline
        this.firstPayload = undefined
        this.count--
        if (kind !== TOMBSTONE) return true
        continue
      }
      const at = this.head
      const kind = this.kinds[at]!
      this.kind = kind
      this.payload = this.payloads[at]
      this.from = this.froms[at]!
      this.correlation = this.correlations[at]!
      this.deadline = this.deadlines[at]!
      this.payloads[at] = undefined // let the message be collected
      this.head = (at + 1) % this.kinds.length
      this.count--
      if (kind !== TOMBSTONE) return true
    }
    return false
  }

  /** Cancels a queued delivery in place; true if it was still queued. */
  cancel(from: number, correlation: number): boolean {
    if (this.hasFirst && this.firstCorrelation === correlation && this.firstFrom === from && this.firstKind !== TOMBSTONE) {
      this.firstKind = TOMBSTONE
      this.firstPayload = undefined
      return true
    }
    const ring = this.kinds.length
    const queued = this.queued
    for (let i = 0; i < queued; i++) {
      const at = (this.head + i) % ring
      if (this.correlations[at] === correlation && this.froms[at] === from && this.kinds[at] !== TOMBSTONE) {
        this.kinds[at] = TOMBSTONE
        this.payloads[at] = undefined
        return true
      }
    }
    return false
  }

  /** Deliveries in the arrays. */
  private get queued(): number {
    return this.hasFirst ? this.count - 1 : this.count
  }

  private grow(): void {
    const ring = this.kinds.length
    const size = Math.min(ring === 0 ? INITIAL_RING : ring * 2, this.capacity)
    const queued = this.queued
    const reorder = <T>(from: T[]): T[] => {
      const to = new Array<T>(size)
      for (let i = 0; i < queued; i++) to[i] = from[(this.head + i) % ring]!
      return to
    }
    this.kinds = reorder(this.kinds)
    this.payloads = reorder(this.payloads)
    this.froms = reorder(this.froms)
    this.correlations = reorder(this.correlations)
    this.deadlines = reorder(this.deadlines)
    this.head = 0
  }
}
