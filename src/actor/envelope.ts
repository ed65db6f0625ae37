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

const isCount = (value: unknown): boolean => Number.isInteger(value) && (value as number) >= 0

/** A stream's opening payload: [window, message]. */
const isStreamOpen = (payload: unknown): boolean => Array.isArray(payload) && payload.length === 2 && typeof payload[0] === 'number'

/**
 * Why `fields`, fresh from another thread's bytes, is not a batch of envelopes this thread can
 * route; undefined when it is. Only what routing itself reads is checked: the five header fields
 * and the outer shape of the payloads the kernel takes apart (an error's code, a stream's window,
 * a kernel op's name). A message's own content is its protocol's to check.
 */
export function malformedBatch(fields: unknown): string | undefined {
  if (!Array.isArray(fields)) return `a batch is an array of fields, not ${fields === null ? 'null' : typeof fields}`
  if (fields.length % FIELDS_PER_ENVELOPE !== 0) return `a batch has ${FIELDS_PER_ENVELOPE} fields per envelope; ${fields.length} is not a multiple of it`
  for (let at = 0; at < fields.length; at += FIELDS_PER_ENVELOPE) {
    const wrong = malformedEnvelope(fields, at)
    if (wrong !== undefined) return `envelope ${at / FIELDS_PER_ENVELOPE}: ${wrong}`
  }
  return undefined
}

function malformedEnvelope(fields: readonly unknown[], at: number): string | undefined {
  if (!isCount(fields[at + F_TARGET]) || !isCount(fields[at + F_GENERATION]) || !isCount(fields[at + F_CORRELATION])) {
    return 'its target, generation and correlation must be integers of 0 or more'
  }
  const deadline = fields[at + F_DEADLINE]
  if (typeof deadline !== 'number' || !(deadline >= 0)) return 'its deadline must be a number of 0 or more'
  const payload = fields[at + F_PAYLOAD]
  const kind = fields[at + F_KIND]
  switch (kind) {
    case Kind.tell:
    case Kind.ask:
    case Kind.reply:
    case Kind.chunk:
    case Kind.end:
    case Kind.cancel:
      return undefined
    case Kind.stream:
      return isStreamOpen(payload) ? undefined : 'a stream payload is [window, message]'
    case Kind.error:
      return typeof payload === 'object' && payload !== null && typeof (payload as { code?: unknown }).code === 'string' ? undefined : 'an error payload is { code, message, data }'
    case Kind.credit:
      return isCount(payload) ? undefined : 'a credit payload is an integer of 0 or more'
    case Kind.system:
      return typeof payload === 'object' && payload !== null && typeof (payload as { op?: unknown }).op === 'string' ? undefined : 'a kernel op payload is { op, … }'
    case Kind.returned: {
      const valid =
        Array.isArray(payload) &&
        payload.length === 2 &&
        (payload[0] === Kind.tell || payload[0] === Kind.ask || (payload[0] === Kind.stream && isStreamOpen(payload[1])))
      return valid ? undefined : 'a returned payload is [kind, message] of a tell, ask or stream'
    }
    default:
      return `its kind ${typeof kind === 'number' ? kind : typeof kind} is none of 1 to 11`
  }
}
