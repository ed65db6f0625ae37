import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import { Server as NetServer, type AddressInfo, type Socket } from 'node:net'
import type { Logger } from 'pino'
import type { z } from 'zod'
import { type ActorRef, type ActorSystem } from '../actor/index.js'
import type { ConversationsMessage } from '../../actors/stores/conversations.js'
import type { InferenceStoreMessage } from '../../actors/stores/inference-store.js'
import { askRoute, modelNotFound, providerModelOf, routeModel, streamRoute, type CheckedModel, type Model, type ModelOwner, type ModelsMessage, type ProviderEntry, type Route as ModelRoute } from '../../actors/routing/models.js'
import type { ChatCompletion, ChatCompletionChunk, TextCompletion } from '../../actors/providers/inference/protocol.js'
import { CompletionAssembler } from './completion-assembler.js'
import { ModelList, modelResource, openAiModel, resolveModel, servedModelView } from './model-list.js'
import type { ReconcilerMessage } from '../stack/reconciler.js'
import { runtimeRoutes } from './routes/runtime.js'
import { createAuthenticator, isPublicRoute, type AuthSettings, type RequestAuth } from './auth.js'
import { accessPolicyOf, authorizeAction, authorizeCreate, ownerOf } from './ownership.js'
import { sameValue } from '../config/index.js'
import { clientErrorOf, HttpError, rawErrorResponse, readJson, sendEncoded, sendError, sendJson, SseWriter, toHttpError, validate } from './http.js'
import { HANDLED, type Route } from './route.js'
import { Router, type RouteMatch } from './router.js'
import { RequestQuota, type QuotaSettings } from './quota.js'
import { ServedRequest } from './served-request.js'
import { REQUEST_ID_HEADER, RequestIds } from './request-id.js'
import type { WorkflowEntry } from './routes/workflow-entry.js'
import { adminRoutes, type AdminHooks } from './routes/admin.js'
import { metricsRoutes, type ServerMetrics } from './routes/metrics.js'
import { WorkflowsApi } from './routes/workflows.js'
import { conversationRoutes } from './routes/conversations.js'
import { storedCompletionRoutes } from './routes/stored-completions.js'
import { chatCompletionBody, completionBody, embeddingsBody, inspectRoutesQuery, registerModelBody, type ChatCompletionBody } from './schemas.js'

/**
 * What `configure` replaces while the server runs. It is always the whole set: a field left
 * out is back at its default (no CORS, no context secret, DEFAULT_DRAIN_TIMEOUT_MS), as a
 * config section removed from the file is.
 */
export interface ServerSettings {
  /** Reported by /v1/version; the workflow routes are also served under /deployments/{image_name}. */
  readonly imageName: string
  readonly maxBodyBytes: number
  /** `true` for any origin, or a list; absent, no CORS headers. */
  readonly cors?: boolean | { readonly allow_origins: readonly string[] } | undefined
  /** `server.workflows_context_secret`: signs the contexts clients may send back; without it they are refused. */
  readonly workflowsContextSecret?: string | undefined
  /** The deadline of `close()` without one, and of the old listener's requests after a `rebind`. */
  readonly drainTimeoutMs?: number | undefined
  /**
   * server.auth, checked: with a provider every route but the public ones needs credentials; the
   * route policy is checked before every handler, the access policy wherever a resource is
   * touched. Absent, none of this applies.
   */
  readonly auth?: AuthSettings | undefined
  /** server.quota: request quotas per client and window, and concurrency limits. Absent, nothing is counted. */
  readonly quota?: QuotaSettings | undefined
}

/**
 * The actors the server routes to, which `setServices` replaces as the stack starts, stops or
 * restarts them. Always the whole set: one left out is not configured (404 on its routes).
 */
export interface ServerServices {
  /**
   * The providers the models routing table routes to, by provider_id. With them, inference is
   * routed from the registry listing this server watches and asked of the provider directly;
   * without them it always goes through the table.
   */
  readonly providers?: ReadonlyMap<string, ProviderEntry> | undefined
  /** Keeps what the providers serve: /v1/providers, /v1/health and /v1/inspect/runtime read its snapshot. */
  readonly reconciler?: ActorRef<ReconcilerMessage> | undefined
  /** Absent when the config has no `storage.stores.inference`: completions are not recorded. */
  readonly inferenceStore?: ActorRef<InferenceStoreMessage> | undefined
  readonly conversations?: ActorRef<ConversationsMessage> | undefined
  /**
   * Called when an inference request arrives, before its body is read: prewakes the threads of
   * the providers that may serve it (ActorRef.prewake), so their wake-up overlaps the body.
   */
  readonly prewakeInference?: (() => void) | undefined
  /** The configured workflows, served on the LlamaIndex Workflows server protocol. */
  readonly workflows?: readonly WorkflowEntry[] | undefined
}

export interface ApiDeps extends ServerSettings, ServerServices {
  readonly system: ActorSystem
  readonly models: ActorRef<ModelsMessage>
  readonly version: string
  readonly log: Logger
  /** The stack's supervisor, for POST /v1/admin/reload and GET /v1/inspect/config; without it those routes are absent. */
  readonly admin?: AdminHooks | undefined
  /** Counts every request and serves GET /metrics; without it that route is absent. */
  readonly metrics?: ServerMetrics | undefined
  /** Serve HTTPS with these; a CA also requires and checks client certificates. */
  readonly tls?: TlsFiles | undefined
  /** The clock server.quota's windows are read from; Date.now unless a test moves time. */
  readonly now?: (() => number) | undefined
}

/** PEM contents for HTTPS. */
export interface TlsFiles {
  readonly cert: Buffer
  readonly key: Buffer
  readonly ca?: Buffer
}

/** As `troupe.drain_timeout_ms` defaults. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000
/**
 * After a deadline has cancelled what was left, how long the answers get to reach their clients
 * before every connection is destroyed: what bounds `close()` whatever handlers and clients do.
 */
