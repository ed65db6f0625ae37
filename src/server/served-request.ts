import type { IncomingMessage, ServerResponse } from 'node:http'
import { CancelSource, type Cancellation } from '../actor/index.js'
import type { Principal, RequestAuth } from './auth.js'
import type { RequestSlots } from './concurrency-slots.js'

/**
 * One request as handlers see it. It is the Cancellation of the asks made for it: they are
 * cancelled when the client goes away before the response is complete, or when the server
 * cancels the request (`cancel`, at a drain's deadline). The query is parsed on first use.
 */
export class ServedRequest implements Cancellation {
  params: Record<string, string> = {}
  /** server.auth as the request started: its authentication, route and access checks all use this one; undefined without server.auth. */
  auth: RequestAuth | undefined
  /** Who made it, once authenticated (server.auth); undefined when the server runs without authentication. */
  principal: Principal | undefined
  /** Its client's stream and run slots, set by the server's quota step when server.quota limits them; handlers that stream or run hold one. */
  slots: RequestSlots | undefined
  readonly pathname: string
  readonly #search: string
  /**
   * Made on the first `onCancel` or `cancel`: one `close` listener per request, however many
   * asks subscribe, and none for a request that asks nothing.
   */
  #source: CancelSource | undefined

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    /** Its request id (request-id.ts): answered in its `x-request-id` header, logged with every line about it, passed on with its inference asks. */
    readonly id: string,
  ) {
    const url = req.url ?? '/'
    const mark = url.indexOf('?')
    this.pathname = mark === -1 ? url : url.slice(0, mark)
    this.#search = mark === -1 ? '' : url.slice(mark + 1)
  }

  get query(): URLSearchParams {
    return new URLSearchParams(this.#search)
  }

  /**
   * Whether the client went away before the response was complete, or the server cancelled the
   * request. Once the server has, it stays cancelled after the server's own answer completes:
   * the handler must not answer too.
   */
  get cancelled(): boolean {
    return this.#source?.cancelled === true || (!this.res.writableFinished && (this.res.destroyed || this.req.socket.destroyed))
  }

  onCancel(fn: () => void): () => void {
    if (this.cancelled) {
      fn()
      return () => undefined
    }
    return this.#cancellation().onCancel(fn)
  }

  /**
   * Cancels every ask made for this request, whatever state its response is in. The server
   * answers the client itself afterwards: a response it completes would not look cancelled
   * to a `close` listener, so this is the only way its asks learn of it.
   */
  cancel(): void {
    this.#cancellation().cancel()
  }

  #cancellation(): CancelSource {
    let source = this.#source
    if (source === undefined) {
      const created = (source = this.#source = new CancelSource())
      this.res.once('close', () => {
        if (!this.res.writableFinished) created.cancel()
      })
    }
    return source
  }
}
