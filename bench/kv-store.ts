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
const SLICES = 10
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

/** Operations `from` to `to` - 1 with WINDOW of them in flight at a time; the milliseconds they took. */
async function pipelined(from: number, to: number, op: (i: number) => unknown): Promise<number> {
  let next = from
  const lane = async (): Promise<void> => {
    while (next < to) await op(next++)
  }
  const start = performance.now()
  await Promise.all(Array.from({ length: WINDOW }, lane))
  return performance.now() - start
}

/**
 * Each way of doing OPS operations, measured in SLICES slices taken in turn (the first way's
 * first slice, the second's, …, then every way's second slice), as ops/s over its total time.
 * A stall of the shared disk or CPU lasting a fraction of a second then falls on every way
 * alike, where measured one way after the other it fell on whichever ran at the time: on this
 * machine a round's put ratio ranged from 0.52 to 1.0.
 */
async function interleaved<const Ways extends ReadonlyArray<(i: number) => unknown>>(ways: Ways): Promise<{ -readonly [W in keyof Ways]: number }> {
  const ms = ways.map(() => 0)
  const slice = OPS / SLICES
  for (let at = 0; at < OPS; at += slice) {
    for (const [w, op] of ways.entries()) ms[w]! += await pipelined(at, at + slice, op)
  }
  return ms.map(total => OPS / (total / 1000)) as { -readonly [W in keyof Ways]: number }
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
      const [rawPut, clientPut, askPut] = await interleaved([
        i => raw.put(keyOf(i % KEYS), valueOf(i)),
        i => kv.set(keyOf(i % KEYS), valueOf(i)),
        i => store.ask({ type: 'set', namespace: NAMESPACE, key: keyOf(i % KEYS), value: valueOf(i) }),
      ])
      const [rawGet, clientGet, askGet] = await interleaved([
        i => found(raw.get(keyOf(reads[i]!)), reads[i]!),
        async i => found(await kv.get(keyOf(reads[i]!)), reads[i]!),
        async i => found(await store.ask({ type: 'get', namespace: NAMESPACE, key: keyOf(reads[i]!) }), reads[i]!),
      ])
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
