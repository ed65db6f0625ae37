/**
 * An envelope is what crosses threads: kind, target (slot and generation), correlation id,
 * deadline and payload. The sender is implied by the link it arrives on (each link joins
 * exactly two threads), so it costs no bytes.
 *
 * On the wire a batch is one flat msgpack array of FIELDS_PER_ENVELOPE values per envelope:
 * no per-envelope array or map headers, and one buffer transferred per post.
 */
export const Kind = {
  /** Fire and forget. */
  tell: 1,
  /** Request one reply, matched by correlation id. */
  ask: 2,
  /** Request a streamed reply; payload is [window, message]. */
  stream: 3,
  reply: 4,
  chunk: 5,
  end: 6,
  /** An ask or stream failed; payload is { code, message, data }. */
  error: 7,
  /** The caller gave up on an ask or stream (abort, timeout, break). */
  cancel: 8,
  /** The stream consumer grants the producer n more chunks. */
  credit: 9,
  /** Kernel traffic: spawn, stop, thread down, lookups. Jumps every user queue. */
  system: 10,
  /**
   * A tell, ask or stream open handed back unhandled because its actor is restarting (it
   * crashed or is being restarted with it queued, or the message arrived meanwhile); payload is
   * [kind, message]. The sender holds it and sends it again to the actor's next incarnation.
   */
  returned: 11,
} as const

export type Kind = (typeof Kind)[keyof typeof Kind]

export const FIELDS_PER_ENVELOPE = 6
export const F_KIND = 0
export const F_TARGET = 1
export const F_GENERATION = 2
export const F_CORRELATION = 3
export const F_DEADLINE = 4
export const F_PAYLOAD = 5

/** A deadline of 0 means none; otherwise it is a Date.now() instant shared by all threads. */
export const NO_DEADLINE = 0
