import { z } from 'zod'
import type { ActorRef } from '../../src/index.js'
import type { ModelsMessage } from '../routing/models.js'
import type { KvMessage, TableMessage } from '../stores/protocol.js'

/**
 * The workflow actor's protocol. One actor serves one configured workflow: it admits runs,
 * executes them durably, and answers for them. Runs of every workflow share the runs tables,
 * so any workflow actor can answer `get` and `list` for any run; `send`, `cancel`, `wait` and
 * `events` go to the actor of the run's own workflow.
 */

export const RUN_STATUSES = ['running', 'completed', 'failed', 'cancelled'] as const
export type RunStatus = (typeof RUN_STATUSES)[number]

export const isFinished = (status: RunStatus): boolean => status !== 'running'

/** A run as the actor reports it; the HTTP layer turns it into the protocol's Handler. */
export interface RunInfo {
  readonly runId: string
  readonly workflow: string
  readonly sessionId: string
  readonly status: RunStatus
  /** Epoch ms. */
  readonly createdAt: number
  readonly updatedAt: number
  readonly completedAt: number | null
  /** What `run` returned; null until completed. */
  readonly result: unknown
  /** Why it failed or was cancelled. */
  readonly error: { readonly code: string; readonly message: string } | null
  /** The sequence of the run's last event; -1 before the first. */
  readonly lastSeq: number
  /** Sequences at or below this were removed by retention: a stream asking for them is told so. */
  readonly trimmedTo: number
  /** The session state the run ended with; null while it runs. */
  readonly state: Record<string, unknown> | null
}

/** One event of a run's stream. */
export interface RunEvent {
  readonly seq: number
  readonly type: string
  readonly value: Record<string, unknown>
  /** Epoch ms. */
  readonly at: number
}

/** The event types a stream ends with: one of them is always the last event of a finished run. */
export const TERMINAL_EVENTS = {
  completed: 'StopEvent',
  failed: 'WorkflowFailedEvent',
  cancelled: 'WorkflowCancelledEvent',
} as const
const TERMINAL_TYPES = new Set<string>(Object.values(TERMINAL_EVENTS))
/** Whether an event of this type ends its run's stream. */
export const isTerminalEvent = (type: string): boolean => TERMINAL_TYPES.has(type)

/** Sent in place of events a stream asked for that retention removed. */
export const GAP_EVENT = 'EventsGapEvent'

const runId = z.string().min(1).max(128)
const eventValue = z.record(z.string(), z.unknown())

export const workflowProtocol = z.discriminatedUnion('type', [
  /**
   * Admits a run: `{ run: RunInfo, existing: boolean }`. Refused with `invalid_request` when the
   * start event does not fit the workflow's schema, `backpressure` (data.retryAfterMs) when the
   * runs and the queue are full. With an idempotency key, a repeated start returns the run the
   * key first made (`existing: true`).
   */
  z.object({
    type: z.literal('start'),
    startEvent: z.unknown(),
    idempotencyKey: z.string().min(1).max(256).optional(),
    /** Continue the session of this earlier run. */
    continueFrom: runId.optional(),
    /** A session state the caller vouches for (a verified client context): a new session starting from it. */
    state: eventValue.optional(),
  }),
  /** Resolves with the RunInfo once the run is finished. */
  z.object({ type: z.literal('wait'), runId }),
  /** The RunInfo, or null when no such run is kept. */
  z.object({ type: z.literal('get'), runId }),
  /** Runs, newest first, filtered by status and workflow name (any of each list). */
  z.object({ type: z.literal('list'), status: z.array(z.enum(RUN_STATUSES)).optional(), workflow: z.array(z.string()).optional(), limit: z.number().int().min(1).max(1000).optional() }),
  /** Sends an event into a running run; durable once acknowledged. `not_found`, or `run_over` once it finished. */
  z.object({ type: z.literal('send'), runId, event: z.object({ type: z.string().min(1), value: eventValue }) }),
  /** Cancels a running run (`cancelled`); with purge also deletes it and its history (`deleted`). */
  z.object({ type: z.literal('cancel'), runId, purge: z.boolean().optional() }),
  /**
   * Streamed: the run's events with a sequence above `after` (-1: from the first), then the live
   * ones, ending with the terminal event. A gap event stands in for events retention removed.
   */
  z.object({ type: z.literal('events'), runId, after: z.number().int().min(-1) }),
  /** Runs executing, queued, and finished since start: for inspection and tests. */
  z.object({ type: z.literal('stats') }),
  /** Applies the workflow's hot settings live: admission limits, timeout, resumability, retention. */
  z.object({
    type: z.literal('configure'),
    maxConcurrent: z.number().int().min(1),
    queueSize: z.number().int().min(0),
    timeoutMs: z.number().int().positive().optional(),
    resumable: z.boolean(),
    retentionMs: z.number().int().positive().optional(),
  }),
  /**
   * Shutdown's first phase: new starts are refused with `stopped` (HTTP 503) and queued runs
   * stay queued, while runs executing a step are given up to `timeoutMs` to finish or reach a
   * durable wait. Answers with a DrainReport; the stop that follows lets go of what remains.
   */
  z.object({ type: z.literal('drain'), timeoutMs: z.number().int().min(0) }),
])
export type WorkflowMessage = z.infer<typeof workflowProtocol>

