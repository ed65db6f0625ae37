import { randomBytes } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'

/** The header a request id arrives in and is answered in. */
export const REQUEST_ID_HEADER = 'x-request-id'

/** Longer client ids are ignored: an id goes into every log line of its request. */
export const MAX_REQUEST_ID_LENGTH = 128

/**
 * RFC 9110's token characters: printable, no spaces, quotes, separators or control characters,
 * so a client's id cannot break a log line or a header.
 */
const SANE_REQUEST_ID = new RegExp(`^[!#$%&'*+.^_\`|~0-9A-Za-z-]{1,${MAX_REQUEST_ID_LENGTH}}$`)

/**
 * Issues one id per HTTP request: the client's `X-Request-Id` when it is sane, else a new one.
 * A new id is this source's random prefix and a counter, which costs a string concatenation
 * per request where a UUID costs a call into crypto; the prefix (48 random bits) keeps ids
 * from two processes, or two runs of one, apart.
 */
export class RequestIds {
  readonly #prefix = randomBytes(6).toString('base64url')
  #issued = 0

  /** The id of a request with these headers. */
  of(headers: IncomingHttpHeaders): string {
    const given = headers[REQUEST_ID_HEADER]
    if (typeof given === 'string' && SANE_REQUEST_ID.test(given)) return given
    return this.next()
  }

  /** A new id, for a request whose client sent none (or none usable). */
  next(): string {
    return `${this.#prefix}-${(++this.#issued).toString(36)}`
  }
}