const CUT_GRACE_MS = 1_000
/** Seconds a refused client is told to wait: by then another instance, or this one restarted, answers. */
const RETRY_AFTER_S = 1
/** Longer than the 60 s idle timeout of common load balancers, so that they, not troupe, close idle connections. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000
/** Request headers a cross-origin caller may send: its token, its body's type, its own request id. */
const CORS_ALLOWED_HEADERS = `authorization, content-type, ${REQUEST_ID_HEADER}`
/** Response headers a cross-origin caller's script may read besides the CORS-safelisted ones. */
const CORS_EXPOSED_HEADERS = `${REQUEST_ID_HEADER}, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, ratelimit-policy`
/** How long a browser may reuse a preflight's answer (Chromium caps it at 2 hours). */
const CORS_MAX_AGE_S = '7200'

/**
 * A listener that could not be bound. `code` is the system's (EADDRINUSE, EACCES, …), or
 * `server_closing` once close() or beginDrain has begun; the message names the address, which
 * the system's error does not.
 */
export class ListenError extends Error {
  constructor(
    readonly code: string,
    readonly address: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options)
    this.name = 'ListenError'
  }
}

type Request = ServedRequest

/**
 * The OpenAI-compatible HTTP API. Inference is routed by the models routing table's registry:
 * while the server's watch of that registry is live (ModelList), it routes a request from the
 * listing with the table's own function and asks the provider directly, which spares every
 * request (and every streamed chunk) a hop through the table; otherwise it asks the table to
 * route. Bodies are validated with zod; every error is `{ "error": { code, message, param, type } }`
 * with its status (the workflow routes, routes/workflows.ts, add workflows-py's `detail`).
 *
 * Lifecycle: `beginDrain` stops intake, `close` drains under a deadline and then cancels what
 * is left, `rebind` moves the listener with no moment where nothing listens. Settings and
 * services are replaced whole (`configure`, `setServices`) and apply from the next request.
 */
export class ApiServer {
  readonly #deps: ApiDeps
  readonly #modelList: ModelList
  #settings: ServerSettings
  /** server.auth compiled with its authenticator, replaced whole by `configure`: each request takes it once (ServedRequest.auth). */
  #auth: RequestAuth | undefined
  #quota: RequestQuota | undefined
  #services: ServerServices
  #routes: readonly Route[]
  #router: Router<Route>
  #listener: Listener
  /** Listeners a rebind replaced, until their last connection has closed. */
  readonly #replaced = new Set<Listener>()
  #draining = false
  #closing: { readonly done: Promise<void>; readonly deadline: Deadline } | undefined
  /** One source for every listener, so that a rebind does not start the counter over. */
  readonly #requestIds = new RequestIds()
  readonly #serveRequest = (request: ServedRequest): void => void this.#serve(request)

  constructor(deps: ApiDeps) {
    this.#deps = deps
    this.#settings = deps
    this.#auth = requestAuth(deps.auth, undefined)
    this.#quota = RequestQuota.reconfigure(undefined, deps.quota, this.#quotaContext())
    this.#services = deps
    this.#modelList = new ModelList(deps.models, deps.log)
    this.#routes = this.#buildRoutes()
    this.#router = new Router(this.#routes)
    this.#listener = new Listener(deps.tls, this.#requestIds, this.#serveRequest)
  }

  get routes(): readonly Route[] {
    return this.#routes
  }

  /** The node server of the current listener: another one after a `rebind`. */
  get server(): Server {
    return this.#listener.server
  }

  /** Where the server listens; undefined before `listen`. */
  get url(): string | undefined {
    return this.#listener.url
  }