export interface DrainReport {
  /** Runs that finished during the drain. */
  readonly finished: number
  /** Runs still held when it ended: parked in a durable wait, queued, or cut off by the deadline. They resume on the next start. */
  readonly remaining: number
  /** Of the remaining, those still executing a step at the deadline. */
  readonly cutOff: number
}

export interface StartReply {
  readonly run: RunInfo
  readonly existing: boolean
}

export interface WorkflowStats {
  readonly running: number
  readonly queued: number
  readonly completed: number
  readonly failed: number
  readonly cancelled: number
  readonly resumed: number
}

/** Codes the workflow runtime fails runs or rejects messages with (each is in docs/errors.md). */
export const WORKFLOW_ERROR_CODES = {
  workflow_error: "the run's code threw something other than an ActorError; the message is the thrown error's",
  interrupted: 'the run was in flight when its owner died, and the workflow is configured resumable: false',
  nondeterministic: 'a resumed run made durable calls in a different order than its journal recorded',
  run_over: 'an event was sent to a run that has finished (HTTP 409)',
  unknown_workflow: 'no workflow of that name is configured (HTTP 404)',
  not_configured: 'ctx.chat or ctx.embed in a stack without the models routing table (no inference providers)',
  bad_context: 'a client context without a valid signature, or sent while no workflows_context_secret is set (HTTP 400)',
} as const

/** What the stack gives each workflow actor. */
export interface WorkflowActorArgs {
  /** The configured name: the protocol's workflow name. */
  readonly name: string
  /** Where to load the workflow from: module URL and export name. */
  readonly url: string
  readonly exportName: string
  /** The runs tables' store actor and base table name (`storage.stores.runs`). */
  readonly runs: { readonly store: ActorRef<TableMessage>; readonly table: string }
  /** Where session state is kept (`storage.stores.sessions`); without it, in the runs table only. */
  readonly sessions?: { readonly store: ActorRef<KvMessage>; readonly namespace: string }
  /** The models routing table, for ctx.chat and ctx.embed. */
  readonly models?: ActorRef<ModelsMessage>
  /**
   * This process's owner id (`troupe.node_id`). Runs it owned are resumed at once when the
   * actor starts, since the owner that held them (this node, before a crash) is gone; runs of
   * other owners only once their lease lapses.
   */
  readonly owner: string
  readonly maxConcurrent: number
  readonly queueSize: number
  readonly timeoutMs?: number
  readonly resumable: boolean
  /** Finished runs' history is removed this long after they finish; undefined keeps it. */
  readonly retentionMs?: number
  /** How long a lease lasts unrenewed; renewed every third of it. */
  readonly leaseMs: number
}
