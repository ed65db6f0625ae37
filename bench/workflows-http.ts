import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { pino } from 'pino'
import { parseConfig } from '../src/config/index.js'
import { startStack } from '../src/supervisor/stack.js'
import { fixture, listen, startBenchSystem } from './context.js'
import { oneStep } from './fixtures/workflows.js'
import { measure, median, type BenchResult, type Subject } from './harness.js'
import { eventKey, finished, journalKey, newRunRow, openLikeSqlLmdb, runKey, stepEntry } from './workflows-rows.js'

const run = promisify(execFile)

/** Requests one at a time per slice; each round takes SLICES slices of each side in turn. */
const SEQUENTIAL = 200
const SLICES = 3
const MAP_SIZE_MB = 256
/** The stack's pool: the default on this machine's 2 cores, the number of CPUs. */
const WORKERS = 2
const BODY = JSON.stringify({ start_event: {} })

const subjects: Subject[] = [
  {
    name: 'wf_http_run_p50_ms',
    unit: 'ms',
    baseline: 'bare node:http answering the same POST with a JSON body of the same size, one request at a time (p50)',
    better: 'lower',
    target: 'value <= 2 ms',
  },
  { name: 'wf_http_run_overhead_p50_ms', unit: 'ms', baseline: 'the bare server p50 (value: troupe p50 minus it)', better: 'lower' },
  {
    name: 'wf_http_run_sync_floor_p50_ms',
    unit: 'ms',
    baseline: 'the bare server p50 (value: the p50 of the two durable commits a one-step run waits for, made in turn with lmdb-js in-thread as the store makes them: run row + journal row, then terminal event + final row)',
    better: 'lower',
  },
]

/** Latencies in ms of `count` sequential POSTs on one keep-alive connection, from a client in its own process. */
async function sequential(url: string, count: number): Promise<number[]> {
  const { stdout } = await run(process.execPath, [fileURLToPath(fixture('sequential-client')), url, BODY, String(count)])
  return (JSON.parse(stdout) as { latencies: number[] }).latencies
}

/** p50 of each side's latencies, SLICES slices of each in turn, pooled: a stall of the shared machine falls on all alike. */
async function p50InTurn<K extends string>(sides: Record<K, () => Promise<number[]>>): Promise<Record<K, number>> {
  const names = Object.keys(sides) as K[]
  const all = new Map<K, number[]>(names.map(side => [side, []]))
  for (let i = 0; i < SLICES; i++) {
    for (const side of names) all.get(side)!.push(...(await sides[side]()))
  }
  return Object.fromEntries(names.map(side => [side, median(all.get(side)!)])) as Record<K, number>
}

/**
 * The commits a one-step run waits for, as troupe makes them (synchronous, durable: an idle
 * store commits a durable batch so), with lmdb-js in this thread: the
 * run's row and its step's journal row in one (the start is acknowledged once the row is
 * durable, the step returns once its entry is), then the terminal event with the row's final
 * update in the next (the run is answered once its outcome is written). A run whose state
 * changed also saves its session beside the second; a one-step run with no state does not.
 */
function syncFloor(dir: string): { once(): Promise<number>; close(): Promise<void> } {
  const sql = openLikeSqlLmdb(join(dir, 'floor-sql'), MAP_SIZE_MB)
  return {
    async once() {
      const start = performance.now()
      const row = newRunRow('oneStep', {})
      sql.transactionSync(() => {
        sql.putSync(runKey(row.run_id), row)
        sql.putSync(journalKey(row.run_id, 0), stepEntry(row.run_id, 0, 'only', 'ww=='))
      })
      await sql.flushed
      const end = finished(row, { ok: true }, 1)
      sql.transactionSync(() => {
        sql.putSync(eventKey(row.run_id, 0), end.event)
        sql.putSync(runKey(row.run_id), end.row)
      })
      await sql.flushed
      return performance.now() - start
    },
    close: () => sql.close(),
  }
}

/**
 * POST /workflows/{name}/run of a one-step workflow (it waits for the run and answers with its
 * handler), one request at a time, through a stack started by startStack from YAML as
 * `npm start` starts one: LMDB runs and sessions stores in a temp directory, the workflow actor
 * and the stores on the pool. The baseline reads the same request and answers with a body of
 * the size troupe's has, and does nothing else.
 */
export async function workflowHttpLatency(rounds: number): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-bench-wf-http-'))
  const yaml = `
version: 2
image_name: bench-workflows
storage:
  backends:
    kv: { type: kv_lmdb, path: ${dir}/kv }
    sql: { type: sql_lmdb, path: ${dir}/sql }
  stores:
    metadata: { backend: kv, namespace: registry }
    runs: { backend: sql, table_name: workflow_runs }
    sessions: { backend: kv, namespace: workflow_sessions }
workflows:
  - name: oneStep
    module: '${oneStep.url}'
    export: oneStep
`
  const stack = await startStack(await startBenchSystem(WORKERS), parseConfig(yaml, {}, join(dir, 'bench.yaml')), pino({ level: 'warn' }), { port: 0, host: '127.0.0.1' })
  const runUrl = `${stack.url}/workflows/oneStep/run`
  const answer = await fetch(runUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: BODY })
  const handler = await answer.text()
  if (answer.status !== 200 || (JSON.parse(handler) as { status?: string }).status !== 'completed') throw new Error(`POST ${runUrl}: ${answer.status} ${handler}`)
  const bare = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(handler) })
      res.end(handler)
    })
  })
  const bareUrl = await listen(bare)
  const floor = syncFloor(dir)
  try {
    return await measure(subjects, rounds, 1, async () => {
      const p50 = await p50InTurn({
        bare: () => sequential(bareUrl, SEQUENTIAL),
        floor: async () => {
          const latencies: number[] = []
          for (let i = 0; i < SEQUENTIAL; i++) latencies.push(await floor.once())
          return latencies
        },
        troupe: () => sequential(runUrl, SEQUENTIAL),
      })
      return [
        { value: p50.troupe, baseline: p50.bare },
        { value: p50.troupe - p50.bare, baseline: p50.bare },
        { value: p50.floor, baseline: p50.bare },
      ]
    })
  } finally {
    await floor.close()
    await new Promise(resolve => bare.close(resolve))
    await stack.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}
