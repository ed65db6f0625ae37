/**
 * Routes by method and path. A path without parameters is one map lookup; only paths with
 * `{name}` segments are tried as patterns, so the common routes cost no regex per request.
 */
export interface Routable {
  readonly method: string
  /** The path as documented, `{name}` for a parameter. */
  readonly path: string
}

export type RouteMatch<R> =
  | { readonly route: R; readonly params: Record<string, string> }
  /** The path exists but not for this method: the methods it takes. */
  | { readonly route: undefined; readonly allowed: readonly string[] }
  | undefined

const NO_PARAMS: Record<string, string> = Object.freeze({}) as Record<string, string>

export class Router<R extends Routable> {
  readonly #exact = new Map<string, Map<string, R>>()
  readonly #patterns: Array<{ readonly route: R; readonly pattern: RegExp }> = []

  constructor(routes: readonly R[]) {
    for (const route of routes) {
      if (route.path.includes('{')) {
        this.#patterns.push({ route, pattern: patternOf(route.path) })
        continue
      }
      let byMethod = this.#exact.get(route.path)
      if (byMethod === undefined) this.#exact.set(route.path, (byMethod = new Map()))
      if (byMethod.has(route.method)) throw new Error(`two routes for ${route.method} ${route.path}`)
      byMethod.set(route.method, route)
    }
  }

  /** The route for `method` and `pathname` with its decoded parameters; which methods would do; or undefined. */
  match(method: string, pathname: string): RouteMatch<R> {
    const exact = this.#exact.get(pathname)
    if (exact !== undefined) {
      const route = exact.get(method)
      return route === undefined ? { route: undefined, allowed: [...exact.keys()] } : { route, params: NO_PARAMS }
    }
    const allowed = new Set<string>()
    for (const { route, pattern } of this.#patterns) {
      const found = pattern.exec(pathname)
      if (found === null) continue
      if (route.method !== method) {
        allowed.add(route.method)
        continue
      }
      const params: Record<string, string> = {}
      for (const [name, value] of Object.entries(found.groups ?? {})) params[name] = decodeURIComponent(value)
      return { route, params }
    }
    return allowed.size > 0 ? { route: undefined, allowed: [...allowed] } : undefined
  }
}

/**
 * A path's regex: `{name}` captures one segment, `{name:path}` the rest of the path, slashes
 * included (a model id `provider_id/model`, as llama-stack's routes take it); everything else (a
 * `.` in a deployment name) matches literally.
 */
function patternOf(path: string): RegExp {
  const source = path
    .split(/(\{\w+(?::path)?\})/)
    .map(part => {
      const param = /^\{(\w+)(:path)?\}$/.exec(part)
      if (param === null) return part.replace(/[.*+?^$()|[\]\\]/g, '\\$&')
      return `(?<${param[1]}>${param[2] === undefined ? '[^/]+' : '.+'})`
    })
    .join('')
  return new RegExp(`^${source}$`)
}
