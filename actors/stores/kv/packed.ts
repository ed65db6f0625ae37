/** A byte buffer that grows as it is written. */
class GrowingBytes {
  protected buffer: Buffer
  protected at = 0

  constructor(size: number) {
    this.buffer = Buffer.allocUnsafe(Math.max(16, size))
  }

  /** Appends `bytes[start, end)`. Buffer's copy takes any Uint8Array and makes no view of it. */
  protected append(bytes: Uint8Array, start: number, end: number): void {
    this.reserve(end - start)
    Buffer.prototype.copy.call(bytes, this.buffer, this.at, start, end)
    this.at += end - start
  }

  protected reserve(n: number): void {
    if (this.at + n <= this.buffer.byteLength) return
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.byteLength * 2, this.at + n))
    this.buffer.copy(grown, 0, 0, this.at)
    this.buffer = grown
  }

  bytes(): Uint8Array {
    return this.buffer.subarray(0, this.at)
  }

  /** Bytes written so far. */
  get size(): number {
    return this.at
  }
}

/**
 * Values packed one after another, with where each ends: what KvClient sends in a
 * setManyPacked, so the store writes each value's bytes without decoding or encoding it.
 */
export class PackedValues extends GrowingBytes {
  readonly ends: number[] = []

  constructor(count: number) {
    super(64 * count)
  }

  /** Appends one value's msgpack bytes. */
  add(bytes: Uint8Array): void {
    this.append(bytes, 0, bytes.byteLength)
    this.ends.push(this.at)
  }
}

/**
 * Builds one msgpack array out of values that are already msgpack: an array header, then each
 * value's bytes as stored, nil for a missing one. A packed getMany replies with it, so a batch
 * of values crosses threads as one buffer and the caller decodes it with one unpack call,
 * instead of one buffer and one unpack per value.
 */
export class PackedArray extends GrowingBytes {
  constructor(count: number) {
    super(64 * count + 5)
    if (count < 16) this.buffer[this.at++] = 0x90 | count
    else if (count < 0x1_0000) {
      this.buffer[this.at++] = 0xdc
      this.buffer.writeUInt16BE(count, this.at)
      this.at += 2
    } else {
      this.buffer[this.at++] = 0xdd
      this.buffer.writeUInt32BE(count, this.at)
      this.at += 4
    }
  }

  nil(): void {
    this.reserve(1)
    this.buffer[this.at++] = 0xc0
  }

  /** Appends `bytes[start, end)`, one complete msgpack value. */
  value(bytes: Uint8Array, start = 0, end = bytes.byteLength): void {
    this.append(bytes, start, end)
  }
}
