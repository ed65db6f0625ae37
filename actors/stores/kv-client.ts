import { unpack } from 'msgpackr'
import { ActorError, type ActorRef, type AskOptions } from '../../src/index.js'
import { checkKey, checkNamespace, MAX_PAGE, type KvMessage, type KvPage } from './protocol.js'

/** Values come packed, to be decoded once, here. */
const unpackOrNull = (bytes: Uint8Array | null): unknown => (bytes === null ? null : unpack(bytes))

/** At most this many calls travel in one message. */
const MAX_BATCH = 128

/** Refusals of a whole setMany that wrote nothing: each entry is retried alone to get its own answer. */
const REFUSED_BEFORE_WRITING = new Set(['invalid_key', 'value_too_large', 'unencodable_value', 'bad_message'])

interface Waiting<T> {
  readonly resolve: (value: T) => void
  readonly reject: (error: unknown) => void
}
interface WaitingGet extends Waiting<unknown> {
  readonly key: string
}
interface WaitingSet extends Waiting<void> {
  readonly entry: { readonly key: string; readonly value: unknown; readonly ttlMs?: number }
}

/**
 * One namespace of a key-value store actor, as the code that uses it sees it.
 *
 * Values come back as their stored msgpack bytes and are decoded here, so each crosses the
 * thread boundary once, as bytes. Gets and sets made in the same turn of the event loop travel together, as one `getMany` or
 * one `setMany` message of up to 128 entries: the same per-turn batching lmdb-js applies to its
 * own writes. Batching changes no answer. Each call resolves or rejects for itself, a set
 * resolves only once its write is durable, and a batch the store refuses before writing (one
 * bad key or value) is retried entry by entry so only the bad entry fails.
 */
export class KvClient {
  readonly #store: Pick<ActorRef<KvMessage>, 'ask'>
  readonly #namespace: string
  readonly #options: AskOptions | undefined
  #gets: WaitingGet[] = []
  #sets: WaitingSet[] = []
  #scheduled = false

  constructor(store: Pick<ActorRef<KvMessage>, 'ask'>, namespace: string, options?: AskOptions) {
    checkNamespace(namespace)
    this.#store = store
    this.#namespace = namespace
    this.#options = options
  }

  /** The value under `key`, or null. */
  get<T = unknown>(key: string): Promise<T | null> {
    return new Promise((resolve, reject) => {
      checkKey(this.#namespace, key)
      this.#gets.push({ key, resolve: resolve as (value: unknown) => void, reject })
      this.#schedule()
    })
  }

  getMany<T = unknown>(keys: readonly string[]): Promise<Array<T | null>> {
    return this.#store.ask<Array<Uint8Array | null>>({ type: 'getMany', namespace: this.#namespace, keys: [...keys], packed: true }, this.#options).then(values => values.map(unpackOrNull) as Array<T | null>)
  }

  /** Resolves once the value is durable; `ttlMs` makes it expire. */
  set(key: string, value: unknown, options: { readonly ttlMs?: number } = {}): Promise<void> {
    return new Promise((resolve, reject) => {
      checkKey(this.#namespace, key)
      const entry = options.ttlMs === undefined ? { key, value } : { key, value, ttlMs: options.ttlMs }
      this.#sets.push({ entry, resolve, reject })
      this.#schedule()
    })
  }

  /** True if the key existed. */
  delete(key: string): Promise<boolean> {
    return this.#store.ask({ type: 'delete', namespace: this.#namespace, key }, this.#options)
  }

  /** One page of keys starting with `prefix`, in UTF-8 byte order. */
  scan(prefix?: string, page: { readonly limit?: number; readonly cursor?: string } = {}): Promise<KvPage> {
    const msg: KvMessage = { type: 'scan', namespace: this.#namespace }
    if (prefix !== undefined) msg.prefix = prefix
    if (page.limit !== undefined) msg.limit = page.limit
    if (page.cursor !== undefined) msg.cursor = page.cursor
    return this.#store.ask(msg, this.#options)
  }

  /** Every entry whose key starts with `prefix`, page by page. */
  async *entries<T = unknown>(prefix?: string): AsyncGenerator<{ key: string; value: T }> {
    let cursor: string | undefined
    do {
      const page = await this.scan(prefix, cursor === undefined ? { limit: MAX_PAGE } : { limit: MAX_PAGE, cursor })
      for (const item of page.items) yield item as { key: string; value: T }
      cursor = page.cursor ?? undefined
    } while (cursor !== undefined)
  }

  #schedule(): void {
    if (this.#scheduled) return
    this.#scheduled = true
    queueMicrotask(this.#flush)
  }

  readonly #flush = (): void => {
    this.#scheduled = false
    const sets = this.#sets
    const gets = this.#gets
    this.#sets = []
    this.#gets = []
    for (let at = 0; at < sets.length; at += MAX_BATCH) this.#sendSets(sets.slice(at, at + MAX_BATCH))
    for (let at = 0; at < gets.length; at += MAX_BATCH) this.#sendGets(gets.slice(at, at + MAX_BATCH))
  }

  #sendGets(batch: WaitingGet[]): void {
    const namespace = this.#namespace
    if (batch.length === 1) {
      const only = batch[0]!
      this.#store.ask<Uint8Array | null>({ type: 'get', namespace, key: only.key, packed: true }, this.#options).then(bytes => only.resolve(unpackOrNull(bytes)), only.reject)
      return
    }
    this.#store.ask<Array<Uint8Array | null>>({ type: 'getMany', namespace, keys: batch.map(get => get.key), packed: true }, this.#options).then(
      values => batch.forEach((get, at) => get.resolve(unpackOrNull(values[at]!))),
      (error: unknown) => batch.forEach(get => get.reject(error)),
    )
  }

  #sendSets(batch: WaitingSet[]): void {
    const namespace = this.#namespace
    const alone = (waiting: WaitingSet): void => {
      this.#store.ask({ type: 'set', namespace, ...waiting.entry }, this.#options).then(() => waiting.resolve(), waiting.reject)
    }
    if (batch.length === 1) return alone(batch[0]!)
    this.#store.ask({ type: 'setMany', namespace, entries: batch.map(set => set.entry) }, this.#options).then(
      () => batch.forEach(set => set.resolve()),
      (error: unknown) => {
        if (error instanceof ActorError && REFUSED_BEFORE_WRITING.has(error.code)) batch.forEach(alone)
        else batch.forEach(set => set.reject(error))
      },
    )
  }
}
