import v8 from 'node:v8'
import vm from 'node:vm'
import type { ActorRef, ActorSystem } from '../src/index.js'
import { bareWorker, startBenchSystem } from './context.js'
import { benchSink, heapProbe, type BenchMessage } from './fixtures/behaviors.js'
import { measure, type BenchResult, type Subject } from './harness.js'

/** Actors spawned for the rate of each placement. */
const SPAWNS = 10_000
/** Actors the flatness rounds grow to, a thousand at a time. */
const GROWN = 100_000
const STEP = 1_000
/** Idle actors the memory rounds hold. */
const IDLE = 20_000

const subjects: Subject[] = [
  { name: 'spawn_rate_main', unit: 'ops/s', baseline: `new Map().set() of ${SPAWNS.toLocaleString('en')} objects (ops: actors)`, better: 'higher' },
  { name: 'spawn_rate_pool', unit: 'ops/s', baseline: `a bare worker message per actor, echoed, ${SPAWNS.toLocaleString('en')} in flight (ops: actors)`, better: 'higher' },
  { name: 'spawn_many_rate_pool', unit: 'ops/s', baseline: `a bare worker message per actor, echoed, ${SPAWNS.toLocaleString('en')} in flight (ops: actors)`, better: 'higher' },
  { name: 'spawn_rate_100k_vs_1k_main', unit: 'ops/s', baseline: 'the first thousand actors spawned on the main thread (after a warm-up thousand, spawned and stopped)', better: 'higher', target: 'ratio >= 0.8' },
  { name: 'spawn_rate_100k_vs_1k_pool', unit: 'ops/s', baseline: 'the first thousand actors spawned on the pool (after a warm-up thousand, spawned and stopped)', better: 'higher', target: 'ratio >= 0.8' },
  { name: 'shutdown_100k_ms', unit: 'ms', baseline: `a bare worker message per actor, echoed, ${GROWN.toLocaleString('en')} in flight`, better: 'lower' },
  { name: 'actor_idle_bytes_main', unit: 'bytes', baseline: 'a Map entry holding a { hits: 0 } object per actor (the counter state alone)', better: 'lower', target: 'value <= 1024 bytes' },
  { name: 'actor_idle_bytes_pool', unit: 'bytes', baseline: 'a Map entry holding a { hits: 0 } object per actor (the counter state alone)', better: 'lower', target: 'value <= 2048 bytes' },
]

const gc = (): void => {
  v8.setFlagsFromString('--expose-gc')
  const collect = vm.runInNewContext('gc') as () => void
  collect()
  collect()
}
const heapUsed = (): number => {
  gc()
  return v8.getHeapStatistics().used_heap_size
}

/** Spawns `count` counters at `placement`, all at once; their refs and the rate (actors/s). */
async function spawnMany(system: ActorSystem, placement: 'main' | 'pool', count: number): Promise<{ refs: ActorRef<BenchMessage>[]; rate: number }> {
  const start = performance.now()
  const refs = await Promise.all(Array.from({ length: count }, () => system.spawn(benchSink, { placement })))
  return { refs, rate: count / ((performance.now() - start) / 1000) }
}

/** The rate of SPAWNS actors made by one spawnMany on the pool (one message to one worker), stopped again after. */
async function spawnManyAndStop(system: ActorSystem): Promise<number> {
  const start = performance.now()
  const refs = await system.spawnMany(benchSink, Array.from({ length: SPAWNS }, () => undefined), { placement: 'pool' })
  const rate = SPAWNS / ((performance.now() - start) / 1000)
  await stopAll(system, refs)
  return rate
}

/** The rate of SPAWNS actors spawned at once at `placement`, stopped again after. */
async function spawnAndStop(system: ActorSystem, placement: 'main' | 'pool'): Promise<number> {
  const { refs, rate } = await spawnMany(system, placement, SPAWNS)
  await stopAll(system, refs)
  return rate
}

const stopAll = (system: ActorSystem, refs: readonly ActorRef[]): Promise<unknown> => Promise.all(refs.map(ref => system.stop(ref)))

