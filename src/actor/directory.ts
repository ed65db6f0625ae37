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
export const LOCATION_RESTARTING = -2
export const LOCATION_STOPPED = -3

/** Slot 0 is never an actor: it addresses the kernel service of a thread. */
export const KERNEL_SLOT = 0

const WORDS_PER_SLOT = 2 // [generation, location]

export class ActorDirectory {
  readonly buffer: SharedArrayBuffer
  readonly capacity: number
  private readonly words: Int32Array

  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer
    this.words = new Int32Array(buffer)
    this.capacity = this.words.length / WORDS_PER_SLOT
  }

  static create(capacity: number): ActorDirectory {
    const directory = new ActorDirectory(new SharedArrayBuffer(capacity * WORDS_PER_SLOT * 4))
    for (let slot = 0; slot < capacity; slot++) {
      Atomics.store(directory.words, slot * WORDS_PER_SLOT + 1, LOCATION_FREE)
    }
    return directory
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
 * Main-thread bookkeeping of free slots. Fresh slots are used first, then the slot freed
 * longest ago, so a slot rests as long as possible before a new generation takes it.
 */
export class SlotAllocator {
  private next = KERNEL_SLOT + 1
  private readonly free: number[] = []

  constructor(private readonly directory: ActorDirectory) {}

  allocate(): { slot: number; generation: number } {
    const slot = this.next < this.directory.capacity ? this.next++ : this.free.shift()
    if (slot === undefined) {
      throw new RangeError(`actor directory is full (${this.directory.capacity - 1} actors); raise maxActors`)
    }
    return { slot, generation: this.directory.claim(slot) }
  }

  release(slot: number): void {
    this.directory.publish(slot, this.directory.generation(slot), LOCATION_STOPPED)
    this.free.push(slot)
  }
}
