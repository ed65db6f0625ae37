import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { z } from 'zod'
import { actorNodes, type ActorRef, type ActorSystem } from '../actor/index.js'
import type { ConversationsMessage } from '../../actors/stores/conversations.js'
import { conversationsProtocol } from '../../actors/stores/conversations.js'
import type { InferenceStoreMessage } from '../../actors/stores/inference-store.js'
import { askRoute, routeModel, streamRoute, type Model, type ModelsMessage, type ProviderEntry, type ProviderStatus, type Route as ModelRoute } from '../../actors/routing/models.js'
import type { ChatCompletion, ChatCompletionChunk } from '../../actors/providers/inference/protocol.js'
import { CompletionAssembler } from './completion-assembler.js'
import { ModelList, openAiModel } from './model-list.js'
import { HttpError, readJson, sendEncoded, sendError, sendJson, SseWriter, toHttpError, validate } from './http.js'
import { HANDLED, type Route } from './route.js'
import { Router, type RouteMatch } from './router.js'
import { ServedRequest } from './served-request.js'
import type { WorkflowEntry } from './routes/workflow-entry.js'
import { WorkflowsApi } from './routes/workflows.js'
import { chatCompletionBody, completionBody, embeddingsBody, listQuery, registerModelBody, type ChatCompletionBody } from './schemas.js'

export interface ApiDeps {
  readonly system: ActorSystem
  readonly models: ActorRef<ModelsMessage>
  /**
   * The providers the models routing table routes to, by provider_id. With them, inference is
   * routed from the registry listing this server watches and asked of the provider directly;
   * without them it always goes through the table.
   */
  readonly providers?: ReadonlyMap<string, ProviderEntry> | undefined
  /** Absent when the config has no `storage.stores.inference`: completions are not recorded. */
  readonly inferenceStore?: ActorRef<InferenceStoreMessage> | undefined
  readonly conversations?: ActorRef<ConversationsMessage> | undefined
  readonly imageName: string
  readonly version: string
  readonly log: Logger
  readonly cors?: boolean | { readonly allow_origins: readonly string[] } | undefined
  readonly maxBodyBytes: number
  /** Serve HTTPS with these; a CA also requires and checks client certificates. */
  readonly tls?: TlsFiles | undefined
  /**
   * Called when an inference request arrives, before its body is read: prewakes the threads of
   * the providers that may serve it (ActorRef.prewake), so their wake-up overlaps the body.
   */
  readonly prewakeInference?: (() => void) | undefined
  /** The configured workflows, served on the LlamaIndex Workflows server protocol. */
  readonly workflows?: readonly WorkflowEntry[] | undefined
  /** `server.workflows_context_secret`: signs the contexts clients may send back; without it they are refused. */
  readonly workflowsContextSecret?: string | undefined
}

/** PEM contents for HTTPS. */
export interface TlsFiles {
  readonly cert: Buffer
  readonly key: Buffer
  readonly ca?: Buffer
}

type Request = ServedRequest

/**
 * The OpenAI-compatible HTTP API. Inference is routed by the models routing table's registry:
 * while the server's watch of that registry is live (ModelList), it routes a request from the
 * listing with the table's own function and asks the provider directly, which spares every
 * request (and every streamed chunk) a hop through the table; otherwise it asks the table to
 * route. Bodies are validated with zod; every error is `{ "error": { code, message, param, type } }`
 * with its status (the workflow routes, routes/workflows.ts, add workflows-py's `detail`).
 */
export class ApiServer {
  readonly server: Server
  readonly routes: readonly Route[]
  readonly #router: Router<Route>
  readonly #deps: ApiDeps
  readonly #maxBody: number
  readonly #modelList: ModelList

  constructor(deps: ApiDeps) {
    this.#deps = deps
    this.#maxBody = deps.maxBodyBytes
    this.#modelList = new ModelList(deps.models, deps.log)
    this.routes = this.#routes()
    this.#router = new Router(this.routes)
    const serve = (req: IncomingMessage, res: ServerResponse): void => void this.#serve(req, res)
    const tls = deps.tls
    this.server =
      tls === undefined
        ? createServer({ keepAliveTimeout: 65_000 }, serve)
        : createHttpsServer({ keepAliveTimeout: 65_000, cert: tls.cert, key: tls.key, ...(tls.ca === undefined ? {} : { ca: tls.ca, requestCert: true, rejectUnauthorized: true }) }, serve)
  }

