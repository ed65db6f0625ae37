import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'

/** The monitor's timer period. Each sample is the time between two of its ticks: this period plus the delay. */
const RESOLUTION_MS = 10
/** Figures cover a window at least this long, however often they are read. */
const WINDOW_MS = 10_000

/** How late one thread's event loop ran its timers, in ms, over a recent window. */
export interface EventLoopDelayStats {
  /** The window the figures cover: the last one completed, or the current one until one has. */
  readonly windowMs: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
}

/**
 * One thread's event-loop delay, sampled by node's own timer (perf_hooks.monitorEventLoopDelay):
 * it costs one timer tick per period and nothing per message. Figures are those of the last
 * completed window, rolled over when read: several readers (a metrics scrape, a health check
 * polled every second) each see a window of WINDOW_MS, where resetting on every read would
 * leave each of them the time since the other's read.
 */
export class EventLoopDelay {
  readonly #histogram: IntervalHistogram
  #windowStart = performance.now()
  #last: EventLoopDelayStats | null = null

  constructor() {
    this.#histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
    this.#histogram.enable()
  }

  /** The last completed window's figures, or the current window's before one has completed; null before any sample. */
  read(): EventLoopDelayStats | null {
    const now = performance.now()
    const age = now - this.#windowStart
    if (age < WINDOW_MS) return this.#last ?? this.#figures(age)
    this.#last = this.#figures(age) ?? this.#last
    this.#histogram.reset()
    this.#windowStart = now
    return this.#last
  }

  /** Stops the monitor's timer. */
  close(): void {
    this.#histogram.disable()
  }

  #figures(windowMs: number): EventLoopDelayStats | null {
    const histogram = this.#histogram
    if (histogram.count === 0) return null
    const delayMs = (ns: number): number => Math.max(0, ns / 1e6 - RESOLUTION_MS)
    return { windowMs: Math.round(windowMs), p50Ms: delayMs(histogram.percentile(50)), p99Ms: delayMs(histogram.percentile(99)), maxMs: delayMs(histogram.max) }
  }
}
