import { ActorError, type BehaviorContext } from '../../src/index.js'
import { terminalEvent, type Outcome } from './execution.js'
import type { EventFeed } from './live-run.js'
import { GAP_EVENT, isTerminalEvent, type RunEvent, type WorkflowMessage } from './protocol.js'
import type { RunRow } from './run-store.js'
import type { State } from './actor-state.js'

/**
 * A run's events above `after`, then its live ones, ending with its terminal event. History
 * comes from the store; a run held here also feeds its new events to the stream, subscribed
 * before the history is read so that nothing falls between the two (a sequence already
 * yielded is skipped). A run held elsewhere is followed through the store.
 */
export async function* events(state: State, runId: string, after: number, ctx: BehaviorContext<WorkflowMessage>): AsyncGenerator<RunEvent> {
  let feed: EventFeed | undefined = state.live.get(runId)?.subscribe()
  try {
    let last = after
    const row = feed === undefined ? await state.store.getRun(runId) : undefined
    if (feed === undefined && row === undefined) throw new ActorError('not_found', `no run '${runId}'`)
    // Retention removed a finished run's events, its terminal one too: the gap covers what came
    // before the terminal event, which the row still tells.
    const endTrimmed = row !== undefined && row.status !== 'running' && row.trimmed_to >= row.last_seq
    const gapTo = endTrimmed ? row.last_seq - 1 : (row?.trimmed_to ?? -1)
    if (gapTo > last) {
      yield { seq: gapTo, type: GAP_EVENT, value: { from_sequence: last + 1, to_sequence: gapTo, reason: 'removed by retention' }, at: Date.now() }
      last = gapTo
    }
    if (endTrimmed) {
      if (row.last_seq > last) yield terminalFromRow(row)
      return
    }
    for (let delayMs = 25; ; ) {
      let page: RunEvent[]
      do {
        page = await state.store.eventsAfter(runId, last)
        for (const event of page) {
          yield event
          last = event.seq
          if (isTerminalEvent(event.type)) return
        }
      } while (page.length > 0)
      if (feed === undefined && state.live.has(runId)) feed = state.live.get(runId)!.subscribe() // resumed here meanwhile
      if (feed !== undefined) break
      const now = await state.store.getRun(runId)
      if (now === undefined) return
      if (now.status !== 'running') {
        // Finished, and its terminal event went with its history: say how it ended.
        if (now.trimmed_to >= now.last_seq && now.last_seq > last) yield terminalFromRow(now)
        return
      }
      await pause(delayMs, ctx)
      delayMs = Math.min(delayMs * 2, 1000)
      if (ctx.signal.aborted) return
    }
    const cancelled = new Promise<void>(resolve => ctx.signal.addEventListener('abort', () => resolve(), { once: true }))
    for (;;) {
      const event = await feed.next(cancelled)
      if (event === undefined) return
      if (event.seq <= last) continue
      yield event
      last = event.seq
      if (isTerminalEvent(event.type)) return
    }
  } finally {
    feed?.close()
  }
}

function terminalFromRow(row: RunRow): RunEvent {
  const outcome: Outcome =
    row.status === 'completed' ? { status: 'completed', result: row.result } : { status: row.status === 'cancelled' ? 'cancelled' : 'failed', code: row.error_code ?? 'workflow_error', message: row.error_message ?? '' }
  return { seq: row.last_seq, ...terminalEvent(outcome, (row.completed_at ?? row.created_at) - row.created_at), at: row.completed_at ?? row.updated_at }
}

/** Waits `ms`, or less if the ask or stream is cancelled. */
export function pause(ms: number, ctx: BehaviorContext<WorkflowMessage>): Promise<void> {
  return new Promise(resolve => {
    const done = (): void => {
      clearTimeout(timer)
      ctx.signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    ctx.signal.addEventListener('abort', done, { once: true })
  })
}

