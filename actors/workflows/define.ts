import type { Logger } from 'pino'
import type { z } from 'zod'
import type { SystemHandle } from '../../src/index.js'
import type { ChatCompletion } from '../providers/inference/protocol.js'

/**
 * A durable workflow: a function of its start event and a run context, loaded on any thread by
 * module URL and export name, like a behaviour. Durability comes from the context: every
 * `step`, `waitFor` and `sleep` is journaled, every `emit` appended to the run's event log, so
 * a run whose actor, worker or process dies is resumed by calling `run` again, and the
 * journaled calls return what they returned the first time instead of running again.
 *
 * The determinism rule follows: code outside `step` runs again on every resume, so it must
 * make the same calls in the same order (no clocks, random numbers or I/O outside a step).
 */
export interface WorkflowDefinition<Start, Stop> {
  /** The start event; a bad one is refused with `invalid_request` naming the field (HTTP 400). */
  readonly start: z.ZodType<Start>
  /** The result's shape, for /workflows/{name}/schema; a returned value is not checked against it. */
  readonly stop?: z.ZodType<Stop>
  /** Schemas of the events the workflow emits or waits for, by type, for /workflows/{name}/events. */
  readonly events?: Readonly<Record<string, z.ZodType>>
  /** A line about what the workflow does. */
  readonly description?: string
  run(start: Start, ctx: RunContext): Promise<Stop> | Stop
}

/** The session state a run reads and writes: a plain msgpack-encodable object. */
export type SessionState = Record<string, unknown>

export interface WaitOptions {
  /** Fail the wait with `timeout` past this many ms after it first began (a resume does not start it over). */
  readonly timeoutMs?: number
}

/** What a run sees. Only the calls below are durable; everything else runs again on resume. */
export interface RunContext {
  /** The run's id: the protocol's handler_id. */
  readonly runId: string
  /** The session this run continues (a run started with an earlier run's handler_id shares it). */
  readonly sessionId: string
  /** 1 on the first execution, one more on each resume after a crash. */
  readonly attempt: number
  /** Aborted when the run is cancelled, times out, or its actor stops. */
  readonly signal: AbortSignal
  readonly log: Logger
  /** Spawn, look up and stop actors. */
  readonly system: SystemHandle
  /**
   * The session's state, read and written as a plain object. Saved with each step, so a
   * resumed run sees what it saw when the step finished, and with the session when the run ends.
   */
  state: SessionState
  /**
   * Runs `fn` once: its result (msgpack-encodable) is journaled before `step` returns. On a
   * resumed run a journaled step returns its recorded result without running `fn`. A step that
   * throws is not journaled: the error reaches the run, and a resume runs the step again.
   */
  step<T>(name: string, fn: () => T | Promise<T>): Promise<T>
  /** Appends an event to the run's stream: sequence-numbered, durable, never duplicated on resume. */
  emit(type: string, value?: Record<string, unknown>): Promise<void>
  /**
   * Waits for an event of `type` sent into the run (POST /events/{id}). The wait and the event
   * it receives are journaled: a resumed run goes on waiting, or takes the recorded event.
   */
  waitFor<T extends Record<string, unknown> = Record<string, unknown>>(type: string, options?: WaitOptions): Promise<T>
  /** A durable timer: a resume waits only for what is left of it. */
  sleep(ms: number): Promise<void>
  /** A chat completion through the stack's models routing table (an OpenAI request body). Not journaled: wrap it in a step. */
  chat(body: { model: string; messages: Array<{ role: string } & Record<string, unknown>> } & Record<string, unknown>): Promise<ChatCompletion>
  /** Embeddings through the models routing table (an OpenAI request body). Not journaled: wrap it in a step. */
  embed(body: { model: string; input: unknown } & Record<string, unknown>): Promise<EmbeddingsResponse>
}

export interface EmbeddingsResponse {
  readonly object: 'list'
  readonly data: Array<{ object: 'embedding'; index: number; embedding: number[] }>
  readonly model: string
  readonly usage?: unknown
}

const WORKFLOW_MARK = Symbol.for('troupe.workflow')

export interface Workflow<Start = any, Stop = any> {
  readonly url: string
  readonly exportName: string
  readonly definition: WorkflowDefinition<Start, Stop>
  readonly [WORKFLOW_MARK]: true
}

/**
 * Defines a workflow any thread can load: the workflow actor imports `moduleUrl` and takes the
 * export `exportName`. Keep the module free of side effects beyond definitions.
 */
export function defineWorkflow<Start, Stop>(moduleUrl: string, exportName: string, definition: WorkflowDefinition<Start, Stop>): Workflow<Start, Stop> {
  if (typeof moduleUrl !== 'string' || !moduleUrl.includes(':')) {
    throw new TypeError(`defineWorkflow: moduleUrl must be a module URL (pass import.meta.url), got ${String(moduleUrl)}`)
  }
  if (typeof exportName !== 'string' || exportName.length === 0) throw new TypeError('defineWorkflow: exportName must name the export that holds this workflow')
  if (typeof definition?.run !== 'function') throw new TypeError(`defineWorkflow(${exportName}): definition.run must be a function`)
  if (typeof definition.start?.safeParse !== 'function') throw new TypeError(`defineWorkflow(${exportName}): definition.start must be a zod schema`)
  return Object.freeze({ url: moduleUrl, exportName, definition, [WORKFLOW_MARK]: true as const })
}

export function isWorkflow(value: unknown): value is Workflow {
  return typeof value === 'object' && value !== null && (value as Workflow)[WORKFLOW_MARK] === true
}

/** Loads a workflow on the current thread by module URL and export name; a TypeError says what is missing. */
export async function loadWorkflow(url: string, exportName: string): Promise<Workflow> {
  const module = (await import(url)) as Record<string, unknown>
  const workflow = module[exportName]
  if (!isWorkflow(workflow)) {
    const found = Object.entries(module).filter(([, value]) => isWorkflow(value)).map(([name]) => name)
    throw new TypeError(`${url} has no workflow exported as '${exportName}' (use defineWorkflow)${found.length > 0 ? `; it exports: ${found.join(', ')}` : ''}`)
  }
  return workflow
}
