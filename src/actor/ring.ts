/**
 * A single-producer single-consumer byte ring in a SharedArrayBuffer: one direction of a link.
 *
 * Why: a MessagePort round trip with one message in flight costs 60–110 µs here, nearly all of
 * it waking the other vCPU from halt. A receiver that spins on shared memory for a few tens of
 * microseconds after it last heard something catches the next message in about a microsecond.
 * When the spin finds nothing the receiver parks with Atomics.waitAsync, which keeps its event
 * loop free, and the sender wakes it with Atomics.notify.
 *
 * Records are [u32 length][bytes], 4-byte aligned. A record that would straddle the end of the
 * buffer is preceded by a WRAP marker and written at offset 0. Positions are free-running u32
 * counters; their difference is the number of bytes in use.
 */
const WRITE = 0
const READ = 1
/** 1 while the receiver is parked (or about to be), so the sender knows to notify. */
const PARKED = 2
/** The word the receiver waits on; the sender bumps it to wake the receiver. */
const WAKE = 3
/** 1 when the sender woke a parked receiver ahead of a record it is about to write (prewake). */
const PREWOKEN = 4
const HEADER_BYTES = 64 // its own cache line, away from the data

const WRAP = 0xffff_ffff
/** A record of this length says: the next batch comes over the MessagePort instead. */
export const VIA_PORT = 0xffff_fffe

const align4 = (n: number): number => (n + 3) & ~3

export class SharedRing {
  readonly buffer: SharedArrayBuffer
  readonly capacity: number
  private readonly header: Int32Array
  private readonly data: Uint8Array
  private readonly view: DataView

  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer
    this.capacity = buffer.byteLength - HEADER_BYTES
    if (this.capacity <= 0 || (this.capacity & (this.capacity - 1)) !== 0) {
      throw new RangeError(`ring capacity must be a power of two, got ${this.capacity}`)
    }
    this.header = new Int32Array(buffer, 0, HEADER_BYTES / 4)
    this.data = new Uint8Array(buffer, HEADER_BYTES)
    this.view = new DataView(buffer, HEADER_BYTES)
  }

  static create(capacity: number): SharedRing {
    return new SharedRing(new SharedArrayBuffer(HEADER_BYTES + capacity))
  }

  /** The largest record that may ever be written; bigger batches go over the port. */
  get maxRecord(): number {
    return this.capacity >> 2
  }

  isEmpty(): boolean {
    return Atomics.load(this.header, WRITE) === Atomics.load(this.header, READ)
  }

  /** Appends one record; false when it does not fit now (the consumer is behind). */
  tryWrite(bytes: Uint8Array): boolean {
    return this.tryAppend(bytes.byteLength, bytes)
  }

  /** Appends a bare length word with no body: VIA_PORT. */
  tryWriteMarker(marker: number): boolean {
    return this.tryAppend(marker, undefined)
  }

  private tryAppend(length: number, body: Uint8Array | undefined): boolean {
    const need = 4 + align4(body === undefined ? 0 : length)
    let write = Atomics.load(this.header, WRITE) >>> 0
    const used = (write - (Atomics.load(this.header, READ) >>> 0)) >>> 0
    let free = this.capacity - used
    let offset = write & (this.capacity - 1)
    const contiguous = this.capacity - offset
    if (contiguous < need) {
      if (free < contiguous + need) return false
      this.view.setUint32(offset, WRAP, true)
      write = (write + contiguous) >>> 0
      free -= contiguous
      offset = 0
    } else if (free < need) return false
    this.view.setUint32(offset, length, true)
    if (body !== undefined) this.data.set(body, offset + 4)
    Atomics.store(this.header, WRITE, (write + need) | 0)
    if (Atomics.load(this.header, PARKED) === 1) {
      Atomics.add(this.header, WAKE, 1)
      Atomics.notify(this.header, WAKE)
    }
    return true
  }

  /**
   * Takes the next record: a copy of its bytes (unpacking straight from shared memory is an
   * order of magnitude slower), the VIA_PORT marker, or undefined when the ring is empty.
   */
  read(): Uint8Array | typeof VIA_PORT | undefined {
    let read = Atomics.load(this.header, READ) >>> 0
    if (read === Atomics.load(this.header, WRITE) >>> 0) return undefined
    let offset = read & (this.capacity - 1)
    let length = this.view.getUint32(offset, true)
    if (length === WRAP) {
      read = (read + this.capacity - offset) >>> 0
      offset = 0
      length = this.view.getUint32(0, true)
    }
    if (length === VIA_PORT) {
      Atomics.store(this.header, READ, (read + 4) | 0)
      return VIA_PORT
    }
    const bytes = this.data.slice(offset + 4, offset + 4 + length)
    Atomics.store(this.header, READ, (read + 4 + align4(length)) | 0)
    return bytes
  }

  /**
   * Resolves when a sender writes after this call (or at once if it already has). Returns
   * undefined when data is already waiting: the caller should read instead of parking.
   */
  park(): Promise<unknown> | undefined {
    const wake = Atomics.load(this.header, WAKE)
    Atomics.store(this.header, PARKED, 1)
    // Checked after raising PARKED: a write that lands before this check is seen here, and
    // one that lands after it sees PARKED and bumps WAKE, so waitAsync cannot miss it.
    if (!this.isEmpty()) {
      Atomics.store(this.header, PARKED, 0)
      return undefined
    }
    const waiting = Atomics.waitAsync(this.header, WAKE, wake)
    return waiting.async ? waiting.value : Promise.resolve(waiting.value)
  }

  unpark(): void {
    Atomics.store(this.header, PARKED, 0)
  }

  /**
   * The sender's hint that a record follows shortly: a parked receiver is woken now, so the
   * record does not also pay its wake-up. True when it woke one; a receiver that is not parked
   * is left alone, which keeps the hint to one atomic read under load.
   */
  prewake(): boolean {
    if (Atomics.load(this.header, PARKED) !== 1) return false
    Atomics.store(this.header, PREWOKEN, 1)
    Atomics.add(this.header, WAKE, 1)
    Atomics.notify(this.header, WAKE)
    return true
  }

  /** On the receiver, after a park resolved: whether a prewake rather than a record woke it. Clears the flag. */
  takePrewake(): boolean {
    return Atomics.exchange(this.header, PREWOKEN, 0) === 1
  }

  /** Spins until a record lands or `ms` pass; whether one landed. Blocks the calling thread. */
  spinUntilNotEmpty(ms: number): boolean {
    const until = performance.now() + ms
    for (let i = 1; ; i++) {
      if (!this.isEmpty()) return true
      if ((i & 63) === 0 && performance.now() > until) return false
    }
  }

  /** Wakes a parked receiver whatever the ring holds: used to let it see that the link closed. */
  wake(): void {
    Atomics.add(this.header, WAKE, 1)
    Atomics.notify(this.header, WAKE)
  }
}
