import type { HttpMetrics } from '../http-metrics.js'
import { HANDLED, type Route } from '../route.js'

/** What the server needs of the stack's metrics: where to count requests, and the scrape. */
export interface ServerMetrics {
  readonly http: HttpMetrics
  /** The exposition text, gathered now, and its content type. */
  scrape(): Promise<{ readonly contentType: string; readonly text: string }>
}

/** GET /metrics: Prometheus text format. Public, as /v1/health is: it carries no secret and no id from a request. */
export function metricsRoutes(metrics: ServerMetrics): Route[] {
  return [
    {
      method: 'GET',
      path: '/metrics',
      api: 'inspect',
      handle: async ({ res }) => {
        const { contentType, text } = await metrics.scrape()
        res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) }).end(text)
        return HANDLED
      },
    },
  ]
}
