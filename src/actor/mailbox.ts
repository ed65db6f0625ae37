/**
 * A bounded FIFO of deliveries for one actor, kept as parallel arrays in a ring so that queueing
 * a message allocates nothing. It starts small and doubles up to `capacity`; past that, push()
 * refuses and the caller turns the refusal into a `backpressure` error or a dead letter.
 *
 * Kernel traffic never queues here: stop and cancel act the moment they arrive, which is how
 * they jump ahead of every user message, and can never be refused by a full mailbox.
 */

const INITIAL_RING = 16
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
  private count = 0

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`mailbox capacity must be a positive integer, got ${capacity}`)
    }
    this.capacity = capacity
    const ring = Math.min(INITIAL_RING, capacity)
    this.kinds = new Array<number>(ring)
    this.payloads = new Array<unknown>(ring)
    this.froms = new Array<number>(ring)
    this.correlations = new Array<number>(ring)
    this.deadlines = new Array<number>(ring)
  }

  /** User deliveries waiting, cancelled ones included until they are skipped. */
  get depth(): number {
    return this.count
  }

  push(kind: number, payload: unknown, from: number, correlation: number, deadline: number): boolean {
    if (this.count === this.kinds.length) {
      if (this.count >= this.capacity) return false
      this.grow()
    }
    const ring = this.kinds.length
    const at = (this.head + this.count) % ring
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
    const ring = this.kinds.length
    for (let i = 0; i < this.count; i++) {
      const at = (this.head + i) % ring
      if (this.correlations[at] === correlation && this.froms[at] === from && this.kinds[at] !== TOMBSTONE) {
        this.kinds[at] = TOMBSTONE
        this.payloads[at] = undefined
        return true
      }
    }
    return false
  }

  private grow(): void {
    const ring = this.kinds.length
    const size = Math.min(ring * 2, this.capacity)
    const reorder = <T>(from: T[]): T[] => {
      const to = new Array<T>(size)
      for (let i = 0; i < this.count; i++) to[i] = from[(this.head + i) % ring]!
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
