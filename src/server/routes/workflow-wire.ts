import type { ServerResponse } from 'node:http'
import { isFinished, TERMINAL_EVENTS, type RunInfo, type RunStatus, type WorkflowMessage } from '../../../actors/workflows/protocol.js'
import { HttpError, sendJson } from '../http.js'
import { HANDLED } from '../route.js'
import { openContext, sealContext, type SealedContext } from '../workflow-context.js'

/**
 * The wire forms of the LlamaIndex Workflows server protocol: the bodies and query values
 * clients send, read leniently as workflows-py reads them and refused with a 400 naming the
 * field; the handlers and event envelopes troupe answers with, shaped as workflows-py shapes
 * them; and a run's event stream framed as SSE or NDJSON.
 */

/** A run as the protocol's Handler: every key always present, in the protocol's order. */
export interface HandlerJson {
  readonly handler_id: string
  readonly workflow_name: string
  readonly run_id: string
  readonly error: string | null
  readonly result: unknown
  readonly status: RunStatus
  readonly started_at: string
  readonly updated_at: string
  readonly completed_at: string | null
  /** troupe's addition: the failure's code (`workflow_error`, `timeout`, a code the run threw). */
  readonly error_code: string | null
  /** Only when a context secret is configured and the run is finished: its session state, sealed. */
  readonly context?: SealedContext
}

/** The prefix of every qualified_name: troupe's events live in no Python module. */
const QUALIFIED_PREFIX = 'troupe.'
/** Terminal events that stand for a StopEvent to Python clients, which end their streams on one. */
const STOP_LIKE = new Set<string>([TERMINAL_EVENTS.failed, TERMINAL_EVENTS.cancelled])

// ---- request bodies ---------------------------------------------------------------------------

type JsonObject = Record<string, unknown>

const isObject = (value: unknown): value is JsonObject => typeof value === 'object' && value !== null && !Array.isArray(value)

const invalid = (param: string, message: string): HttpError => new HttpError(400, 'invalid_request', `${param}: ${message}`, param)

/** An object, or a JSON string of one (clients that predate objects send strings). */
function objectField(value: unknown, param: string): JsonObject {
  let parsed = value
  if (typeof value === 'string') {
    try {
      parsed = JSON.parse(value)
    } catch (error) {
      throw invalid(param, `not valid JSON: ${(error as Error).message}`)
    }
  }
  if (!isObject(parsed)) throw invalid(param, 'must be an object, or a JSON string of one')
  return parsed
}

const present = (value: unknown): boolean => value !== undefined && value !== null

/**
 * The start message for a run body: `start_event` (an object, a JSON string, or an envelope
 * `{ type, value }` whose value is the event), else `kwargs` as the start event's fields;
 * `handler_id` continues that run's session, `context` starts from a signed session state (not
 * both); the Idempotency-Key header makes a repeated start return the first run.
 */
export function startMessage(body: unknown, idempotencyKey: string | string[] | undefined, secret: string | undefined): Extract<WorkflowMessage, { type: 'start' }> {
  if (!isObject(body)) throw invalid('body', 'must be a JSON object ({} starts a run with an empty start event)')
  let startEvent: JsonObject = {}
  if (present(body['start_event'])) {
    startEvent = objectField(body['start_event'], 'start_event')
    if ('value' in startEvent && typeof startEvent['type'] === 'string') startEvent = objectField(startEvent['value'], 'start_event.value')
  } else if (present(body['kwargs'])) {
    startEvent = objectField(body['kwargs'], 'kwargs')
  }
  const handlerId = body['handler_id']
  if (present(handlerId) && (typeof handlerId !== 'string' || handlerId.length === 0 || handlerId.length > 128)) throw invalid('handler_id', 'must be the handler_id of an earlier run')
  const hasContext = present(body['context'])
  if (present(handlerId) && hasContext) throw invalid('context', 'give handler_id (continue its session) or context (start from it), not both')
  if (Array.isArray(idempotencyKey) || (idempotencyKey !== undefined && (idempotencyKey.length === 0 || idempotencyKey.length > 256))) {
    throw invalid('Idempotency-Key', 'must be one header of 1 to 256 characters')
  }
  return {
    type: 'start',
    startEvent,
    ...(typeof handlerId === 'string' ? { continueFrom: handlerId } : {}),
    ...(hasContext ? { state: openContext(secret, body['context']) } : {}),
    ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
  }
}

/**
 * The event of a POST /events/{id} body: `{ type, value }`, or a JSON string of it. A legacy
 * `data` stands for `value`; a missing type is taken from `qualified_name`'s last part.
 */
