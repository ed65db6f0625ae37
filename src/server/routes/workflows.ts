import type { Logger } from 'pino'
import { ActorError } from '../../actor/index.js'
import { loadWorkflow, type WorkflowDefinition } from '../../../actors/workflows/define.js'
import { isFinished, isTerminalEvent, RUN_STATUSES, type RunEvent, type RunInfo, type RunStatus, type StartReply, type WorkflowMessage } from '../../../actors/workflows/protocol.js'
import { errorFields, HttpError, readJson, toHttpError } from '../http.js'
import { HANDLED, type Route, type RouteErrors } from '../route.js'
import type { ServedRequest } from '../served-request.js'
import type { WorkflowEntry } from './workflow-entry.js'
import { eventSchemas, representation, schemaOf } from './workflow-schemas.js'
import { cursorOf, envelope, flag, handlerJson, reply, RunEventWriter, sentEvent, startMessage, type HandlerJson } from './workflow-wire.js'

/**
 * The LlamaIndex Workflows server protocol (workflows-py's WorkflowServer, which the npm client
 * `@llamaindex/workflows-client` speaks) over troupe's workflow actors. A handler is a run:
 * handler_id and run_id are both the run's id. Runs of every workflow share the runs tables,
 * so any workflow actor answers `get` and `list`; events, sends and cancels go to the actor of
 * the run's own workflow.
 *
 * Where troupe differs: a run started with `handler_id` continues that run's session (its
 * ctx.state) under a new handler_id of its own; the context a finished handler carries is a
 * signed `{ state, signature }` (workflow-context.ts), accepted back only with a valid
 * signature; `include_internal` and an event's `step` are accepted and ignored (a function
 * workflow has no internal events and one step).
 */

export interface WorkflowsApiDeps {
  readonly workflows: readonly WorkflowEntry[]
  /** `server.workflows_context_secret`; without it handlers carry no context and client contexts are refused. */
  readonly contextSecret: string | undefined
  readonly maxBodyBytes: number
  readonly log: Logger
  /** An SSE stream silent this long gets a comment line, so proxies keep it open. */
  readonly heartbeatMs?: number
}

const DEFAULT_HEARTBEAT_MS = 25_000
/** Codes that say one workflow actor cannot answer right now, where another may. */
const UNAVAILABLE = new Set(['restarting', 'no_such_actor', 'stopped', 'crashed'])
/** Codes that say the run's actor is coming back (its worker died): a wait is asked again. */
const COMING_BACK = new Set(['restarting', 'crashed'])
/** A wait for a run is asked again this many times while its actor restarts (about a minute of backoff). */
const MAX_WAIT_RETRIES = 64

/**
 * Errors on these routes: workflows-py clients read `detail`, troupe's read `error`. A full
 * queue is 429 with Retry-After; a run that changed owners while being cancelled, 409.
 */
const workflowErrors: RouteErrors = {
  toHttp(error) {
    if (error instanceof ActorError && error.code === 'conflict') return new HttpError(409, 'conflict', error.message)
    if (error instanceof ActorError && error.code === 'backpressure') {
      const retryAfterMs = (error.data as { retryAfterMs?: unknown } | undefined)?.retryAfterMs
      const seconds = typeof retryAfterMs === 'number' ? Math.max(1, Math.ceil(retryAfterMs / 1000)) : 1
      return new HttpError(429, 'backpressure', error.message, null, { 'retry-after': String(seconds) })
    }
    return toHttpError(error)
  },
  body: error => JSON.stringify({ detail: error.message, error: errorFields(error) }),
}

export class WorkflowsApi {
  readonly #entries: ReadonlyMap<string, WorkflowEntry>
  readonly #deps: WorkflowsApiDeps
  /** Definitions loaded on this thread for /schema, /events and /representation, by workflow name. */
  readonly #definitions = new Map<string, Promise<WorkflowDefinition<unknown, unknown>>>()

  constructor(deps: WorkflowsApiDeps) {
    this.#deps = deps
    this.#entries = new Map(deps.workflows.map(entry => [entry.name, entry]))
  }

