import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { tableStore } from '../actors/stores/table-store.js'
import type { RunInfo, StartReply, WorkflowActorArgs, WorkflowMessage } from '../actors/workflows/protocol.js'
import { workflowActor } from '../actors/workflows/workflow-actor.js'
import type { ActorRef } from '../src/index.js'
import { startBenchSystem } from './context.js'
import { addOne, threeSteps } from './fixtures/workflows.js'
import { measure, type BenchResult, type Subject } from './harness.js'
import { eventKey, finished, journalKey, newRunRow, openLikeSqlLmdb, RUNS_TABLE, runKey, stepEntry } from './workflows-rows.js'

/** Runs each side makes per round, in SLICES slices taken in turn with the other side's. */
const RUNS = 2000
const SLICES = 4
/** Runs in flight at once, each started and waited for by one lane. */
const CONCURRENCY = 64
const MAP_SIZE_MB = 1024
const STEPS = ['one', 'two', 'three'] as const
/**
 * What troupe writes for one run of a three-step workflow with no emits and no sessions store
 * (run-store.ts, workflow-actor.ts, execution.ts): the run's row (written while the run begins),
 * a journal row per step, then the terminal event and the row's final update (one transaction).
 */
const WRITES_PER_RUN = 1 + STEPS.length + 2

const subjects: Subject[] = [
  {
    name: 'wf_run_tput',
    unit: 'ops/s',
    baseline: `3 plain calls + ${WRITES_PER_RUN} lmdb-js puts per run (run row beside the first step, 3 journal rows, terminal event + final row), each awaited until flushed to disk as troupe awaits them, in-thread, ${CONCURRENCY} runs in flight (ops: runs)`,
    better: 'higher',
    target: 'ratio >= 0.5',
  },
]

/** Runs `from` to `to` - 1 with CONCURRENCY of them in flight; the milliseconds they took. */
async function pipelined(from: number, to: number, run: (i: number) => Promise<void>): Promise<number> {
  let next = from
  const lane = async (): Promise<void> => {
    while (next < to) await run(next++)
  }
  const start = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, lane))
  return performance.now() - start
}

/**
 * The baseline: the steps as plain calls, each followed by its journal row's write, between the
 * run row's insert and the final pair, each awaited where troupe awaits it. What it leaves out
 * is what troupe adds: the actors, their messages, the checks, and the index entries sql_lmdb
 * keeps beside each run row.
 */
function rawRunner(path: string): { run(i: number): Promise<void>; close(): Promise<void> } {
  const db = openLikeSqlLmdb(path, MAP_SIZE_MB)
  const durably = async (committed: Promise<unknown>): Promise<void> => {
    await committed
    await db.flushed
  }
  return {
    async run(i) {
      const row = newRunRow('threeSteps', { n: i })
      // The run begins while its row is written, as troupe's does (the start waits for the row).
      // Every write is awaited until it is on disk, as troupe's durable writes are: a put
      // resolves once committed, and `flushed` once that commit's fsync is done (lmdb-js's
      // overlappingSync), shared by the writes of every run in flight.
      const inserted = durably(db.put(runKey(row.run_id), row))
      let n = i
      for (const [idx, name] of STEPS.entries()) {
        n = addOne(n)
        await durably(db.put(journalKey(row.run_id, idx), stepEntry(row.run_id, idx, name, String(n))))
      }
      await inserted
      const end = finished(row, { n }, STEPS.length)
      await durably(Promise.all([db.put(eventKey(row.run_id, 0), end.event), db.put(runKey(row.run_id), end.row)]))
      if (n !== i + STEPS.length) throw new Error(`the baseline's run ${i} ended with n = ${n}`)
    },
    close: async () => {
      await db.flushed
      await db.close()
    },
  }
}

/** One run through the workflow actor: start, then wait for it to finish; anything but { n: i + 3 } fails the benchmark. */
async function troupeRun(ref: ActorRef<WorkflowMessage>, i: number): Promise<void> {
  const { run } = await ref.ask<StartReply>({ type: 'start', startEvent: { n: i } })
  const done = await ref.ask<RunInfo>({ type: 'wait', runId: run.runId })
  if (done.status !== 'completed' || (done.result as { n?: number } | null)?.n !== i + STEPS.length) {
    throw new Error(`run ${done.runId} (n = ${i}) ended ${done.status}: ${JSON.stringify(done.error ?? done.result)}`)
  }
}

/**
 * Runs/s of a three-step workflow through the library (an ActorSystem with its pool, a
 * sql_lmdb table store actor, and the workflow actor on the store's worker as a stack places
 * it), against the same steps and writes with lmdb-js in this thread. Both sides take turns slice by slice, as the
 * kv benchmark's do, so that a stall of the shared disk or CPU falls on both alike.
 */
export async function workflowRunThroughput(rounds: number): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-bench-wf-'))
  const raw = rawRunner(join(dir, 'raw'))
  const system = await startBenchSystem()
  try {
    const store = await system.spawn(tableStore, { placement: 'pool', args: { name: 'runs', config: { type: 'sql_lmdb', path: join(dir, 'actor'), map_size_mb: MAP_SIZE_MB } } })
    const args: WorkflowActorArgs = {
      name: 'threeSteps',
      url: threeSteps.url,
      exportName: threeSteps.exportName,
      runs: { store, table: RUNS_TABLE },
      owner: 'bench-node',
      maxConcurrent: CONCURRENCY,
      queueSize: CONCURRENCY,
      resumable: true,
      leaseMs: 15_000,
    }
    // Beside its runs store, as a stack places it (src/stack/workflows.ts).
    const ref = await system.spawn(workflowActor, { placement: 'pool', near: store, name: 'workflow:threeSteps', args })
    let made = 0
    return await measure(subjects, rounds, 1, async () => {
      const ms = { raw: 0, troupe: 0 }
      const slice = RUNS / SLICES
      for (let at = 0; at < RUNS; at += slice, made += slice) {
        ms.raw += await pipelined(made, made + slice, i => raw.run(i))
        ms.troupe += await pipelined(made, made + slice, i => troupeRun(ref, i))
      }
      return [{ value: RUNS / (ms.troupe / 1000), baseline: RUNS / (ms.raw / 1000) }]
    })
  } finally {
    await system.shutdown()
    await raw.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
