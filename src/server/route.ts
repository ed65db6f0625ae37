import type { HttpError } from './http.js'
import type { Routable } from './router.js'
import type { ServedRequest } from './served-request.js'

/** One route of the API: a route module returns a list of these, and the server routes to them. */
export interface Route extends Routable {
  readonly method: 'GET' | 'POST' | 'DELETE'
  /** The API it belongs to, as /v1/inspect/routes lists it. */
  readonly api: string
  /** Resolves with the JSON body of a 200, or with HANDLED when it wrote the response itself. */
  readonly handle: (request: ServedRequest) => Promise<unknown>
  /** The request goes on to an inference provider: prewake its thread on arrival. */
  readonly inference?: true
  /** How this route's failures reach the client, when not as the OpenAI-style `{ error }` of its code's status. */
  readonly errors?: RouteErrors
}

/** A protocol's own wording of errors: the status (and headers) of a failure, and its body. */
export interface RouteErrors {
  toHttp(error: unknown): HttpError
  body(error: HttpError): string
}

/** What a handler returns when it has written the response itself (streams, statuses other than 200). */
export const HANDLED = Symbol('handled')