/** The rate of the thousand that brings the count to GROWN against the first thousand's. */
async function flatness(system: ActorSystem, placement: 'main' | 'pool'): Promise<{ first: number; last: number }> {
  await stopAll(system, (await spawnMany(system, placement, STEP)).refs)
  const refs: ActorRef[] = []
  let first = 0
  let last = 0
  for (let made = 0; made < GROWN; made += STEP) {
    const batch = await spawnMany(system, placement, STEP)
    refs.push(...batch.refs)
    if (made === 0) first = batch.rate
    last = batch.rate
  }
  await stopAll(system, refs)
  return { first, last }
}

/** Heap bytes per idle actor (spawned, asked once), on the main thread plus, for the pool, the worker's. */
async function idleBytes(system: ActorSystem, placement: 'main' | 'pool', probe: ActorRef<{ type: 'heap' }> | undefined): Promise<number> {
  const mainBefore = heapUsed()
  const workerBefore = probe === undefined ? 0 : await probe.ask<number>({ type: 'heap' })
  const { refs } = await spawnMany(system, placement, IDLE)
  for (const ref of refs) await ref.ask({ type: 'count' })
  const mainAfter = heapUsed()
  const workerAfter = probe === undefined ? 0 : await probe.ask<number>({ type: 'heap' })
  await stopAll(system, refs)
  return (mainAfter - mainBefore + workerAfter - workerBefore) / IDLE
}

function bareMapBytes(): number {
  const before = heapUsed()
  const held = new Map<number, { hits: number }>()
  for (let i = 0; i < IDLE; i++) held.set(i, { hits: 0 })
  const after = heapUsed()
  if (held.size !== IDLE) throw new Error('the baseline map lost entries')
  return (after - before) / IDLE
}

function bareMapRate(): number {
  const start = performance.now()
  const held = new Map<number, { hits: number }>()
  for (let i = 0; i < SPAWNS; i++) held.set(i, { hits: 0 })
  if (held.size !== SPAWNS) throw new Error('the baseline map lost entries')
  return SPAWNS / ((performance.now() - start) / 1000)
}

/** Actors/s of a bare worker message per actor (`count` of them, all in flight), each echoed. */
async function bareMessageRate(port: import('node:worker_threads').MessagePort, count = SPAWNS): Promise<number> {
  const start = performance.now()
  let echoed = 0
  const done = new Promise<void>(resolve => {
    const onMessage = (): void => {
      if (++echoed === count) {
        port.off('message', onMessage)
        resolve()
      }
    }
    port.on('message', onMessage)
  })
  for (let i = 0; i < count; i++) port.postMessage({ slot: i })
  await done
  return count / ((performance.now() - start) / 1000)
}

/** How long a system holding GROWN idle pool actors takes to shut down (spawned with spawnMany, in a system of its own). */
async function shutdownMs(): Promise<number> {
  const system = await startBenchSystem(2)
  for (let made = 0; made < GROWN; made += SPAWNS) await system.spawnMany(benchSink, Array.from({ length: SPAWNS }, () => undefined), { placement: 'pool' })
  const start = performance.now()
  await system.shutdown()
  return performance.now() - start
}

/**
 * The kernel as a library user with an actor per conversation uses it: spawn rates on the main
 * thread and the pool beside their raw baselines, whether the rate stays flat as actors
 * accumulate to 100,000, and what an idle actor holds.
 */
export async function kernelScale(rounds: number): Promise<BenchResult[]> {
  const system = await startBenchSystem(1)
  const bare = await bareWorker({ mode: 'echo' })
  try {
    const probe = await system.spawn(heapProbe, { placement: 'pool' })
    return await measure(subjects, rounds, 0, async () => {
      const results = [
        { value: await spawnAndStop(system, 'main'), baseline: bareMapRate() },
        { value: await spawnAndStop(system, 'pool'), baseline: await bareMessageRate(bare.port) },
        { value: await spawnManyAndStop(system), baseline: await bareMessageRate(bare.port) },
      ]
      const main = await flatness(system, 'main')
      const pool = await flatness(system, 'pool')
      const baselineBytes = bareMapBytes()
      const shutdown = { value: await shutdownMs(), baseline: GROWN / (await bareMessageRate(bare.port, GROWN)) * 1000 }
      return [
        ...results,
        { value: main.last, baseline: main.first },
        { value: pool.last, baseline: pool.first },
        shutdown,
        { value: await idleBytes(system, 'main', undefined), baseline: baselineBytes },
        { value: await idleBytes(system, 'pool', probe), baseline: baselineBytes },
      ]
    })
  } finally {
    await bare.close()
    await system.shutdown()
  }
}
