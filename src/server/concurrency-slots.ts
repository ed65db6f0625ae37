import { HttpError } from './http.js'
import type { ServedRequest } from './served-request.js'

/** What a client holds open: streams (SSE and NDJSON responses) and workflow runs. */
export type SlotKind = 'streams' | 'runs'

/** server.quota's max_concurrent_streams and max_concurrent_runs; unset is no limit. */
export interface ConcurrencyLimits {
  readonly streams?: number | undefined
  readonly runs?: number | undefined
}

const LIMIT_FIELDS: Readonly<Record<SlotKind, string>> = { streams: 'max_concurrent_streams', runs: 'max_concurrent_runs' }
/** Seconds a refused client is told to wait: a slot frees when one of its own streams or runs ends. */
const RETRY_AFTER_S = 1

/**
 * How many streams and runs each client (a principal, or an address without authentication) has
 * open now, against server.quota's limits. The counts are held on the thread that serves HTTP
 * and never stored: what they count, connections and waits, ends with the process anyway. A
 * client's entry goes once it holds nothing, so the map is as large as what is open.
 */
export class ConcurrencySlots {
  #limits: Readonly<Record<SlotKind, number>> = { streams: Infinity, runs: Infinity }
  readonly #held = new Map<string, Record<SlotKind, number>>()

  constructor(limits: ConcurrencyLimits) {
    this.configure(limits)
  }

  /** New limits, for the slots taken from now on: one held past a lowered limit is kept until it is released. */
  configure(limits: ConcurrencyLimits): void {
    this.#limits = { streams: limits.streams ?? Infinity, runs: limits.runs ?? Infinity }
  }

  /** Whether any limit is set: without one, no request needs slots. */
  get limited(): boolean {
    return this.#limits.streams !== Infinity || this.#limits.runs !== Infinity
  }

  held(client: string, kind: SlotKind): number {
    return this.#held.get(client)?.[kind] ?? 0
  }

  /**
   * Takes one `kind` slot for `client` (`who` names it in the refusal), or throws 429
   * `concurrency_limit` naming the limit. Returns the release, which frees the slot once however
   * often it is called.
   */
  take(client: string, kind: SlotKind, who: string): () => void {
    const limit = this.#limits[kind]
    let held = this.#held.get(client)
    const count = held?.[kind] ?? 0
    if (count >= limit) {
      const what = kind === 'streams' ? 'streams open' : 'workflow runs going'
      throw new HttpError(429, 'concurrency_limit', `${who} has ${count} ${what}, the most server.quota.${LIMIT_FIELDS[kind]} allows (${limit}); retry once one has ended`, null, {
        'retry-after': String(RETRY_AFTER_S),
      })
    }
    if (held === undefined) this.#held.set(client, (held = { streams: 0, runs: 0 }))
    held[kind]++
    let released = false
    return () => {
      if (released) return
      released = true
      held[kind]--
      if (held.streams === 0 && held.runs === 0 && this.#held.get(client) === held) this.#held.delete(client)
    }
  }
}

/** A slot a request holds: released when its response closes, or, once `until` is called, when that settles instead. */
export interface SlotHold {
  /** Keeps the slot past the response, until `done` settles (a run started with run-nowait, until it finishes). */
  until(done: Promise<unknown>): void
}

/**
 * The slots of the client that made one request, as its handler takes them (`request.slots`,
 * set by the server's quota step when a limit is configured). A slot is released on every path
 * the response ends by: completed, failed, or cut off by the client or the server, since a
 * ServerResponse emits `close` on each.
 */
export class RequestSlots {
  constructor(
    private readonly slots: ConcurrencySlots,
    private readonly client: string,
    private readonly who: string,
    private readonly request: ServedRequest,
  ) {}

  /** Takes a `kind` slot for this request, or throws 429 `concurrency_limit`; 499 when the client has gone already. */
  hold(kind: SlotKind): SlotHold {
    const { res } = this.request
    // Its response has closed already: a close listener would never run.
    if (this.request.cancelled) throw new HttpError(499, 'cancelled', 'the client went away before the request was served')
    const release = this.slots.take(this.client, kind, this.who)
    res.once('close', release)
    return {
      until(done) {
        res.off('close', release)
        done.then(release, release)
      },
    }
  }
}