export function sentEvent(body: unknown): { type: string; value: JsonObject } {
  if (!isObject(body)) throw invalid('body', 'must be a JSON object with an event')
  if (!body['event']) throw invalid('event', 'required: the event to send, { type, value }')
  const event = objectField(body['event'], 'event')
  const qualifiedName = event['qualified_name']
  const type = event['type'] ?? (typeof qualifiedName === 'string' ? qualifiedName.slice(qualifiedName.lastIndexOf('.') + 1) : undefined)
  if (typeof type !== 'string' || type.length === 0) throw invalid('event.type', 'required: the event type, a non-empty string')
  const value = event['value'] ?? event['data'] ?? {}
  if (!isObject(value)) throw invalid('event.value', 'must be an object')
  return { type, value }
}

/** A boolean query flag as workflows-py reads one: 'true' in any case is true, any other value false. */
export function flag(value: string | null, fallback: boolean): boolean {
  return value === null ? fallback : value.toLowerCase() === 'true'
}

/** A stream cursor: 'now' (absent too), or a sequence from -1 (from the first event) up. */
export function cursorOf(value: string | null, param: string): number | 'now' {
  if (value === null || value === 'now') return 'now'
  const n = /^-?\d+$/.test(value) ? Number(value) : NaN
  if (!Number.isSafeInteger(n) || n < -1) throw invalid(param, `must be an integer from -1 up, or 'now'; got '${value}'`)
  return n
}

// ---- responses ----------------------------------------------------------------------------------

export function reply(res: ServerResponse, status: number, body: unknown): typeof HANDLED {
  sendJson(res, status, body)
  return HANDLED
}

/** The run as a Handler; with a secret, a finished run also carries its session state, sealed. */
export function handlerJson(run: RunInfo, secret: string | undefined): HandlerJson {
  return {
    handler_id: run.runId,
    workflow_name: run.workflow,
    run_id: run.runId,
    error: run.error?.message ?? null,
    result: run.status === 'completed' ? envelope(TERMINAL_EVENTS.completed, run.result, true) : null,
    status: run.status,
    started_at: isoTime(run.createdAt),
    updated_at: isoTime(run.updatedAt),
    completed_at: run.completedAt === null ? null : isoTime(run.completedAt),
    error_code: run.error?.code ?? null,
    ...(secret !== undefined && isFinished(run.status) ? { context: sealContext(secret, run.state ?? {}) } : {}),
  }
}

/** ISO 8601 with the +00:00 offset Python's isoformat gives. */
const isoTime = (ms: number): string => new Date(ms).toISOString().replace('Z', '+00:00')

/** An event as the protocol's envelope; a failure or cancel is also a StopEvent to Python clients. */
export function envelope(type: string, value: unknown, qualified: boolean): { value: unknown; qualified_name: string | null; type: string; types: string[] | null } {
  return { value, qualified_name: qualified ? `${QUALIFIED_PREFIX}${type}` : null, type, types: STOP_LIKE.has(type) ? [TERMINAL_EVENTS.completed] : null }
}

/**
 * Writes a run's events as SSE frames (`id: <seq>`, then the envelope) or NDJSON lines, waiting
 * for the socket to drain when it is full. An SSE stream silent for `heartbeatMs` gets a comment.
 */
export class RunEventWriter {
  readonly #res: ServerResponse
  readonly #sse: boolean
  readonly #heartbeat: NodeJS.Timeout | undefined

  constructor(res: ServerResponse, sse: boolean, heartbeatMs: number) {
    this.#res = res
    this.#sse = sse
    res.writeHead(200, {
      'content-type': sse ? 'text/event-stream; charset=utf-8' : 'application/x-ndjson',
      'cache-control': 'no-cache',
      // A draining server has set `connection: close` already: keep-alive must not override it.
      ...(res.hasHeader('connection') ? {} : { connection: 'keep-alive' }),
      'x-accel-buffering': 'no',
    })
    res.flushHeaders()
    const beat = (): void => {
      if (!res.destroyed) res.write(': heartbeat\n\n')
    }
    this.#heartbeat = sse ? setInterval(beat, heartbeatMs) : undefined
  }

  write(seq: number, envelope: unknown): Promise<void> | undefined {
    const json = JSON.stringify(envelope)
    // Every write restarts the silence the heartbeat measures.
    this.#heartbeat?.refresh()
    if (this.#res.write(this.#sse ? `id: ${seq}\ndata: ${json}\n\n` : `${json}\n`)) return undefined
    return new Promise(resolve => {
      const done = (): void => {
        this.#res.off('drain', done).off('close', done)
        resolve()
      }
      this.#res.on('drain', done).on('close', done)
    })
  }

  /** Ends the response after a terminal event; otherwise cuts it, so the client sees an interrupted stream. */
  close(complete: boolean): void {
    clearInterval(this.#heartbeat)
    if (complete) this.#res.end()
    else this.#res.destroy()
  }
}
