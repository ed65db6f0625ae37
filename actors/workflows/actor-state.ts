import type { Logger } from 'pino'
import type { SystemHandle } from '../../src/index.js'
import type { KvClient } from '../stores/kv-client.js'
import type { Workflow } from './define.js'
import type { LiveRun } from './live-run.js'
import type { WorkflowActorArgs } from './protocol.js'
import type { RunStore } from './run-store.js'

/** What a workflow actor holds: its runs, queue, limits and timers (see workflow-actor.ts). */
export interface Limits {
  maxConcurrent: number
  queueSize: number
  timeoutMs: number | undefined
  resumable: boolean
  retentionMs: number | undefined
}

export interface State {
  readonly args: WorkflowActorArgs
  readonly workflow: Workflow
  readonly store: RunStore
  readonly sessions: KvClient | undefined
  readonly log: Logger
  readonly system: SystemHandle
  limits: Limits
  readonly live: Map<string, LiveRun>
  readonly queue: LiveRun[]
  executing: number
  /** Starts admitted but not yet written: they hold a slot too. */
  reserved: number
  stopped: boolean
  /** Shutting down: no new starts, no queued run begins (see the drain message). */
  draining: boolean
  /** A recovery pass is under way: the next one waits for the one after. */
  recovering: boolean
  /** Runs being claimed and read back, until they are held here. */
  readonly resuming: Map<string, Promise<LiveRun | undefined>>
  readonly timers: NodeJS.Timeout[]
  /** The retention sweep's, rescheduled when a reload changes the retention. */
  sweepTimer: NodeJS.Timeout | undefined
  readonly counts: { completed: number; failed: number; cancelled: number; resumed: number }
}

