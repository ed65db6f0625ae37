import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { open } from 'lmdb'
import { KvClient } from '../actors/stores/kv-client.js'
import { kvStore } from '../actors/stores/kv-store.js'
import type { KvMessage } from '../actors/stores/protocol.js'
import type { ActorRef } from '../src/index.js'
import { startBenchSystem } from './context.js'
import { measure, type BenchResult, type Subject } from './harness.js'

const KEYS = 50_000
const OPS = 100_000
/** Asks in flight at once: pipelined, and well inside the store's mailbox. */
const WINDOW = 512
const NAMESPACE = 'bench'

const PUT_BASELINE = 'raw lmdb-js async put, in-thread'
const GET_BASELINE = 'raw lmdb-js get, in-thread'
const subjects: Subject[] = [
  { name: 'kv_put_tput_actor', unit: 'ops/s', baseline: PUT_BASELINE, better: 'higher', target: 'ratio >= 0.7' },
  { name: 'kv_get_tput_actor', unit: 'ops/s', baseline: GET_BASELINE, better: 'higher', target: 'ratio >= 0.7' },
  // The same operations with one ask each, bypassing the client's per-turn batching: what a caller
  // that talks to the store actor directly gets.
  { name: 'kv_put_tput_actor_per_ask', unit: 'ops/s', baseline: PUT_BASELINE, better: 'higher' },
  { name: 'kv_get_tput_actor_per_ask', unit: 'ops/s', baseline: GET_BASELINE, better: 'higher' },
]

const valueOf = (i: number) => ({ id: i, name: `item-${i}`, tags: ['a', 'b'], score: i / 7 })
const keyOf = (i: number): string => `key-${i}`

/** `n` operations with `window` of them in flight at a time. */
async function pipelined(n: number, op: (i: number) => unknown): Promise<number> {
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < n) await op(next++)
  }
  const start = performance.now()
  await Promise.all(Array.from({ length: WINDOW }, lane))
  return n / ((performance.now() - start) / 1000)
}

/** Every read hits, and finds the value written under its key: anything else is a lost or crossed write. */
function found(value: unknown, key: number): void {
  if (value === undefined || value === null) throw new Error(`a get of key-${key} missed a key that was written`)
  if ((value as { id: number }).id % KEYS !== key) throw new Error(`a get of key-${key} found ${JSON.stringify(value)}`)
}

/** Random keys, the same sequence for both sides. */
function randomKeys(n: number): number[] {
  let seed = 42
  return Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) % KEYS))
}

/**
 * Puts and gets through a kv_lmdb store actor on a pool worker, against lmdb-js in this thread.
 * The headline figures go through `KvClient`, the way the stack's own stores call it; the
 * `_per_ask` figures send one ask per operation.
 */
export async function kvStoreThroughput(rounds: number): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-bench-kv-'))
  const raw = open<ReturnType<typeof valueOf>, string>({ path: join(dir, 'raw'), compression: false })
  const system = await startBenchSystem()
  const store: ActorRef<KvMessage> = await system.spawn(kvStore, {
    placement: 'pool',
    mailbox: { capacity: 4096 },
    args: { name: 'bench', config: { type: 'kv_lmdb', path: join(dir, 'actor'), map_size_mb: 1024 } },
  })
  const kv = new KvClient(store, NAMESPACE)
  const reads = randomKeys(OPS)
  try {
    return await measure(subjects, rounds, 1, async () => {
      const rawPut = await pipelined(OPS, i => raw.put(keyOf(i % KEYS), valueOf(i)))
      const clientPut = await pipelined(OPS, i => kv.set(keyOf(i % KEYS), valueOf(i)))
      const askPut = await pipelined(OPS, i => store.ask({ type: 'set', namespace: NAMESPACE, key: keyOf(i % KEYS), value: valueOf(i) }))
      const rawGet = await pipelined(OPS, i => found(raw.get(keyOf(reads[i]!)), reads[i]!))
      const clientGet = await pipelined(OPS, async i => found(await kv.get(keyOf(reads[i]!)), reads[i]!))
      const askGet = await pipelined(OPS, async i => found(await store.ask({ type: 'get', namespace: NAMESPACE, key: keyOf(reads[i]!) }), reads[i]!))
      return [
        { value: clientPut, baseline: rawPut },
        { value: clientGet, baseline: rawGet },
        { value: askPut, baseline: rawPut },
        { value: askGet, baseline: rawGet },
      ]
    })
  } finally {
    await system.shutdown()
    await raw.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
