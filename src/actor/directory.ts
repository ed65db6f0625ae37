import { ActorError } from './errors.js'

/**
 * Where every actor lives, shared by all threads through one SharedArrayBuffer, so a sender on
 * any thread learns "running on thread 3", "restarting" or "gone" with one atomic read and no
 * round trip. The main thread allocates slots; the thread hosting an actor publishes its
 * location when it creates the actor; the main thread marks actors restarting or stopped.
 *
 * A ref is (slot, generation). The generation changes only when a slot is reused for a new
 * actor, never on restart, which is what keeps a ref valid across its actor's restarts.
 *
 * Every change of a location is notified on its word, so a thread holding messages for an
 * actor that is restarting learns it is back without polling for it (see restart-wait.ts).
 */
export const LOCATION_FREE = -1
/** The most actors a system's directory may be made to hold (the maxActors option's bound). */
export const MAX_ACTORS = 1 << 22

export const LOCATION_RESTARTING = -2
export const LOCATION_STOPPED = -3

/** Slot 0 is never an actor: it addresses the kernel service of a thread. */
export const KERNEL_SLOT = 0

const WORDS_PER_SLOT = 2 // [generation, location]

export class ActorDirectory {
  readonly buffer: SharedArrayBuffer
  /** Tracks the buffer's length: a grow on the main thread is seen here on every thread. */
  private readonly words: Int32Array

  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer
    this.words = new Int32Array(buffer)
  }

  /**
   * A directory of `capacity` slots that grows, doubling, up to `maxCapacity` (a growable
   * SharedArrayBuffer: the most it may take is reserved, not committed).
   */
  static create(capacity: number, maxCapacity: number = capacity): ActorDirectory {
    const directory = new ActorDirectory(new SharedArrayBuffer(capacity * WORDS_PER_SLOT * 4, { maxByteLength: maxCapacity * WORDS_PER_SLOT * 4 }))
    directory.markFree(0, capacity)
    return directory
  }

  /** Slots it holds now. */
  get capacity(): number {
    return this.words.length / WORDS_PER_SLOT
  }

  /** Slots it may grow to. */
  get maxCapacity(): number {
    return this.buffer.maxByteLength / (WORDS_PER_SLOT * 4)
  }

  /** Main thread only: doubles the slots (up to maxCapacity); false when it cannot grow. */
  grow(): boolean {
    const from = this.capacity
    const to = Math.min(this.maxCapacity, from * 2)
    if (to <= from) return false
    this.buffer.grow(to * WORDS_PER_SLOT * 4)
    this.markFree(from, to)
    return true
  }

  private markFree(from: number, to: number): void {
    for (let slot = from; slot < to; slot++) Atomics.store(this.words, slot * WORDS_PER_SLOT + 1, LOCATION_FREE)
  }

  /** The thread id hosting (slot, generation), or a negative LOCATION_* state. */
  locate(slot: number, generation: number): number {
    const base = slot * WORDS_PER_SLOT
    if (slot <= 0 || slot >= this.capacity || Atomics.load(this.words, base) !== generation) return LOCATION_FREE
    return Atomics.load(this.words, base + 1)
  }

  generation(slot: number): number {
    return Atomics.load(this.words, slot * WORDS_PER_SLOT)
  }

  /** Publishes a location for (slot, generation); ignored if the slot has moved on. */
  publish(slot: number, generation: number, location: number): void {
    const base = slot * WORDS_PER_SLOT
    if (Atomics.load(this.words, base) !== generation) return
    Atomics.store(this.words, base + 1, location)
    Atomics.notify(this.words, base + 1)
  }

  /**
   * Resolves once the location word of `slot` no longer reads `seen` (a publish notifies it),
   * or after `timeoutMs`; undefined when it already reads something else. A pending wait does
   * not keep the process alive.
   */
  whenMoved(slot: number, seen: number, timeoutMs: number): Promise<unknown> | undefined {
    const waiting = Atomics.waitAsync(this.words, slot * WORDS_PER_SLOT + 1, seen, timeoutMs)
    return waiting.async ? waiting.value : undefined
  }

  /** Main thread only: starts a new generation on a free slot. */
  claim(slot: number): number {
    const base = slot * WORDS_PER_SLOT
    const generation = (Atomics.load(this.words, base) + 1) | 0
    Atomics.store(this.words, base + 1, LOCATION_RESTARTING)
    Atomics.store(this.words, base, generation)
    Atomics.notify(this.words, base + 1)
    return generation
  }
}

/**
 * Main-thread bookkeeping of free slots, each operation in constant time (amortized, for the
 * directory's growth). Fresh slots are used first, then the slot freed longest ago (a queue), so
 * a slot rests as long as possible before a new generation takes it; the directory grows only
 * when no freed slot is left.
 */
export class SlotAllocator {
  private next = KERNEL_SLOT + 1
  /** Freed slots, oldest first from `head`; the taken front is dropped once it is half the array. */
  private free: number[] = []
  private head = 0

  constructor(private readonly directory: ActorDirectory) {}

  allocate(): { slot: number; generation: number } {
    let slot: number
    if (this.next < this.directory.capacity || (this.head === this.free.length && this.directory.grow())) slot = this.next++
    else if (this.head < this.free.length) slot = this.takeFree()
    else {
      const most = this.directory.capacity - 1
      throw new ActorError('capacity', `the actor directory is full: ${most} actors are live, the most maxActors allows; start the system with a larger maxActors (up to ${MAX_ACTORS - 1})`, {
        limit: most,
        option: 'maxActors',
      })
    }
    return { slot, generation: this.directory.claim(slot) }
  }

  release(slot: number): void {
    this.directory.publish(slot, this.directory.generation(slot), LOCATION_STOPPED)
    this.free.push(slot)
  }

  private takeFree(): number {
    const slot = this.free[this.head++]!
    if (this.head === this.free.length) {
      this.free = []
      this.head = 0
    } else if (this.head >= 1024 && this.head * 2 >= this.free.length) {
      this.free = this.free.slice(this.head)
      this.head = 0
    }
    return slot
  }
}
