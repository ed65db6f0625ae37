import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Cancellation } from '../actor/index.js'

/**
 * One request as handlers see it. It is the Cancellation of the asks made for it: they are
 * cancelled when the client goes away before the response is complete. The query is parsed on
 * first use.
 */
export class ServedRequest implements Cancellation {
  params: Record<string, string> = {}
  readonly pathname: string
  readonly #search: string

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
  ) {
    const url = req.url ?? '/'
    const mark = url.indexOf('?')
    this.pathname = mark === -1 ? url : url.slice(0, mark)
    this.#search = mark === -1 ? '' : url.slice(mark + 1)
  }

  get query(): URLSearchParams {
    return new URLSearchParams(this.#search)
  }

  /** Whether the client went away before the response was complete. */
  get cancelled(): boolean {
    return !this.res.writableFinished && (this.res.destroyed || this.req.socket.destroyed)
  }

  onCancel(fn: () => void): () => void {
    if (this.cancelled) {
      fn()
      return () => undefined
    }
    const closed = (): void => {
      if (!this.res.writableFinished) fn()
    }
    this.res.once('close', closed)
    return () => this.res.off('close', closed)
  }
}