  /** Requests being served, on the current listener and on any a rebind replaced. */
  get inFlight(): number {
    let count = this.#listener.inFlight
    for (const listener of this.#replaced) count += listener.inFlight
    return count
  }

  /** Binds the first listener; a ListenError names the address when it cannot. */
  listen(port: number, host: string): Promise<string> {
    if (this.#draining) return Promise.reject(closingError(port, host))
    return this.#listener.bind(port, host)
  }

  /**
   * Replaces the settings whole, from the next request on: a field left out is back at its
   * default. Requests in flight finish with the settings they started with.
   */
  configure(settings: ServerSettings): void {
    // A verifier is made anew only when its settings change: its cached keys stay otherwise.
    this.#auth = requestAuth(settings.auth, sameValue(settings.auth?.provider, this.#settings.auth?.provider) ? this.#auth : undefined)
    // The counts stay while their store does: only new limits take effect.
    this.#quota = RequestQuota.reconfigure(this.#quota, settings.quota, this.#quotaContext())
    this.#settings = { ...settings }
    this.#rebuildRoutes()
  }

  /** Replaces the actors routed to whole, from the next request on: one left out is not configured. */
  setServices(services: ServerServices): void {
    this.#services = { ...services }
    this.#rebuildRoutes()
  }

  /**
   * Moves the server to another address, or TLS files, with no moment where nothing listens:
   * the new listener is bound before the old one stops accepting. The old one's connections
   * finish the requests they carry (answered `Connection: close`), up to the drain timeout,
   * and close as they fall idle. If the bind fails the old listener keeps serving and the
   * ListenError names the address. At the same host and port (a certificate rotated) the files
   * are swapped in place, since a second bind there would fail; for that reason switching
   * between HTTP and HTTPS in place is refused. `tls` absent serves HTTP: pass the current
   * files to keep HTTPS. Resolves with the new URL.
   */
  async rebind(port: number, host: string, tls?: TlsFiles): Promise<string> {
    if (this.#draining) throw closingError(port, host)
    const current = this.#listener
    if (current.isAt(port, host) && current.canReplaceTls(tls)) return current.replaceTls(tls)
    const next = new Listener(tls, this.#requestIds, this.#serveRequest)
    if (current.isAt(port, host)) await this.#switchInPlace(current, next, port, host)
    else await next.bind(port, host)
    if (this.#draining) {
      // close() began while this bound, and does not know it: nothing was accepted on it yet.
      void next.stopIntake()
      throw closingError(port, host)
    }
    this.#listener = next
    this.#replaced.add(current)
    const deadline = new Deadline(this.#settings.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS)
    void current.retire(deadline.passed, shuttingDown(`the server moved to ${next.url} before this request finished`)).then(() => {
      deadline.clear()
      this.#replaced.delete(current)
    })
    return next.url!
  }

  /**
   * HTTP to HTTPS (or back), or client certificates on or off, at the address already served:
   * the new socket cannot bind beside the old one, so the old one stops listening first, and
   * connections made in the moment the new one takes to bind are refused. Its requests in
   * flight finish as a move's do (rebind retires it). If the new one cannot bind, a listener
   * with the old settings takes the address back, and the error is thrown.
   */
  async #switchInPlace(current: Listener, next: Listener, port: number, host: string): Promise<void> {
    void current.stopIntake()
    try {
      await bindSoon(next, port, host)
    } catch (error) {
      const restored = new Listener(current.tls, this.#requestIds, this.#serveRequest)
      await bindSoon(restored, port, host)
      this.#listener = restored
      this.#replaced.add(current)
      const deadline = new Deadline(this.#settings.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS)
      void current.retire(deadline.passed, shuttingDown('the server restarted its listener')).then(() => {
        deadline.clear()
        this.#replaced.delete(current)
      })
      throw error
    }
  }

  /**
   * Stops intake at once: nothing more is accepted, a request arriving on a connection already
   * open is refused with 503 `shutting_down` and Retry-After, every response still to come says
   * `Connection: close`, and idle keep-alive connections are closed. Without this, pooled
   * clients kept a stopping server busy until their keep-alive timeout.
   */
  beginDrain(): void {
    if (this.#draining) return
    this.#draining = true
    for (const listener of this.#listeners()) void listener.stopIntake()
  }

  /**
   * Drains (beginDrain), then waits for the requests and streams in flight, up to `deadlineMs`
   * (default: the `drainTimeoutMs` setting, else DEFAULT_DRAIN_TIMEOUT_MS; Infinity waits for
   * them all). At the deadline every request left is cancelled, which cancels its asks and so
   * their upstream calls, and is answered 503 `shutting_down`, or cut if its headers are out;
   * CUT_GRACE_MS later every connection left is destroyed. So it resolves by the deadline plus
   * that grace whatever handlers and clients do, and then writes server.quota's counts (an ask
   * to its store, bounded by its own timeout). A second call returns the same promise, with
   * the deadline brought forward when the new one is sooner.
   */
  close(deadlineMs: number = this.#settings.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS): Promise<void> {
    this.beginDrain()
    if (this.#closing !== undefined) {
      this.#closing.deadline.bring(deadlineMs)
      return this.#closing.done
    }
    const deadline = new Deadline(deadlineMs)
    const cut = shuttingDown('the server shut down before this request finished')
    const done = Promise.all([...this.#listeners()].map(listener => listener.retire(deadline.passed, cut))).then(() => {
      deadline.clear()
      this.#modelList.close()
      // After the last request: every count it made is written before the stores close.
      return this.#quota?.close()
    })
    this.#closing = { done, deadline }
    return done
  }

  *#listeners(): Iterable<Listener> {
    yield this.#listener
    yield* this.#replaced
  }

  #rebuildRoutes(): void {
    this.#routes = this.#buildRoutes()
    this.#router = new Router(this.#routes)
  }

  #quotaContext(): { now: () => number; log: Logger } {
    return { now: this.#deps.now ?? Date.now, log: this.#deps.log.child({ component: 'quota' }) }
  }

  async #serve(request: ServedRequest): Promise<void> {
    const { req, res } = request
    let route: Route | undefined
    this.#deps.metrics?.http.track(request, () => route)
    try {
      if (this.#corsHeaders(req, res) && req.method === 'OPTIONS') {
        res.writeHead(204).end()
        return
      }
      const method = req.method ?? 'GET'
      const pathname = request.pathname
      let found: RouteMatch<Route>
      try {
        found = this.#router.match(method, pathname)
      } catch {
        throw new HttpError(400, 'invalid_request', `the path ${pathname} is not valid percent-encoding`)
      }
      if (found === undefined) throw new HttpError(404, 'not_found', `no route for ${method} ${pathname}`)
      if (found.route === undefined) throw new HttpError(405, 'method_not_allowed', `${method} is not allowed on ${pathname}; use ${found.allowed.join(' or ')}`)
      route = found.route
      // After routing, so that the refusal is worded as the route words its errors.
      if (this.#draining) throw shuttingDown('the server is shutting down; retry on a new connection')
      // Before any handler: nothing unauthenticated reaches an actor or a provider. One
      // snapshot of server.auth for the whole request: a reload while it awaits mixes nothing.
      const auth = (request.auth = this.#auth)
      const authenticator = auth?.authenticator
      if (authenticator !== undefined && !isPublicRoute(route.path)) request.principal = await authenticator.authenticate(req, request)
      auth?.routePolicy?.authorize(pathname, request.principal)
      // Once the caller is known, before any handler: a refused request reaches no actor.
      const quota = this.#quota
      if (quota !== undefined && !isPublicRoute(route.path)) await quota.admit(request)
      if (route.inference === true) this.#services.prewakeInference?.()
      request.params = found.params
      const result = await route.handle(request)
      // Cancelled by the server, the request has had its answer.
      if (result !== HANDLED && !request.cancelled) sendJson(res, 200, result)
    } catch (error) {
      const errors = route?.errors
      const failure = errors === undefined ? toHttpError(error) : errors.toHttp(error)
      if (failure.status >= 500 && failure.code !== 'cancelled') this.#deps.log.warn({ err: error, request_id: request.id, method: req.method, url: req.url, code: failure.code, principal: request.principal?.principal }, 'request failed')
      // Refusals are the client's to fix and may come in floods: seen only at debug.
      else if (failure.status === 401 || failure.status === 403) this.#deps.log.debug({ request_id: request.id, method: req.method, url: req.url, code: failure.code, principal: request.principal?.principal }, 'request refused')
      if (!request.cancelled) sendError(res, failure, errors?.body(failure))
    }
  }

  /**
   * server.cors, on every answer; true when the request's Origin is allowed, whose preflight
   * (OPTIONS) `#serve` then answers 204. An origin not allowed gets no Access-Control-* header,
   * so its browser refuses the answer; its preflight goes on to routing (405).
   *
   * Access-Control-Allow-Credentials is never sent: troupe's credentials are a Bearer token in
   * Authorization, which a cross-origin fetch sends in the default credentials mode once the
   * preflight allows the header; cookies and client certificates are refused cross-origin
   * (browsers refuse them beside `*` in any case: the Fetch standard's CORS check).
   */
  #corsHeaders(req: IncomingMessage, res: ServerResponse): boolean {
    const cors = this.#settings.cors
    const origin = req.headers.origin
    if (cors === undefined || cors === false || origin === undefined) return false
    // A list makes the answer depend on Origin: a cache must not give one origin's answer to another.
    if (cors !== true) {
      res.setHeader('vary', 'Origin')
      if (!cors.allow_origins.includes(origin) && !cors.allow_origins.includes('*')) return false
    }
    res.setHeader('access-control-allow-origin', cors === true ? '*' : origin)
    res.setHeader('access-control-expose-headers', CORS_EXPOSED_HEADERS)
    if (req.method === 'OPTIONS') {
      res.setHeader('access-control-allow-methods', 'GET, POST, DELETE, OPTIONS')
      res.setHeader('access-control-allow-headers', CORS_ALLOWED_HEADERS)
      res.setHeader('access-control-max-age', CORS_MAX_AGE_S)
    }
    return true
  }

  #body<S extends z.ZodType>(schema: S, request: Request): Promise<z.infer<S>> {
    return readJson(request.req, this.#settings.maxBodyBytes).then(body => validate(schema, body, 'body'))
  }

  #buildRoutes(): Route[] {
    const { models } = this.#deps
    return [
      { method: 'GET', path: '/v1/version', api: 'inspect', handle: async () => ({ version: this.#deps.version, image_name: this.#settings.imageName }) },
      ...runtimeRoutes({
        system: this.#deps.system,
        reconciler: () => this.#services.reconciler,
        providers: () => this.#services.providers,
        models: () => this.#modelList.current(),
        mayRead: (request, model) => request.principal === undefined || accessPolicyOf(request).allows('read', modelResource(model), request.principal),
      }),
      { method: 'GET', path: '/v1/inspect/routes', api: 'inspect', handle: async ({ query }) => ({ data: this.#listRoutes(validate(inspectRoutesQuery, Object.fromEntries(query), 'query').api_filter) }) },
      { method: 'GET', path: '/v1/inspect/actors', api: 'inspect', handle: () => this.#deps.system.inspect() },
      ...(this.#deps.metrics === undefined ? [] : metricsRoutes(this.#deps.metrics)),
      ...(this.#deps.admin === undefined ? [] : adminRoutes(this.#deps.admin)),
      { method: 'GET', path: '/v1/models', api: 'models', handle: request => this.#listModels(request) },
      {
        method: 'GET',
        path: '/v1/models/{model_id:path}',
        api: 'models',
        handle: async request => this.#retrieveModel(request.params['model_id']!, request),
      },
      {
        method: 'POST',
        path: '/v1/models',
        api: 'models',
        handle: async request => {
          const input = await this.#body(registerModelBody, request)
          authorizeCreate(accessPolicyOf(request), { type: 'model', identifier: input.model_id }, request.principal)
          const owner = ownerOf(request.principal)
          const model = await models.ask<Model>({ type: 'register', model: input, ...(owner === undefined ? {} : { owner }) })
          // What the provider serves is checked again now, so the model's availability shows soon.
          this.#services.reconciler?.tell({ type: 'invalidate', reason: 'model_registered', provider_id: model.provider_id })
          const served = await this.#modelList.refresh()
          return openAiModel(model, served.runtime[model.provider_id])
        },
      },
      {
        method: 'DELETE',
        path: '/v1/models/{model_id:path}',
        api: 'models',
        handle: async request => {
          const id = request.params['model_id']!
          const user = request.principal
          // Checked against one owner, removed only while the model still has it: one registered
          // anew by another in between is not deleted (the table answers null, as for none).
          let expectOwner: ModelOwner | null | undefined
          if (user !== undefined) {
            const model = await models.ask<Model | null>({ type: 'get', model_id: id })
            if (model === null) throw modelNotFound(id)
            authorizeAction(accessPolicyOf(request), 'delete', modelResource(model), user, () => modelNotFound(id))
            expectOwner = model.owner ?? null
          }
          const removed = await models.ask<Model | null>({ type: 'unregister', model_id: id, ...(expectOwner === undefined ? {} : { expectOwner }) })
          if (removed === null) throw modelNotFound(id)
          this.#services.reconciler?.tell({ type: 'invalidate', reason: 'model_unregistered', provider_id: removed.provider_id })
          await this.#modelList.refresh()
          return { id, object: 'model', deleted: true }
        },
      },
      { method: 'POST', path: '/v1/chat/completions', api: 'inference', inference: true, handle: request => this.#chat(request) },
      {
        method: 'POST',
        path: '/v1/completions',
        api: 'inference',
        inference: true,
        handle: request => this.#completion(request),
      },
      {
        method: 'POST',
        path: '/v1/embeddings',
        api: 'inference',
        inference: true,
        handle: async request => {
          const body = await this.#body(embeddingsBody, request)
          return this.#infer('embeddings', body, await this.#routeFor(request, body, 'embedding'), request)
        },
      },
      ...storedCompletionRoutes(() => this.#inferenceStore()),
      ...conversationRoutes(() => this.#conversations(), this.#settings.maxBodyBytes),
      ...this.#workflowRoutes(),
    ]
  }

  /** The LlamaIndex Workflows server protocol, at the root and under /deployments/{image_name} as llama-agents serves it. */
  #workflowRoutes(): Route[] {
    const { workflowsContextSecret, imageName, maxBodyBytes } = this.#settings
    const api = new WorkflowsApi({ workflows: this.#services.workflows ?? [], contextSecret: workflowsContextSecret, maxBodyBytes, log: this.#deps.log })
    return [...api.routes(''), ...api.routes(`/deployments/${encodeURIComponent(imageName)}`)]
  }

  #conversations(): ActorRef<ConversationsMessage> {
    const conversations = this.#services.conversations
    if (conversations === undefined) throw new HttpError(404, 'not_configured', 'conversations need storage.stores.conversations in the config')
    return conversations
  }

  #inferenceStore(): ActorRef<InferenceStoreMessage> {
    const store = this.#services.inferenceStore
    if (store === undefined) throw new HttpError(404, 'not_configured', 'stored chat completions need storage.stores.inference in the config')
    return store
  }

  /**
   * A registered model, or `provider_id/model` for a configured provider: whatever routes is
   * retrievable, shown with whether its provider serves it now. An authenticated caller gets
   * what inference would route for them (resolveModel, then their read check); anything else is
   * the one model-not-found answer.
   */
  async #retrieveModel(id: string, request: Request): Promise<Record<string, unknown>> {
    const user = request.principal
    if (user !== undefined) {
      const served = await this.#modelList.current()
      const resolved = resolveModel(served, id)
      if (resolved === undefined || !accessPolicyOf(request).allows('read', resolved.resource, user)) throw modelNotFound(id)
      const model = served.byId.get(id)
      if (model !== undefined) return openAiModel(model, served.runtime[model.provider_id])
      const { providerId, providerModelId } = providerModelOf(id)!
      return servedModelView(providerId, providerModelId, served.runtime[providerId])
    }
    const model = await this.#deps.models.ask<Model | null>({ type: 'get', model_id: id })
    const served = await this.#modelList.current()
    if (model !== null) return openAiModel(model, served.runtime[model.provider_id])
    const direct = providerModelOf(id)
    if (direct !== undefined && this.#services.providers?.has(direct.providerId) === true) return servedModelView(direct.providerId, direct.providerModelId, served.runtime[direct.providerId])
    throw modelNotFound(id)
  }

  /**
   * Where an inference request goes. Without a caller, by the watched registry (undefined while
   * no watch is live: the table routes). With one, as llama-stack does, only a model they may
   * read routes: the id is resolved in one listing (the watched one, else one asked for now),
   * checked, and routed from that same listing, so the model checked is the model used; the
   * table, when it routes (no providers here), is held to it by `expect`.
   */
  async #routeFor(request: Request, body: { model: string }, needs: 'llm' | 'embedding'): Promise<CheckedRoute> {
    const user = request.principal
    if (user === undefined) return { route: this.#route(body, needs), expect: undefined }
    const served = this.#modelList.live() ?? (await this.#modelList.refresh())
    const resolved = resolveModel(served, body.model)
    if (resolved === undefined || !accessPolicyOf(request).allows('read', resolved.resource, user)) throw modelNotFound(body.model)
    const providers = this.#services.providers
    const route = providers === undefined ? undefined : routeModel(served.byId, providers, body, needs, served.runtime, resolved.checked)
    return { route, expect: resolved.checked }
  }

  /** The route from the watched registry; undefined while no watch is live, and the table routes. */
  #route(body: { model: string }, needs: 'llm' | 'embedding'): ModelRoute | undefined {
    const providers = this.#services.providers
    if (providers === undefined) return undefined
    const served = this.#modelList.live()
    return served === undefined ? undefined : routeModel(served.byId, providers, body, needs, served.runtime)
  }

  /** An inference ask along `route`, or through the models routing table (held to `expect`) when there is none. */
  #infer<R extends { model?: string }>(type: 'chat' | 'completion' | 'embeddings', body: { model: string }, { route, expect }: CheckedRoute, request: Request): Promise<R> {
    if (route === undefined) return this.#deps.models.ask<R>({ type, request: body, request_id: request.id, ...(expect === undefined ? {} : { expect }) } as ModelsMessage, { timeoutMs: Infinity, cancellation: request })
    return askRoute<R>(route, type, request, request.id)
  }

  async #chat(request: Request): Promise<unknown> {
    const body = await this.#body(chatCompletionBody, request)
    const route = await this.#routeFor(request, body, 'llm')
    if (body.stream !== true) {
      const completion = await this.#infer<ChatCompletion>('chat', body, route, request)
      await this.#record(completion, body, request)
      return completion
    }
    request.slots?.hold('streams')
    const assembled = new CompletionAssembler()
    if (await this.#relay(request, this.#stream<ChatCompletionChunk>('chat', body, route, request), chunk => assembled.add(chunk))) {
      const completion = assembled.completion()
      if (completion !== undefined) await this.#record(completion, body, request)
    }
    return HANDLED
  }

  /** A legacy completion, whole or streamed. Unlike chat completions, none is recorded in the inference store. */
  async #completion(request: Request): Promise<unknown> {
    const body = await this.#body(completionBody, request)
    const route = await this.#routeFor(request, body, 'llm')
    if (body.stream !== true) return this.#infer<TextCompletion>('completion', body, route, request)
    request.slots?.hold('streams')
    await this.#relay(request, this.#stream<TextCompletion>('completion', body, route, request))
    return HANDLED
  }

  /** An inference stream along `route`, or through the models routing table (held to `expect`) when there is none. */
  #stream<C extends { model?: string }>(type: 'chat' | 'completion', body: { model: string }, { route, expect }: CheckedRoute, request: Request): AsyncIterable<C> {
    if (route === undefined) return this.#deps.models.stream<C>({ type, request: body, request_id: request.id, ...(expect === undefined ? {} : { expect }) } as ModelsMessage, { cancellation: request })
    return streamRoute<C>(route, type, request, request.id)
  }

  /**
   * Relays `chunks` to the client as server-sent events, passing each to `each` first. Nothing
   * is sent before the first chunk, so a failure there rejects and is answered as a plain JSON
   * error; after it, a failure ends the stream with an error frame. Resolves true once the
   * stream has ended with [DONE], false when it failed part way.
   */
  async #relay<C>(request: Request, chunks: AsyncIterable<C>, each?: (chunk: C) => void): Promise<boolean> {
    const iterator = chunks[Symbol.asyncIterator]()
    const first = await iterator.next()
    const sse = new SseWriter(request.res)
    try {
      for (let step = first; !step.done; step = await iterator.next()) {
        each?.(step.value)
        await sse.send(step.value)
      }
    } catch (error) {
      if (request.cancelled) return false
      const failure = toHttpError(error)
      // The 200 is out: the server's 'request failed' line never sees this one.
      this.#deps.log.warn({ err: error, request_id: request.id, method: request.req.method, url: request.req.url, code: failure.code, principal: request.principal?.principal }, 'stream failed part way')
      sse.fail(failure)
      return false
    }
    sse.done()
    return true
  }

  /**
   * llama-stack's route listing: each route with the types of the configured providers of its
   * API, none for the APIs troupe serves itself (llama-stack lists none for its own too), and
   * troupe's `api`. `apiFilter` is an API level: the level of a route is its path's first
   * segment; one outside the versioned tree (the workflows protocol) is listed at every level,
   * as llama-stack lists the routes of a router without a prefix. No route is deprecated, so
   * `deprecated` lists none.
   */
  #listRoutes(apiFilter: 'v1' | 'v1alpha' | 'v1beta' | 'deprecated' | undefined): Array<{ route: string; method: string; provider_types: string[]; api: string }> {
    if (apiFilter === 'deprecated') return []
    const providerTypes = new Map<string, string[]>()
    for (const { api, providerType } of this.#services.providers?.values() ?? []) providerTypes.set(api, [...(providerTypes.get(api) ?? []), providerType])
    return this.#routes
      .filter(route => {
        if (apiFilter === undefined) return true
        const level = /^\/(v1(?:alpha|beta)?)\//.exec(route.path)?.[1]
        return level === undefined || level === apiFilter
      })
      .map(route => ({ route: route.path, method: route.method, provider_types: providerTypes.get(route.api) ?? [], api: route.api }))
  }

  /** Waits while the inference store's queue is full: that slows callers, it never drops a record. Owned by the caller, when authenticated. */
  async #record(completion: ChatCompletion, body: ChatCompletionBody, request: Request): Promise<void> {
    const owner = ownerOf(request.principal)
    await this.#services.inferenceStore?.ask({ type: 'record', completion: { ...completion }, messages: body.messages, ...(owner === undefined ? {} : { owner }) }, { timeoutMs: Infinity })
  }

  /**
   * The list is kept as a string, which node:http sends in one write with the headers; a Buffer
   * body is written beside them, which served 3–10% fewer lists a second. An authenticated
   * caller gets the models they may read.
   */
  async #listModels(request: Request): Promise<typeof HANDLED> {
    const served = await this.#modelList.current()
    const user = request.principal
    const { body, bytes } = user === undefined ? served : this.#modelList.readableBy(served, user, accessPolicyOf(request))
    sendEncoded(request.res, 200, body, bytes)
    return HANDLED
  }
}

/** An inference route, and what the table is held to when it routes instead (undefined route). */
interface CheckedRoute {
  readonly route: ModelRoute | undefined
  readonly expect: CheckedModel | undefined
}

/** server.auth compiled for requests; `kept`'s authenticator (and its cached keys) stays when given. */
function requestAuth(settings: AuthSettings | undefined, kept: RequestAuth | undefined): RequestAuth | undefined {
  if (settings === undefined) return undefined
  const authenticator = kept !== undefined ? kept.authenticator : settings.provider === undefined ? undefined : createAuthenticator(settings.provider)
  return { authenticator, routePolicy: settings.routePolicy, accessPolicy: settings.accessPolicy }
}

function closingError(port: number, host: string): ListenError {
  const address = addressOf(port, host)
  return new ListenError('server_closing', address, `cannot listen on ${address}: the server is closing`)
}

function addressOf(port: number, host: string): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`
}

/** 503 `shutting_down`: the client should come back on a new connection, which this one will not be. */
function shuttingDown(message: string): HttpError {
  return new HttpError(503, 'shutting_down', message, null, { 'retry-after': String(RETRY_AFTER_S), connection: 'close' })
}

/**
 * Binds, retrying for a moment while the address is still in use: a socket closed just before
 * releases its port as its handle finishes closing, a tick or so later.
 */
async function bindSoon(listener: Listener, port: number, host: string): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await listener.bind(port, host)
    } catch (error) {
      if (!(error instanceof ListenError && error.code === 'EADDRINUSE') || attempt >= 20) throw error
      await new Promise(resolve => setTimeout(resolve, 10))
    }
  }
}

/**
 * One bound http(s) server and the requests it is serving. It is retired rather than closed:
 * it stops accepting, every response still to come says `Connection: close`, and connections
 * close as they fall idle, so keep-alive clients reconnect (to the new listener after a rebind)
 * instead of being cut mid-response; only at a deadline is what is left cut.
 *
 * Idle connections are closed here, not by node's closeIdleConnections (which http's close()
 * calls): that one counts a response as done once it has ended, not once it has been flushed,
 * and so destroys a connection still sending a large body to a slow client.
 */
class Listener {
  readonly server: Server
  /** The same server, typed for what only HTTPS has; undefined for HTTP. */
  readonly #https: HttpsServer | undefined
  readonly #requests = new Set<ServedRequest>()
  /** Requests in flight on each open connection, by the socket they arrive on (the TLS socket under HTTPS). */
  readonly #connections = new Map<Socket, number>()
  /** Every TCP socket accepted and still open, TLS handshakes included: what a deadline destroys. */
  readonly #sockets = new Set<Socket>()
  #tls: TlsFiles | undefined
  #bound: { readonly port: number; readonly host: string; readonly url: string } | undefined
  /** Settles once the server has stopped accepting and its last connection has closed. */
  #stopped: Promise<void> | undefined
  /** Sockets answered with an error node:http's parser raised, closing once the client has read it. */
  readonly #refused = new WeakSet<Socket>()

  readonly #ids: RequestIds

  constructor(tls: TlsFiles | undefined, ids: RequestIds, serve: (request: ServedRequest) => void) {
    this.#tls = tls
    this.#ids = ids
    const accept = (req: IncomingMessage, res: ServerResponse): void => {
      const request = new ServedRequest(req, res, ids.of(req.headers))
      // Set before any handler writes its head: every answer carries it, errors included.
      res.setHeader(REQUEST_ID_HEADER, request.id)
      this.#requests.add(request)
      const socket = req.socket
      const inFlight = this.#connections.get(socket)
      if (inFlight !== undefined) this.#connections.set(socket, inFlight + 1)
      res.once('close', () => this.#settled(request, socket))
      if (this.#stopped !== undefined) res.setHeader('connection', 'close')
      // RFC 9112 §3.2, checked here rather than by node, whose answer has no error body.
      if (req.headers.host === undefined && req.httpVersion === '1.1') {
        res.setHeader('connection', 'close')
        sendError(res, NO_HOST)
      } else serve(request)
    }
    const options = { keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS, requireHostHeader: false }
    this.#https = tls === undefined ? undefined : createHttpsServer({ ...options, ...tlsOptions(tls) }, accept)
    this.server = this.#https ?? createServer(options, accept)
    this.server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket)
      socket.once('close', () => this.#sockets.delete(socket))
    })
    this.server.on(tls === undefined ? 'connection' : 'secureConnection', (socket: Socket) => {
      this.#connections.set(socket, 0)
      socket.once('close', () => this.#connections.delete(socket))
      // Accepted before intake stopped, ready only after: there is nothing it may send.
      if (this.#stopped !== undefined) socket.destroySoon()
    })
    this.server.on('clientError', (error: NodeJS.ErrnoException & { reason?: string }, socket: Socket) => this.#refuse(error, socket))
    // Answered by node with a bare 417, or (CONNECT) with a closed connection, without these.
    this.server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
      res.setHeader('x-request-id', ids.of(req.headers))
      sendError(res, new HttpError(417, 'expectation_failed', `Expect: ${req.headers.expect ?? ''} is not supported; only 100-continue is`))
    })
    this.server.on('connect', (req: IncomingMessage, socket: Socket) => {
      refuseUnparsed(socket, rawErrorResponse(new HttpError(405, 'method_not_allowed', `CONNECT ${req.url ?? ''}: troupe is not a proxy`), ids.of(req.headers)))
    })
  }

  /**
   * A request node:http refused before it became one (bad syntax, headers too large, a
   * timeout): answered in OpenAI's error shape, where node would send a bare status line. node
   * calls this again for each chunk that arrives after the first error, on a socket answered
   * already: refuseUnparsed closes it.
   */
  #refuse(error: NodeJS.ErrnoException & { reason?: string }, socket: Socket): void {
    if (this.#refused.has(socket)) return
    const answer = clientErrorOf(error)
    // A connection that failed, or a response already part way out: there is no one, or no room, to answer.
    if (answer === undefined || !socket.writable || socket.destroyed || this.#answering(socket)) {
      socket.destroy()
      return
    }
    this.#refused.add(socket)
    // A request whose body could not be parsed is over; its handler must not answer too.
    for (const request of this.#requests) if (request.req.socket === socket) request.cancel()
    // Its headers were never parsed: whatever id the client sent is unknown here.
    refuseUnparsed(socket, rawErrorResponse(answer, this.#ids.next()))
  }

  /** Whether a response on `socket` has begun: bytes of it may be on the wire. */
  #answering(socket: Socket): boolean {
    for (const request of this.#requests) if (request.req.socket === socket && request.res.headersSent) return true
    return false
  }

  get url(): string | undefined {
    return this.#bound?.url
  }

  get inFlight(): number {
    return this.#requests.size
  }

  bind(port: number, host: string): Promise<string> {
    const address = addressOf(port, host)
    return new Promise((resolve, reject) => {
      const failed = (error: NodeJS.ErrnoException): void => {
        const code = error.code ?? 'ELISTEN'
        const why = code === 'EADDRINUSE' ? 'the address is already in use' : code === 'EACCES' ? 'permission denied' : error.message
        reject(new ListenError(code, address, `cannot listen on ${address}: ${why}`, { cause: error }))
      }
      this.server.once('error', failed)
      this.server.listen(port, host, () => {
        this.server.off('error', failed)
        const bound = this.server.address() as AddressInfo
        const url = `${this.#tls === undefined ? 'http' : 'https'}://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`
        this.#bound = { port: bound.port, host, url }
        resolve(url)
      })
    })
  }

  /** Whether a bind to `port` and `host` would be this listener's own address (port 0 never is). */
  isAt(port: number, host: string): boolean {
    return this.#bound !== undefined && port === this.#bound.port && host === this.#bound.host
  }

  /**
   * New TLS files for the connections to come, on the socket already listening. HTTP to HTTPS
   * cannot be switched this way, nor client certificates on or off: both are fixed when the
   * server is made.
   */
  replaceTls(tls: TlsFiles | undefined): string {
    const url = this.#bound!.url
    if (this.#tls === undefined && tls === undefined) return url
    if (!this.canReplaceTls(tls)) throw new TypeError(`${url}: HTTP and HTTPS, or client certificates on and off, cannot be switched on a listening socket`)
    this.#https!.setSecureContext(tlsOptions(tls!))
    this.#tls = tls
    return url
  }

  /** Whether replaceTls can apply `tls` here: new files for HTTPS staying HTTPS, client certificates staying as they are. */
  canReplaceTls(tls: TlsFiles | undefined): boolean {
    const current = this.#tls
    if (current === undefined || tls === undefined) return current === tls
    return this.#https !== undefined && (current.ca === undefined) === (tls.ca === undefined)
  }

  get tls(): TlsFiles | undefined {
    return this.#tls
  }

  /** Stops accepting, tells the requests in flight to close their connections, and closes the idle ones. */
  stopIntake(): Promise<void> {
    if (this.#stopped === undefined) {
      // net's close, not http's: see the class comment. It calls back with ERR_SERVER_NOT_RUNNING
      // when the server never listened, which is stopped too.
      this.#stopped = new Promise(resolve => netServerClose.call(this.server, () => resolve()))
      for (const request of this.#requests) if (!request.res.headersSent) request.res.setHeader('connection', 'close')
      for (const [socket, inFlight] of this.#connections) if (inFlight === 0) socket.destroySoon()
    }
    return this.#stopped
  }

  /**
   * Stops intake and waits for the connections to close. At `deadline` the requests left are
   * cancelled and answered with `cut` (or their connection destroyed once headers are out);
   * CUT_GRACE_MS later every connection left is destroyed.
   */
  async retire(deadline: Promise<void>, cut: HttpError): Promise<void> {
    const stopped = this.stopIntake()
    if (await Promise.race([stopped.then(() => true), deadline.then(() => false)])) return this.#release()
    for (const request of [...this.#requests]) {
      // Complete, or cancelled already: by the client, or by an earlier deadline whose answer is on its way.
      if (request.res.writableFinished || request.cancelled) continue
      request.cancel()
      sendError(request.res, cut)
    }
    const grace = new Deadline(CUT_GRACE_MS)
    await Promise.race([stopped, grace.passed])
    grace.clear()
    for (const socket of this.#sockets) socket.destroy()
    this.server.closeAllConnections()
    this.#release()
  }

  #settled(request: ServedRequest, socket: Socket): void {
    this.#requests.delete(request)
    const inFlight = this.#connections.get(socket)
    if (inFlight === undefined) return
    this.#connections.set(socket, inFlight - 1)
    // destroySoon flushes what is written before it closes, unlike destroy.
    if (inFlight === 1 && this.#stopped !== undefined) socket.destroySoon()
  }

  /**
   * Once no connection is left, http's close() has nothing idle to close, and does what else
   * it does: it stops the request-timeout checks, whose interval holds the server.
   */
  #release(): void {
    this.server.close()
  }
}

const netServerClose = NetServer.prototype.close

const NO_HOST = new HttpError(400, 'bad_request', 'an HTTP/1.1 request needs a Host header')

/** How long a connection answered with a parse error stays open for its client to read the answer. */
const REFUSED_LINGER_MS = 2_000
/** How much a client may send after its request was refused as malformed before its connection is cut. */
const REFUSED_DISCARD_BYTES = 1024 * 1024

/**
 * Writes `response` and half-closes, then discards what the client still sends (read by node's
 * failed parser, or by this alone on a socket node handed over) until the client closes too, REFUSED_DISCARD_BYTES or
 * REFUSED_LINGER_MS: closing a socket with unread bytes makes the kernel reset the connection,
 * and the client would lose the answer (RFC 9112 §9.6, lingering close).
 */
function refuseUnparsed(socket: Socket, response: string): void {
  let discarded = 0
  const cut = (): void => void socket.destroy()
  const linger = setTimeout(cut, REFUSED_LINGER_MS).unref()
  const discard = (chunk: Buffer): void => {
    discarded += chunk.length
    if (discarded > REFUSED_DISCARD_BYTES) cut()
  }
  socket.on('data', discard).once('close', () => {
    clearTimeout(linger)
    socket.off('data', discard)
  })
  socket.end(response)
}

function tlsOptions(tls: TlsFiles): { cert: Buffer; key: Buffer; ca?: Buffer; requestCert?: boolean; rejectUnauthorized?: boolean } {
  return { cert: tls.cert, key: tls.key, ...(tls.ca === undefined ? {} : { ca: tls.ca, requestCert: true, rejectUnauthorized: true }) }
}

/**
 * A deadline as a promise, which a sooner one brings forward. Its timer is cleared once it is
 * no longer needed, so that it never keeps the process alive; Infinity sets none.
 */
class Deadline {
  readonly passed: Promise<void>
  #pass: () => void = () => undefined
  #at = Infinity
  #timer: NodeJS.Timeout | undefined

  constructor(ms: number) {
    this.passed = new Promise(resolve => (this.#pass = resolve))
    this.bring(ms)
  }

  /** Brings the deadline forward to `ms` from now, when that is sooner. */
  bring(ms: number): void {
    const at = Date.now() + Math.max(0, ms)
    if (!(at < this.#at)) return
    this.#at = at
    clearTimeout(this.#timer)
    this.#timer = setTimeout(this.#pass, at - Date.now())
  }

  /** Clears the timer for good: a later `bring` sets none. */
  clear(): void {
    this.#at = -Infinity
    clearTimeout(this.#timer)
  }
}
