import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { asBinary, open, type Key } from 'lmdb'
import { inferenceStore, type InferenceSettings, type InferenceStoreMessage } from '../actors/stores/inference-store.js'
import type { TableMessage, TableSpec } from '../actors/stores/protocol.js'
import { putOp } from '../actors/stores/table/rows.js'
import { tableStore } from '../actors/stores/table-store.js'
import type { ActorRef, ActorSystem } from '../src/index.js'
import { startBenchSystem } from './context.js'
import { measure, type BenchResult, type Subject } from './harness.js'

/**
 * The write path for stored chat completions, as the HTTP server uses it: a `record` ask to the
 * inference store on the main thread, which encodes the row once and hands it to the batched
 * writer, which commits batches through the table store actor on a pool worker into LMDB.
 *
 * - record_tput: records a second, WINDOW in flight (as many concurrent requests would make),
 *   until every one is committed, against raw lmdb-js writing the same bytes under the same
 *   keys (the row and its two index entries) in-thread, with async puts that lmdb-js commits in
 *   batches of its own.
 * - record_cpu_us: CPU time of the whole process (every thread: main, the store's worker,
 *   lmdb-js's commit thread, the kernel's fsyncs) per record, minus the same loop with the
 *   record ask left out, so that making the completions is not counted. Its baseline is the
 *   raw in-thread write's CPU per record.
 * - record_tput_1m_vs_empty: record_tput into a table already holding 1,000,000 completions,
 *   against the same into an empty one, in the same process: the cost must stay flat as the
 *   store grows (rows keyed by time append; only the id index takes random inserts).
 */

const RECORDS = 50_000
const WINDOW = 256
const PREFILL = 1_000_000
const TABLE = 'chat_completions'
const SETTINGS: InferenceSettings = { maxQueue: 10_000, writers: 4, writeMode: 'async', retention: undefined }

const RAW = 'raw lmdb-js async puts of the same bytes, in-thread'
const subjects: Subject[] = [
  { name: 'record_tput', unit: 'ops/s', baseline: RAW, better: 'higher', target: 'ratio >= 0.7' },
  { name: 'record_cpu_us', unit: 'us', baseline: `${RAW}: its CPU per record`, better: 'lower', target: 'value <= 15 us' },
]
const grownSubjects: Subject[] = [{ name: 'record_tput_1m_vs_empty', unit: 'ops/s', baseline: 'the same into an empty table', better: 'higher', target: 'ratio >= 0.9' }]

const LOREM = 'The quick brown fox jumps over the lazy dog while the bench records what it said. '
let serial = 0
/** A completion of a realistic size (about 900 bytes of JSON with its input), its id unique. */
function completionOf(): { completion: Record<string, unknown> & { id: string; created: number; model: string; choices: unknown[] }; messages: unknown[] } {
  const id = `chatcmpl-${(serial++).toString(36)}${Math.random().toString(36).slice(2, 10)}`
  return {
    completion: {
      id,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: 'gpt-test',
      choices: [{ index: 0, message: { role: 'assistant', content: LOREM.repeat(3) }, finish_reason: 'stop', logprobs: null }],
      usage: { prompt_tokens: 42, completion_tokens: 57, total_tokens: 99 },
    },
    messages: [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: LOREM.repeat(2) },
    ],
  }
}

/** `count` operations with WINDOW in flight; resolves when every one has. */
async function windowed(count: number, op: () => Promise<unknown>): Promise<void> {
  let left = count
  const lane = async (): Promise<void> => {
    while (left-- > 0) await op()
  }
  await Promise.all(Array.from({ length: WINDOW }, lane))
}

const cpuUs = (): number => {
  const { user, system } = process.cpuUsage()
  return user + system
}

interface Pipeline {
  readonly store: ActorRef<InferenceStoreMessage>
  readonly table: ActorRef<TableMessage>
  close(): Promise<void>
}

async function pipeline(system: ActorSystem, path: string): Promise<Pipeline> {
  const table = await system.spawn(tableStore, { placement: 'pool', args: { name: 'bench', config: { type: 'sql_lmdb', path, map_size_mb: 8192 } } })
  const store = await system.spawn(inferenceStore, { placement: 'main', args: { store: table, table: TABLE, settings: SETTINGS } })
  return {
    store,
    table,
    async close() {
      await system.stop(store)
      await system.stop(table)
    },
  }
}

/** Records `count` completions as the server does, then waits for all to be committed (a read does). */
async function recordAll(store: ActorRef<InferenceStoreMessage>, count: number, record = true): Promise<void> {
  await windowed(count, async () => {
    const { completion, messages } = completionOf()
    if (record) await store.ask({ type: 'record', completion, messages }, { timeoutMs: Infinity })
  })
  if (record) await store.ask({ type: 'list', limit: 1 })
}