  listen(port: number, host: string): Promise<string> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => {
        this.server.off('error', reject)
        const address = this.server.address() as AddressInfo
        resolve(`${this.#deps.tls === undefined ? 'http' : 'https'}://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`)
      })
    })
  }

  /** Stops accepting connections, closes idle ones, and waits for requests in flight. */
  close(): Promise<void> {
    this.#modelList.close()
    return new Promise(resolve => {
      this.server.close(() => resolve())
      this.server.closeIdleConnections()
    })
  }

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const request = new ServedRequest(req, res)
    let route: Route | undefined
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
      if (route.inference === true) this.#deps.prewakeInference?.()
      request.params = found.params
      const result = await route.handle(request)
      if (result !== HANDLED) sendJson(res, 200, result)
    } catch (error) {
      const errors = route?.errors
      const failure = errors === undefined ? toHttpError(error) : errors.toHttp(error)
      if (failure.status >= 500 && failure.code !== 'cancelled') this.#deps.log.warn({ err: error, method: req.method, url: req.url, code: failure.code }, 'request failed')
      if (!request.cancelled) sendError(res, failure, errors?.body(failure))
    }
  }

  #corsHeaders(req: IncomingMessage, res: ServerResponse): boolean {
    const cors = this.#deps.cors
    const origin = req.headers.origin
    if (cors === undefined || cors === false || origin === undefined) return false
    if (cors !== true && !cors.allow_origins.includes(origin) && !cors.allow_origins.includes('*')) return false
    res.setHeader('access-control-allow-origin', cors === true ? '*' : origin)
    res.setHeader('access-control-allow-methods', 'GET, POST, DELETE, OPTIONS')
    res.setHeader('access-control-allow-headers', 'authorization, content-type')
    return true
  }

  #body<S extends z.ZodType>(schema: S, request: Request): Promise<z.infer<S>> {
    return readJson(request.req, this.#maxBody).then(body => validate(schema, body, 'body'))
  }

  #routes(): Route[] {
    const { models } = this.#deps
    return [
      { method: 'GET', path: '/v1/health', api: 'inspect', handle: ({ res }) => this.#health(res) },
      { method: 'GET', path: '/v1/version', api: 'inspect', handle: async () => ({ version: this.#deps.version, image_name: this.#deps.imageName }) },
      { method: 'GET', path: '/v1/providers', api: 'providers', handle: async () => ({ data: await models.ask<ProviderStatus[]>({ type: 'providers' }) }) },
      { method: 'GET', path: '/v1/inspect/routes', api: 'inspect', handle: async () => ({ data: this.routes.map(r => ({ method: r.method, route: r.path, api: r.api })) }) },
      { method: 'GET', path: '/v1/inspect/actors', api: 'inspect', handle: () => this.#deps.system.inspect() },
      { method: 'GET', path: '/v1/models', api: 'models', handle: ({ res }) => this.#listModels(res) },
      {
        method: 'GET',
        path: '/v1/models/{model_id}',
        api: 'models',
        handle: async ({ params }) => {
          const model = await models.ask<Model | null>({ type: 'get', model_id: params['model_id']! })
          if (model === null) throw new HttpError(404, 'model_not_found', `model '${params['model_id']}' is not registered`)
          return openAiModel(model)
        },
      },
      {
        method: 'POST',
        path: '/v1/models',
        api: 'models',
        handle: async request => {
          const model = await models.ask<Model>({ type: 'register', model: await this.#body(registerModelBody, request) })
          await this.#modelList.refresh()
          return openAiModel(model)
        },
      },
      {
        method: 'DELETE',
        path: '/v1/models/{model_id}',
        api: 'models',
        handle: async ({ params }) => {
          const id = params['model_id']!
          if (!(await models.ask<boolean>({ type: 'unregister', model_id: id }))) throw new HttpError(404, 'model_not_found', `model '${id}' is not registered`)
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
        handle: async request => {
          const body = await this.#body(completionBody, request)
          return this.#infer('completion', body, this.#route(body, 'llm'), request)
        },
      },
      {
        method: 'POST',
        path: '/v1/embeddings',
        api: 'inference',
        inference: true,
        handle: async request => {
          const body = await this.#body(embeddingsBody, request)
          return this.#infer('embeddings', body, this.#route(body, 'embedding'), request)
        },
      },
      {
        method: 'GET',
        path: '/v1/chat/completions',
        api: 'inference',
        handle: async ({ query }) => {
          const { after, limit, order, model } = validate(listQuery, Object.fromEntries(query), 'query')
          return this.#inferenceStore().ask({ type: 'list', ...defined({ after, limit, order, model }) })
        },
      },
      {
        method: 'GET',
        path: '/v1/chat/completions/{completion_id}',
        api: 'inference',
        handle: ({ params }) => this.#inferenceStore().ask({ type: 'get', id: params['completion_id']! }),
      },
      ...this.#conversationRoutes(),
      ...this.#workflowRoutes(),
    ]
  }

  /** The LlamaIndex Workflows server protocol, at the root and under /deployments/{image_name} as llama-agents serves it. */
  #workflowRoutes(): Route[] {
    const { workflows = [], workflowsContextSecret, imageName, maxBodyBytes, log } = this.#deps
    const api = new WorkflowsApi({ workflows, contextSecret: workflowsContextSecret, maxBodyBytes, log })
    return [...api.routes(''), ...api.routes(`/deployments/${encodeURIComponent(imageName)}`)]
  }

  #conversationRoutes(): Route[] {
    const call = (msg: ConversationsMessage): Promise<unknown> => {
      const conversations = this.#deps.conversations
      if (conversations === undefined) throw new HttpError(404, 'not_configured', 'conversations need storage.stores.conversations in the config')
      return conversations.ask(msg)
    }
    const shapeOf = (type: ConversationsMessage['type']) => conversationsProtocol.options.find(o => o.shape.type.value === type)!
    /** Validates a body against the fields of one conversations message. */
    const body = async (request: Request, type: ConversationsMessage['type'], fixed: Record<string, unknown>): Promise<ConversationsMessage> => {
      const raw = await readJson(request.req, this.#maxBody)
      const fields = typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? raw : { __body: raw }
      return validate(shapeOf(type), { ...fields, ...fixed, type }, 'body') as ConversationsMessage
    }
    return [
      { method: 'POST', path: '/v1/conversations', api: 'conversations', handle: async request => call(await body(request, 'create', {})) },
      { method: 'GET', path: '/v1/conversations/{conversation_id}', api: 'conversations', handle: ({ params }) => call({ type: 'get', id: params['conversation_id']! }) },
      {
        method: 'POST',
        path: '/v1/conversations/{conversation_id}',
        api: 'conversations',
        handle: async request => call(await body(request, 'update', { id: request.params['conversation_id'] })),
      },
      { method: 'DELETE', path: '/v1/conversations/{conversation_id}', api: 'conversations', handle: ({ params }) => call({ type: 'delete', id: params['conversation_id']! }) },
      {
        method: 'POST',
        path: '/v1/conversations/{conversation_id}/items',
        api: 'conversations',
        handle: async request => call(await body(request, 'addItems', { id: request.params['conversation_id'] })),
      },
      {
        method: 'GET',
        path: '/v1/conversations/{conversation_id}/items',
        api: 'conversations',
        handle: ({ params, query }) => {
          const { after, limit, order } = validate(listQuery, Object.fromEntries(query), 'query')
          return call({ type: 'listItems', id: params['conversation_id']!, ...defined({ after, limit, order }) })
        },
      },
      {
        method: 'GET',
        path: '/v1/conversations/{conversation_id}/items/{item_id}',
        api: 'conversations',
        handle: ({ params }) => call({ type: 'getItem', id: params['conversation_id']!, itemId: params['item_id']! }),
      },
      {
        method: 'DELETE',
        path: '/v1/conversations/{conversation_id}/items/{item_id}',
        api: 'conversations',
        handle: ({ params }) => call({ type: 'deleteItem', id: params['conversation_id']!, itemId: params['item_id']! }),
      },
    ]
  }

  #inferenceStore(): ActorRef<InferenceStoreMessage> {
    const store = this.#deps.inferenceStore
    if (store === undefined) throw new HttpError(404, 'not_configured', 'stored chat completions need storage.stores.inference in the config')
    return store
  }

  /** The route from the watched registry; undefined while no watch is live, and the table routes. */
  #route(body: { model: string }, needs: 'llm' | 'embedding'): ModelRoute | undefined {
    const providers = this.#deps.providers
    if (providers === undefined) return undefined
    const registry = this.#modelList.registry()
    return registry === undefined ? undefined : routeModel(registry, providers, body, needs)
  }

  /** An inference ask along `route`, or through the models routing table when there is none. */
  #infer<R extends { model?: string }>(type: 'chat' | 'completion' | 'embeddings', body: { model: string }, route: ModelRoute | undefined, request: Request): Promise<R> {
    if (route === undefined) return this.#deps.models.ask<R>({ type, request: body } as ModelsMessage, { timeoutMs: Infinity, cancellation: request })
    return askRoute<R>(route, type, request)
  }

  async #chat(request: Request): Promise<unknown> {
    const body = await this.#body(chatCompletionBody, request)
    const route = this.#route(body, 'llm')
    if (body.stream !== true) {
      const completion = await this.#infer<ChatCompletion>('chat', body, route, request)
      await this.#record(completion, body)
      return completion
    }
    const chunks =
      route === undefined
        ? this.#deps.models.stream<ChatCompletionChunk>({ type: 'chat', request: body }, { cancellation: request })
        : streamRoute<ChatCompletionChunk>(route, request)
    const iterator = chunks[Symbol.asyncIterator]()
    // Before the first chunk nothing is sent, so an early failure is still a plain JSON error.
    const first = await iterator.next()
    const sse = new SseWriter(request.res)
    const assembled = new CompletionAssembler()
    try {
      for (let step = first; !step.done; step = await iterator.next()) {
        assembled.add(step.value)
        await sse.send(step.value)
      }
    } catch (error) {
      if (!request.cancelled) sse.fail(toHttpError(error))
      return HANDLED
    }
    sse.done()
    const completion = assembled.completion()
    if (completion !== undefined) await this.#record(completion, body)
    return HANDLED
  }

  /** Waits while the inference store's queue is full: that slows callers, it never drops a record. */
  async #record(completion: ChatCompletion, body: ChatCompletionBody): Promise<void> {
    await this.#deps.inferenceStore?.ask({ type: 'record', completion: { ...completion }, messages: body.messages }, { timeoutMs: Infinity })
  }

  /**
   * The list is kept as a string, which node:http sends in one write with the headers; a Buffer
   * body is written beside them, which served 3–10% fewer lists a second.
   */
  async #listModels(res: ServerResponse): Promise<typeof HANDLED> {
    const { body, bytes } = await this.#modelList.current()
    sendEncoded(res, 200, body, bytes)
    return HANDLED
  }

  async #health(res: ServerResponse): Promise<unknown> {
    const snapshot = await this.#deps.system.inspect()
    const down = actorNodes(snapshot.root).filter(actor => actor.status !== 'running').map(actor => ({ id: actor.id, status: actor.status }))
    const providers = down.length === 0 ? await this.#deps.models.ask<ProviderStatus[]>({ type: 'providers' }) : []
    const unreachable = providers.filter(p => p.health.status !== 'ok').map(p => ({ provider_id: p.provider_id, message: p.health.status === 'ok' ? '' : p.health.message }))
    const status = down.length > 0 ? 'down' : unreachable.length > 0 ? 'degraded' : 'ok'
    sendJson(res, status === 'down' ? 503 : 200, { status, actors_down: down, unreachable_providers: unreachable })
    return HANDLED
  }
}

/** Only the keys whose value is defined (exactOptionalPropertyTypes). */
function defined<T extends Record<string, unknown>>(values: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> }
}
