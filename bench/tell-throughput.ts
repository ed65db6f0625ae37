import { once } from 'node:events'
import { Piscina } from 'piscina'
import type { ActorRef } from '../src/index.js'
import { bareWorker, fixture, startBenchSystem } from './context.js'
import { benchSink, type BenchMessage } from './fixtures/behaviors.js'
import { measure, type BenchResult, type Subject } from './harness.js'

const TELLS = 200_000
const PISCINA_TASKS = 20_000
const PER_POST = 64

const subjects: Subject[] = [
  { name: 'tell_tput_pool', unit: 'msg/s', baseline: `bare MessagePort, ${PER_POST} messages per post`, better: 'higher', target: 'ratio >= 1.0' },
  { name: 'tell_tput_pool_vs_piscina', unit: 'msg/s', baseline: 'piscina.run of the same payload', better: 'higher', target: 'ratio >= 20' },
]

/** Tells from the main thread to an actor on a pool worker, many in flight. */
export async function tellThroughput(rounds: number): Promise<BenchResult[]> {
  const system = await startBenchSystem()
  const ref = await system.spawn(benchSink, { placement: 'pool' })
  const piscina = new Piscina({ filename: fixture('piscina-task').href, minThreads: 2, maxThreads: 2 })
  const bare = await bareWorker({ mode: 'count', expect: TELLS })
  let told = 0
  try {
    return await measure(subjects, rounds, 1, async () => {
      const base = await bareThroughput(bare.port)
      const troupe = await actorThroughput(ref, (told += TELLS))
      const pooled = await piscinaThroughput(piscina)
      return [
        { value: troupe, baseline: base },
        { value: troupe, baseline: pooled },
      ]
    })
  } finally {
    await bare.close()
    await piscina.destroy()
    await system.shutdown()
  }
}

async function actorThroughput(ref: ActorRef<BenchMessage>, expectTotal: number): Promise<number> {
  const start = performance.now()
  for (let i = 0; i < TELLS; i++) ref.tell({ type: 'hit', i })
  const total = await ref.ask<number>({ type: 'count' })
  const seconds = (performance.now() - start) / 1000
  if (total !== expectTotal) throw new Error(`tell_tput_pool: the actor counted ${total} tells, expected ${expectTotal}: tells were lost`)
  return TELLS / seconds
}

async function bareThroughput(port: import('node:worker_threads').MessagePort): Promise<number> {
  port.postMessage({ expect: TELLS })
  const done = once(port, 'message')
  const start = performance.now()
  for (let i = 0; i < TELLS; i += PER_POST) {
    const batch = new Array<BenchMessage>(PER_POST)
    for (let j = 0; j < PER_POST; j++) batch[j] = { type: 'hit', i: i + j }
    port.postMessage(batch)
  }
  await done
  return TELLS / ((performance.now() - start) / 1000)
}

async function piscinaThroughput(piscina: Piscina): Promise<number> {
  const start = performance.now()
  const tasks = new Array<Promise<unknown>>(PISCINA_TASKS)
  for (let i = 0; i < PISCINA_TASKS; i++) tasks[i] = piscina.run({ type: 'hit', i })
  await Promise.all(tasks)
  return PISCINA_TASKS / ((performance.now() - start) / 1000)
}