/** Raw lmdb-js: the bytes the write path stores for `count` records, made beforehand, put in-thread. */
async function rawWrites(path: string, spec: TableSpec, count: number): Promise<{ ms: number; cpuUs: number }> {
  const db = open<unknown, Key>({ path, mapSize: 8192 * 1024 * 1024, compression: false })
  const present = asBinary(Uint8Array.of(0xc3))
  const writes = Array.from({ length: count }, (_, i) => {
    const { completion, messages } = completionOf()
    const put = putOp(spec, { recorded: Date.now() * 1000 + i, id: completion.id, created: completion.created, model: completion.model, completion, input_messages: messages }, 'upsert')
    const k = put.key
    return { row: ['r', TABLE, k['recorded'], k['id']] as Key, byId: ['x', TABLE, 0, k['id'], k['recorded'], k['id']] as Key, byModel: ['x', TABLE, 1, k['model'], k['recorded'], k['recorded'], k['id']] as Key, bytes: put.bytes }
  })
  const cpu = cpuUs()
  const start = performance.now()
  let last: Promise<boolean> | undefined
  for (const write of writes) {
    last = db.put(write.row, asBinary(write.bytes))
    void db.put(write.byId, present)
    void db.put(write.byModel, present)
  }
  await last
  const ms = performance.now() - start
  const used = cpuUs() - cpu
  await db.close()
  return { ms, cpuUs: used }
}

const SPEC: TableSpec = {
  name: TABLE,
  columns: { recorded: { type: 'integer' }, id: { type: 'text' }, created: { type: 'integer' }, model: { type: 'text' }, completion: { type: 'json' }, input_messages: { type: 'json' } },
  primaryKey: ['recorded', 'id'],
  indexes: [['id'], ['model', 'recorded']],
}

export async function recordThroughput(rounds: number): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-bench-record-'))
  const system = await startBenchSystem()
  try {
    let round = 0
    const results = await measure(subjects, rounds, 1, async () => {
      const at = join(dir, `round-${round++}`)
      const raw = await rawWrites(`${at}-raw`, SPEC, RECORDS)
      const recording = await pipeline(system, `${at}-troupe`)
      // Without recording first: the loop's own cost, taken moments before the one it is subtracted from.
      let cpu = cpuUs()
      await recordAll(recording.store, RECORDS, false)
      const unrecordedCpu = cpuUs() - cpu
      cpu = cpuUs()
      const start = performance.now()
      await recordAll(recording.store, RECORDS)
      const ms = performance.now() - start
      const recordedCpu = cpuUs() - cpu
      await recording.close()
      rmSync(`${at}-raw`, { recursive: true, force: true })
      rmSync(`${at}-troupe`, { recursive: true, force: true })
      return [
        { value: RECORDS / (ms / 1000), baseline: RECORDS / (raw.ms / 1000) },
        { value: Math.max(0, recordedCpu - unrecordedCpu) / RECORDS, baseline: raw.cpuUs / RECORDS },
      ]
    })
    return [...results, ...(await grownThroughput(system, dir, rounds))]
  } finally {
    await system.shutdown()
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * record_tput_1m_vs_empty. The big table is filled once, through the table store with batches of
 * puts (the rows the inference store writes, without a million asks), then each round records
 * RECORDS into it and RECORDS into a fresh empty table, in turn.
 */
async function grownThroughput(system: ActorSystem, dir: string, rounds: number): Promise<BenchResult[]> {
  const big = await pipeline(system, join(dir, 'grown'))
  await prefill(big.table)
  let round = 0
  try {
    return await measure(grownSubjects, rounds, 1, async () => {
      const empty = await pipeline(system, join(dir, `empty-${round}`))
      const timed = async (store: ActorRef<InferenceStoreMessage>): Promise<number> => {
        const start = performance.now()
        await recordAll(store, RECORDS)
        return performance.now() - start
      }
      // Which goes first alternates, so that neither is always the one measured warmer.
      let grownMs: number
      let emptyMs: number
      if (round++ % 2 === 0) {
        grownMs = await timed(big.store)
        emptyMs = await timed(empty.store)
      } else {
        emptyMs = await timed(empty.store)
        grownMs = await timed(big.store)
      }
      await empty.close()
      return [{ value: RECORDS / (grownMs / 1000), baseline: RECORDS / (emptyMs / 1000) }]
    })
  } finally {
    await big.close()
  }
}

async function prefill(table: ActorRef<TableMessage>): Promise<void> {
  const BATCH = 1000
  // An hour ago onwards, a microsecond apart: older than anything recorded in the rounds.
  const first = (Date.now() - 3_600_000) * 1000
  const started = performance.now()
  for (let done = 0; done < PREFILL; done += BATCH) {
    const ops = Array.from({ length: BATCH }, (_, i) => {
      const { completion, messages } = completionOf()
      return putOp(SPEC, { recorded: first + done + i, id: completion.id, created: completion.created, model: completion.model, completion, input_messages: messages }, 'upsert')
    })
    await table.ask({ type: 'transaction', ops })
    if ((done / BATCH) % 100 === 99) process.stderr.write(`record_tput_1m_vs_empty: ${done + BATCH} of ${PREFILL} stored (${Math.round((performance.now() - started) / 1000)} s)\n`)
  }
}
