/**
 * One provider's circuit breaker, as the reconciler keeps it. Closed, every cycle asks the
 * provider. After `failureThreshold` failures in a row it opens: nothing asks until `retryAt`,
 * and requests for the provider's models are refused at once (provider_unavailable) instead of
 * each waiting out a connect timeout. At `retryAt` it is half-open: one ask is let through; a
 * success closes it, a failure opens it again for twice as long, up to `maxBackoffMs`.
 *
 * Pure and clocked by the caller, so that tests drive time.
 */

export interface BreakerSettings {
  /** Failures in a row that open the breaker. */
  readonly failureThreshold: number
  /** How long the first opening lasts. */
  readonly backoffMs: number
  /** The longest an opening lasts, however often the half-open ask fails. */
  readonly maxBackoffMs: number
}

export type BreakerState = 'closed' | 'open' | 'half_open'

/** The breaker as /v1/inspect/runtime shows it. */
export interface BreakerView {
  readonly state: BreakerState
  readonly consecutive_failures: number
  /** ISO times; null while closed. */
  readonly opened_at: string | null
  readonly retry_at: string | null
}

export class CircuitBreaker {
  #settings: BreakerSettings
  #state: BreakerState = 'closed'
  #failures = 0
  #backoffMs: number
  #openedAt = 0
  #retryAt = 0

  constructor(settings: BreakerSettings) {
    this.#settings = settings
    this.#backoffMs = settings.backoffMs
  }

  get state(): BreakerState {
    return this.#state
  }

  /** When an open breaker lets its half-open ask through, ms since the epoch; 0 unless open. */
  get retryAt(): number {
    return this.#state === 'open' ? this.#retryAt : 0
  }

  /** New settings apply from the next opening; one open now keeps its retry time. */
  configure(settings: BreakerSettings): void {
    this.#settings = settings
    if (this.#state === 'closed') this.#backoffMs = settings.backoffMs
  }

  /**
   * Whether the provider may be asked at `now`. An open breaker whose time has come turns
   * half-open and lets this one ask through; while that ask is out, no other is.
   */
  tryAsk(now: number): boolean {
    if (this.#state === 'closed') return true
    if (this.#state === 'half_open' || now < this.#retryAt) return false
    this.#state = 'half_open'
    return true
  }

  /**
   * Open until `retryAt`, as a breaker was before a restart of its owner: what was refused stays
   * refused until then. Its next failed half-open ask waits at least as long again.
   */
  restoreOpen(retryAt: number, now: number): void {
    this.#state = 'open'
    this.#failures = Math.max(this.#failures, this.#settings.failureThreshold)
    this.#openedAt = now
    this.#retryAt = retryAt
    this.#backoffMs = Math.min(Math.max(this.#settings.backoffMs, retryAt - now), this.#settings.maxBackoffMs)
  }

  success(): void {
    this.#state = 'closed'
    this.#failures = 0
    this.#backoffMs = this.#settings.backoffMs
  }

  failure(now: number): void {
    this.#failures++
    if (this.#state === 'half_open') {
      this.#backoffMs = Math.min(this.#backoffMs * 2, this.#settings.maxBackoffMs)
      this.#open(now)
    } else if (this.#state === 'closed' && this.#failures >= this.#settings.failureThreshold) {
      this.#backoffMs = Math.min(this.#settings.backoffMs, this.#settings.maxBackoffMs)
      this.#open(now)
    }
  }

  view(): BreakerView {
    const open = this.#state !== 'closed'
    return {
      state: this.#state,
      consecutive_failures: this.#failures,
      opened_at: open ? new Date(this.#openedAt).toISOString() : null,
      retry_at: open ? new Date(this.#retryAt).toISOString() : null,
    }
  }

  #open(now: number): void {
    if (this.#state === 'closed') this.#openedAt = now
    this.#state = 'open'
    this.#retryAt = now + this.#backoffMs
  }
}