  /** Every route of the protocol under `prefix` ('' for the root). */
  routes(prefix: string): Route[] {
    const route = (method: 'GET' | 'POST', path: string, handle: (request: ServedRequest) => Promise<unknown>): Route => ({
      method,
      path: `${prefix}${path}`,
      api: 'workflows',
      handle,
      errors: workflowErrors,
    })
    const name = (request: ServedRequest): string => request.params['name']!
    const id = (request: ServedRequest): string => request.params['handler_id']!
    return [
      route('GET', '/health', async () => ({ status: 'healthy' })),
      route('GET', '/workflows', async () => ({ workflows: [...this.#entries.keys()] })),
      route('GET', '/workflows/{name}/schema', async request => schemaOf(await this.#definition(name(request)))),
      route('GET', '/workflows/{name}/events', async request => ({ events: eventSchemas(await this.#definition(name(request))) })),
      route('GET', '/workflows/{name}/representation', async request => representation(name(request), await this.#definition(name(request)))),
      route('POST', '/workflows/{name}/run', request => this.#run(request, name(request))),
      route('POST', '/workflows/{name}/run-nowait', request => this.#runNowait(request, name(request))),
      route('GET', '/handlers', request => this.#list(request)),
      route('GET', '/handlers/{handler_id}', async request => this.#answer(request, await this.#find(id(request)), false)),
      route('GET', '/results/{handler_id}', async request => this.#answer(request, await this.#find(id(request)), true)),
      route('POST', '/handlers/{handler_id}/cancel', request => this.#cancel(request, id(request))),
      route('GET', '/events/{handler_id}', request => this.#stream(request, id(request))),
      route('POST', '/events/{handler_id}', request => this.#send(request, id(request))),
    ]
  }

  // ---- runs ----------------------------------------------------------------------------------

  /** The start message of a run or run-nowait body (see startMessage); the actor's thread is woken while the body is read. */
  async #startMessage(request: ServedRequest, entry: WorkflowEntry): Promise<Extract<WorkflowMessage, { type: 'start' }>> {
    entry.ref.prewake()
    const body = await readJson(request.req, this.#deps.maxBodyBytes)
    return startMessage(body, request.req.headers['idempotency-key'], this.#deps.contextSecret)
  }

  /**
   * Starts the run and answers its handler at once. With server.quota's max_concurrent_runs the
   * run holds one of its client's slots until it finishes, which a wait of its own, not tied to
   * this request, sees.
   */
  async #runNowait(request: ServedRequest, name: string): Promise<HandlerJson> {
    const entry = this.#entry(name)
    const slot = request.slots?.hold('runs')
    const { run } = await entry.ref.ask<StartReply>(await this.#startMessage(request, entry), { cancellation: request })
    if (slot !== undefined && !isFinished(run.status)) slot.until(this.#waitFor(entry, run.runId))
    return handlerJson(run, this.#deps.contextSecret)
  }

  /**
   * Starts the run and waits for it, in one message streamed back twice (admitted, finished): 200
   * with the handler once completed, 500 with it when it failed or was cancelled. If the stream
   * breaks after the run was admitted (its actor's worker died), the run goes on: it is waited
   * for again.
   */
  async #run(request: ServedRequest, name: string): Promise<typeof HANDLED> {
    const entry = this.#entry(name)
    request.slots?.hold('runs')
    const message = await this.#startMessage(request, entry)
    let admitted: RunInfo | undefined
    let done: RunInfo | undefined
    try {
      for await (const answer of entry.ref.stream<StartReply | RunInfo>(message, { cancellation: request })) {
        if (admitted === undefined) admitted = (answer as StartReply).run
        else done = answer as RunInfo
      }
    } catch (error) {
      if (admitted === undefined || !(error instanceof ActorError && COMING_BACK.has(error.code))) throw error
    }
    if (admitted === undefined) throw new HttpError(500, 'internal', 'the workflow actor answered nothing')
    done ??= isFinished(admitted.status) ? admitted : await this.#waitFor(entry, admitted.runId, request)
    return reply(request.res, done.status === 'completed' ? 200 : 500, handlerJson(done, this.#deps.contextSecret))
  }

  /**
   * Waits for a run to finish, for `request` (cancelled with it) or, without one, for as long as
   * the run goes. The run outlives its actor: when the actor's worker dies the actor restarts
   * and resumes it, so a wait cut short that way is asked again, up to a bound.
   */
  async #waitFor(entry: WorkflowEntry, runId: string, request?: ServedRequest): Promise<RunInfo> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await entry.ref.ask<RunInfo>({ type: 'wait', runId }, { timeoutMs: Infinity, ...(request === undefined ? {} : { cancellation: request }) })
      } catch (error) {
        if (!(error instanceof ActorError && COMING_BACK.has(error.code)) || request?.cancelled === true || attempt >= MAX_WAIT_RETRIES) throw error
        await new Promise(resolve => setTimeout(resolve, Math.min(10 * 2 ** attempt, 1000)))
      }
    }
  }

  /** 202 while running, 200 completed, 500 failed or cancelled; /results/{id} gives the stop event's value as `result`. */
  #answer(request: ServedRequest, run: RunInfo, flatten: boolean): typeof HANDLED {
    const handler = handlerJson(run, this.#deps.contextSecret)
    const status = run.status === 'running' ? 202 : run.status === 'completed' ? 200 : 500
    return reply(request.res, status, flatten ? { ...handler, result: run.status === 'completed' ? run.result : null } : handler)
  }

  async #list(request: ServedRequest): Promise<{ handlers: HandlerJson[] }> {
    const query = request.query
    const given = query.getAll('status')
    const status = given.filter((value): value is RunStatus => (RUN_STATUSES as readonly string[]).includes(value))
    // Only unknown statuses asked for: nothing has one.
    if (this.#entries.size === 0 || (given.length > 0 && status.length === 0)) return { handlers: [] }
    const workflow = query.getAll('workflow_name')
    const message: WorkflowMessage = { type: 'list', ...(status.length > 0 ? { status } : {}), ...(workflow.length > 0 ? { workflow } : {}) }
    const runs = await this.#askAny<RunInfo[]>(message, request)
    return { handlers: runs.map(run => handlerJson(run, this.#deps.contextSecret)) }
  }

  async #cancel(request: ServedRequest, runId: string): Promise<{ status: 'cancelled' | 'deleted' }> {
    const run = await this.#find(runId)
    const purge = request.query.get('purge') === 'true'
    const status = await this.#actorOf(run).ask<'cancelled' | 'deleted'>({ type: 'cancel', runId, purge }, { cancellation: request })
    return { status }
  }

  async #send(request: ServedRequest, runId: string): Promise<{ status: 'sent' }> {
    const event = sentEvent(await readJson(request.req, this.#deps.maxBodyBytes))
    const run = await this.#find(runId)
    return this.#actorOf(run).ask<{ status: 'sent' }>({ type: 'send', runId, event }, { cancellation: request })
  }

  // ---- events --------------------------------------------------------------------------------

  /**
   * The run's events after the cursor, as SSE (`id:` is the sequence) or NDJSON, ending after
   * its terminal event. A stream that ends any other way (the run's actor stopped, or failed
   * part way) is cut rather than ended, so that an SSE client reconnects with Last-Event-ID
   * instead of taking the stream for complete.
   */
  async #stream(request: ServedRequest, runId: string): Promise<typeof HANDLED> {
    const { query, req, res } = request
    const sse = flag(query.get('sse'), true)
    const qualified = flag(query.get('include_qualified_name'), true)
    let after = cursorOf(query.get('after_sequence'), 'after_sequence')
    const lastEventId = req.headers['last-event-id']
    if (sse && typeof lastEventId === 'string' && lastEventId.trim() !== '') after = cursorOf(lastEventId.trim(), 'Last-Event-ID')
    const run = await this.#find(runId)
    const from = after === 'now' ? run.lastSeq : after
    if (isFinished(run.status) && from >= run.lastSeq) {
      res.writeHead(204).end()
      return HANDLED
    }
    request.slots?.hold('streams')
    const events = this.#actorOf(run).stream<RunEvent>({ type: 'events', runId, after: from }, { cancellation: request })
    const writer = new RunEventWriter(res, sse, this.#deps.heartbeatMs ?? DEFAULT_HEARTBEAT_MS)
    let complete = false
    try {
      for await (const event of events) {
        await writer.write(event.seq, envelope(event.type, event.value, qualified))
        if (isTerminalEvent(event.type)) {
          complete = true
          break
        }
      }
    } catch (error) {
      if (!request.cancelled) this.#deps.log.warn({ err: error, request_id: request.id, run: runId }, 'a run event stream failed part way; cutting it so the client resumes')
    } finally {
      writer.close(complete)
    }
    return HANDLED
  }

  // ---- finding actors and runs ------------------------------------------------------------------

  #entry(name: string): WorkflowEntry {
    const entry = this.#entries.get(name)
    if (entry === undefined) throw new HttpError(404, 'unknown_workflow', `Workflow '${name}' not found`)
    return entry
  }

  /** The actor of the run's workflow; any workflow actor for a run whose workflow is no longer configured (the runs tables are shared). */
  #actorOf(run: RunInfo): WorkflowEntry['ref'] {
    return (this.#entries.get(run.workflow) ?? this.#entries.values().next().value!).ref
  }

  async #find(runId: string): Promise<RunInfo> {
    const run = this.#entries.size === 0 ? null : await this.#askAny<RunInfo | null>({ type: 'get', runId })
    if (run === null) throw new HttpError(404, 'not_found', 'Handler not found', 'handler_id')
    return run
  }

  /** Asks the first workflow actor that can answer: one restarting or given up leaves the others to. */
  async #askAny<R>(message: WorkflowMessage, request?: ServedRequest): Promise<R> {
    const entries = [...this.#entries.values()]
    for (let i = 0; ; i++) {
      try {
        return await entries[i]!.ref.ask<R>(message, request === undefined ? undefined : { cancellation: request })
      } catch (error) {
        if (!(error instanceof ActorError && UNAVAILABLE.has(error.code)) || i === entries.length - 1) throw error
      }
    }
  }

  /** The workflow's definition, imported on this thread once (the actor imports it on its own). */
  #definition(name: string): Promise<WorkflowDefinition<unknown, unknown>> {
    const entry = this.#entry(name)
    let loading = this.#definitions.get(name)
    if (loading === undefined) {
      loading = loadWorkflow(entry.url, entry.exportName).then(workflow => workflow.definition as WorkflowDefinition<unknown, unknown>)
      // A module that failed to load is tried again on the next request rather than cached broken.
      loading.catch(() => this.#definitions.delete(name))
      this.#definitions.set(name, loading)
    }
    return loading
  }
}
