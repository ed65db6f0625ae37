/**
 * The next number of an increasing sequence that survives restarts without being stored:
 * microseconds since the epoch, or one past `last` when the clock has not moved on (or went
 * back). Only a single writer (one actor) may hand them out.
 */
export function nextSequence(last: number): number {
  return Math.max(Date.now() * 1000, last + 1)
}
