import { Counter, Histogram, type Registry } from 'prom-client'
import type { Route } from './route.js'
import type { ServedRequest } from './served-request.js'

/** What a request no route serves is counted under: a 404, a 405, a CORS preflight. */
const UNMATCHED = 'unmatched'
/**
 * The status of a response the client went away from before it was complete (nginx's "client
 * closed request"); the status the server had set is not what the client got.
 */
const CLIENT_CLOSED = '499'
/** Methods counted by name; any other a client sends is counted as `other`, so that no client can mint label values. */
const METHODS = new Set(['GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'HEAD', 'OPTIONS'])
/** From a model list (1 ms) to a long stream or a workflow run awaited over HTTP. */
const DURATION_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]

/**
 * The HTTP API's request counter and latency histogram. A request is labelled with its route's
 * documented path (`/v1/models/{model_id:path}`), never its URL: a URL's ids are unbounded and
 * may be sensitive. Nothing is read from the headers.
 */
export class HttpMetrics {
  readonly #requests: Counter<'route' | 'method' | 'status'>
  readonly #duration: Histogram<'route' | 'method'>

  constructor(registry: Registry) {
    this.#requests = new Counter({ name: 'troupe_http_requests_total', help: 'HTTP requests answered, by route (its documented path), method and status', labelNames: ['route', 'method', 'status'], registers: [registry] })
    this.#duration = new Histogram({
      name: 'troupe_http_request_duration_seconds',
      help: 'Time from a request arriving to its response being complete (or the client going away), by route and method',
      labelNames: ['route', 'method'],
      buckets: DURATION_BUCKETS_S,
      registers: [registry],
    })
  }

  /**
   * Counts `request` once its response is done: complete, or abandoned by the client. `route`
   * is read then, so the server may match it after this call (or never: a 404).
   */
  track(request: ServedRequest, route: () => Route | undefined): void {
    const startedAt = performance.now()
    const { req, res } = request
    res.once('close', () => {
      const matched = route()
      const labels = { route: matched?.path ?? UNMATCHED, method: matched?.method ?? methodLabel(req.method) }
      this.#requests.inc({ ...labels, status: res.writableFinished ? String(res.statusCode) : CLIENT_CLOSED })
      this.#duration.observe(labels, (performance.now() - startedAt) / 1000)
    })
  }
}

function methodLabel(method: string | undefined): string {
  return method !== undefined && METHODS.has(method) ? method : 'other'
}
