import type { Logger } from 'pino'

/** Logging every dead letter of a flood would be the flood; past this many per window, count only. */
const LOGGED_PER_WINDOW = 10
const WINDOW_MS = 1000

/**
 * Tells that could not be delivered: refused by a full mailbox, sent to an actor that is
 * restarting or gone, or not encodable. Each is counted by code; the first few per second are
 * logged with their target and message type, and the rest are summarised in the next log line.
 */
export class DeadLetters {
  total = 0
  readonly byCode = new Map<string, number>()
  private windowStart = 0
  private loggedInWindow = 0
  private suppressed = 0

  constructor(private readonly log: Logger) {}

  record(target: string, message: unknown, code: string): void {
    this.total++
    this.byCode.set(code, (this.byCode.get(code) ?? 0) + 1)
    const now = Date.now()
    if (now - this.windowStart >= WINDOW_MS) {
      this.windowStart = now
      this.loggedInWindow = 0
    }
    if (this.loggedInWindow >= LOGGED_PER_WINDOW) {
      this.suppressed++
      return
    }
    this.loggedInWindow++
    const type = (message as { type?: unknown } | null | undefined)?.type
    this.log.warn(
      { target, code, messageType: typeof type === 'string' ? type : undefined, suppressedSinceLastLog: this.suppressed, deadLettersTotal: this.total },
      'dead letter',
    )
    this.suppressed = 0
  }

  snapshot(): { total: number; byCode: Record<string, number> } {
    return { total: this.total, byCode: Object.fromEntries(this.byCode) }
  }
}
