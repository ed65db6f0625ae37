/**
 * Every failure the kernel reports is an ActorError with a stable `code`. Callers branch on
 * `code`, never on `instanceof` or message text, because an error that crossed a thread arrives
 * as plain data ({ code, message, data }) and is rebuilt on the other side.
 */
export const KERNEL_ERROR_CODES = {
  timeout: 'the ask did not get a reply within its timeoutMs',
  cancelled: 'the caller aborted the ask or stream through its AbortSignal, or broke out of the stream',
  backpressure: "the target actor's mailbox is full",
  restarting: "the target actor was still restarting or backing off at the ask's deadline, or too many messages already wait for it; retry later",
  crashed: 'the target actor (or its worker thread) died while the message was in flight',
  stopped: 'the target actor stopped before it handled the message',
  no_such_actor: 'no live actor answers to that ref or name',
  bad_message: 'the message could not be encoded for another thread, or its type is not in the protocol',
  name_taken: 'spawn named an actor with a name another live actor already has',
  capacity: 'a limit the system was started with was reached (data.limit, data.option: the option that raises it)',
  bad_envelope: 'bytes from another thread did not decode to a batch of envelopes; the batch was dropped and logged',
  internal: 'a kernel invariant failed; a bug in troupe',
} as const

export type KernelErrorCode = keyof typeof KERNEL_ERROR_CODES

/** Kernel codes, plus any code a behaviour chooses for its own typed rejections. */
export type ActorErrorCode = KernelErrorCode | (string & {})

/** The shape an ActorError takes on the wire. */
export interface ActorErrorData {
  code: string
  message: string
  data?: unknown
}

export class ActorError extends Error {
  override name = 'ActorError'
  readonly code: ActorErrorCode
  readonly data: unknown

  constructor(code: ActorErrorCode, message: string, data?: unknown, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.data = data
  }

  toJSON(): ActorErrorData {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data }
  }

  static fromData(wire: ActorErrorData): ActorError {
    return new ActorError(wire.code, wire.message, wire.data)
  }
}

/** The message of anything thrown, for logs and for the `crashed` error an asker receives. */
export function describeThrown(thrown: unknown): string {
  if (thrown instanceof Error) return thrown.message
  if (typeof thrown === 'string') return thrown
  try {
    return JSON.stringify(thrown) ?? String(thrown)
  } catch {
    // Circular or otherwise unserialisable: String() is the best description left.
    return String(thrown)
  }
}
