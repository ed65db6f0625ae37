/** One stored value: its msgpack bytes and when it expires (0: never). */
export interface Stored {
  readonly bytes: Uint8Array
  /** Where the msgpack starts in `bytes` (0 when absent): slicing a buffer costs more than the read. */
  readonly offset?: number
  readonly expiresAt: number
}

/**
 * What a key-value backend implements. The store actor above it owns encoding, expiry, limits
 * and errors, so every backend keeps the same contract. A read may answer synchronously (LMDB
 * does), which lets the actor reply without a promise.
 */
export interface KvBackend {
  get(namespace: string, key: string): Stored | undefined | Promise<Stored | undefined>
  getMany(namespace: string, keys: readonly string[]): Array<Stored | undefined> | Promise<Array<Stored | undefined>>
  /**
   * The live values as one msgpack array (nil for a missing or expired key), built without a
   * buffer per value. Optional: the actor builds it from getMany for backends without it.
   */
  getManyPacked?(namespace: string, keys: readonly string[]): Uint8Array
  set(namespace: string, key: string, bytes: Uint8Array, expiresAt: number): Promise<void>
  /** True if the key existed. */
  delete(namespace: string, key: string): Promise<boolean>
  /** Up to `limit` live entries whose key starts with `prefix` and sorts after `after`, in UTF-8 byte order. */
  scan(namespace: string, prefix: string, after: string | undefined, limit: number): Promise<Array<{ key: string; stored: Stored }>>
  /** Waits until every acknowledged write is durable, then releases the backend. */
  close(): Promise<void>
}
