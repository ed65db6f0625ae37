import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import type { ActorRef } from '../actor/index.js'
import { KvClient } from '../../actors/stores/kv-client.js'
import type { KvMessage } from '../../actors/stores/protocol.js'

/** How often the counts that changed are written to the store: what a `kill -9` may lose. */
export const FLUSH_INTERVAL_MS = 1_000
/** How long a load or a write may take; a write that fails is tried again at the next interval. */
const STORE_TIMEOUT_MS = 5_000
/** Clients whose counts are kept in memory before those already written are dropped (and read again when next seen). */
const MAX_TALLIES = 100_000
/** A client key longer than this is stored under its hash: keys and their namespace must fit in 512 bytes. */
const MAX_READABLE_KEY_BYTES = 256

/** What is stored per client: the end of the window counted in, and the count. */
interface StoredTally {
  readonly until: number
  readonly used: number
}

interface Tally {
  readonly key: string
  /** The end of the window this count is for, ms since the epoch. */
  until: number
  used: number
  /** What the store holds (or is being sent): `used` has changes to write while they differ. */
  saved: number
  refused: number
  /** The read of the stored count, while it is under way: requests of this client wait for it. */
  loading: Promise<void> | undefined
}

export interface QuotaLedgerOptions {
  readonly store: Pick<ActorRef<KvMessage>, 'ask'>
  readonly namespace: string
  readonly periodMs: number
  readonly now: () => number
  readonly log: Logger
  readonly flushIntervalMs?: number
}

/** The store could not give a client's count: its request is neither admitted nor refused on a guess. */
export class QuotaUnavailableError extends Error {
  override name = 'QuotaUnavailableError'
  readonly code = 'quota_unavailable'
}

/**
 * Request counts per client and fixed window (server.quota), kept on the thread that serves HTTP
 * so that counting a request costs no message. A client's count is read from the store actor the
 * first time the client is seen in a window, and its requests wait for that one read; after it
 * they are counted here. The counts that changed are written back in one batch (KvClient sends
 * the sets of one turn together) every FLUSH_INTERVAL_MS and on close. So a stop loses nothing,
 * and a `kill -9` loses the requests counted since the last write: each client may make that
 * many more in the window.
 *
 * Windows are llama-stack's: fixed and aligned to the epoch, so a day runs from 00:00 UTC and
 * every client's count starts again then. A refused request is not counted, so a count never
 * passes its limit. Each client has one key, holding its window's end and its count, written with
 * a TTL to that end, so that keys do not pile up a window at a time. The counts are this
 * process's alone: processes that share a namespace overwrite each other's.
 */
export class QuotaLedger {
  readonly #kv: KvClient
  readonly #periodMs: number
  readonly #now: () => number
  readonly #log: Logger
  readonly #tallies = new Map<string, Tally>()
  readonly #timer: NodeJS.Timeout
  #writes: Promise<void> = Promise.resolve()
  #writing = 0
  #closed: Promise<void> | undefined

  constructor(options: QuotaLedgerOptions) {
    this.#kv = new KvClient(options.store, options.namespace, { timeoutMs: STORE_TIMEOUT_MS })
    this.#periodMs = options.periodMs
    this.#now = options.now
    this.#log = options.log
    this.#timer = setInterval(() => {
      // A write still under way is not queued behind again: the next tick writes what is left.
      if (this.#writing === 0) void this.flush()
    }, options.flushIntervalMs ?? FLUSH_INTERVAL_MS).unref()
  }

  /** The end of the window `at` falls in, ms since the epoch. */
  windowEnd(at = this.#now()): number {
    return (Math.floor(at / this.#periodMs) + 1) * this.#periodMs
  }

  /**
   * Counts one request of `client` against `limit`. Answers the client's count with this request
   * (1 or more) when it is admitted, and `-n` when it is refused, the n-th refusal of the client
   * in the window. Answers at once when the client's count in this window is known, else once it
   * has been read; a read that fails rejects with QuotaUnavailableError, and the next request
   * tries again.
   */
  take(client: string, limit: number): number | Promise<number> {
    const until = this.windowEnd()
    let tally = this.#tallies.get(client)
    if (tally === undefined) {
      const created: Tally = { key: storeKey(client), until, used: 0, saved: 0, refused: 0, loading: undefined }
      created.loading = this.#load(client, created)
      this.#tallies.set(client, (tally = created))
    } else if (tally.loading === undefined && tally.until < until) {
      // A new window: the count starts again, with nothing to read (only this process writes it).
      tally.until = until
      tally.used = tally.saved = tally.refused = 0
    }
    if (tally.loading !== undefined) return tally.loading.then(() => this.take(client, limit))
    if (tally.used >= limit) {
      tally.refused++
      return -tally.refused
    }
    tally.used++
    return tally.used
  }

  #load(client: string, tally: Tally): Promise<void> {
    return this.#kv.get<StoredTally>(tally.key).then(
      stored => {
        if (stored?.until === tally.until && Number.isSafeInteger(stored.used)) tally.used = tally.saved = stored.used
        tally.loading = undefined
      },
      (error: unknown) => {
        if (this.#tallies.get(client) === tally) this.#tallies.delete(client)
        throw new QuotaUnavailableError(`the quota store did not give the count: ${error instanceof Error ? error.message : String(error)}`, { cause: error })
      },
    )
  }

  /** Writes every count that changed since it was last written; resolves once the store has them (or failed to take them, which is logged). */
  flush(): Promise<void> {
    this.#writing++
    const next = this.#writes.then(() => this.#write()).finally(() => this.#writing--)
    this.#writes = next
    return next
  }

  async #write(): Promise<void> {
    const now = this.#now()
    const until = this.windowEnd(now)
    const writes: Array<Promise<void>> = []
    for (const [client, tally] of this.#tallies) {
      if (tally.loading !== undefined) continue
      // A past window's count limits nothing any more.
      if (tally.until < until) this.#tallies.delete(client)
      else if (tally.used !== tally.saved) {
        const used = tally.used
        const window = tally.until
        tally.saved = used
        const written = this.#kv.set(tally.key, { until: window, used } satisfies StoredTally, { ttlMs: Math.max(1, Math.ceil(window - now)) })
        writes.push(
          written.catch((error: unknown) => {
            // Written again at the next interval, unless a newer count went out meanwhile.
            if (tally.until === window && tally.saved === used) tally.saved = -1
            throw error
          }),
        )
      }
    }
    const failed = (await Promise.allSettled(writes)).filter(result => result.status === 'rejected')
    if (failed.length > 0) this.#log.warn({ err: failed[0]!.reason, clients: failed.length }, 'quota counts could not be written to the store; they are tried again at the next interval')
    this.#trim()
  }

  /** Past MAX_TALLIES, drops counts the store holds already: a client dropped is read again when next seen. */
  #trim(): void {
    if (this.#tallies.size <= MAX_TALLIES) return
    for (const [client, tally] of this.#tallies) {
      if (this.#tallies.size <= MAX_TALLIES * 0.9) break
      if (tally.loading === undefined && tally.used === tally.saved) this.#tallies.delete(client)
    }
  }

  /** Stops the interval and writes what changed: the counts are in the store when it resolves. Idempotent. */
  close(): Promise<void> {
    if (this.#closed === undefined) {
      clearInterval(this.#timer)
      this.#closed = this.flush()
    }
    return this.#closed
  }
}

/** The store key of a client: readable, or its hash when long. */
function storeKey(client: string): string {
  if (Buffer.byteLength(client) <= MAX_READABLE_KEY_BYTES) return client
  return `${client.slice(0, 2)}#${createHash('sha256').update(client).digest('base64url')}`
}
