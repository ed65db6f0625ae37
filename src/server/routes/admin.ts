import { HttpError } from '../http.js'
import type { Route } from '../route.js'

/** What the admin routes need from the stack's supervisor, kept abstract so the server does not import it. */
export interface AdminHooks {
  /** Re-reads the config file and applies it; resolves with the reload's report. */
  reload(): Promise<{ readonly result: string; readonly errors: readonly { readonly path: string; readonly message: string }[] }>
  /** The running config's generation, hash and last reload. */
  inspect(): unknown
}

/**
 * `POST /v1/admin/reload` (what `troupe reload` calls) and `GET /v1/inspect/config`. They are
 * guarded as every other route is: no differently, so a deployment that fronts the API with
 * authentication guards them too. An invalid file answers 422 with every error and its path;
 * it changed nothing.
 */
export function adminRoutes(hooks: AdminHooks): Route[] {
  return [
    {
      method: 'POST',
      path: '/v1/admin/reload',
      api: 'admin',
      handle: async () => {
        const report = await hooks.reload()
        if (report.result === 'refused') throw new HttpError(503, 'shutting_down', report.errors[0]?.message ?? 'the stack is shutting down', null, { 'retry-after': '1' })
        if (report.result === 'invalid') {
          const first = report.errors[0]
          throw new HttpError(422, 'invalid_config', `the config is invalid; nothing changed: ${report.errors.map(e => `${e.path}: ${e.message}`).join('; ')}`, first?.path ?? null)
        }
        return report
      },
    },
    { method: 'GET', path: '/v1/inspect/config', api: 'inspect', handle: async () => hooks.inspect() },
  ]
}
