import type { MessagePort } from 'node:worker_threads'
import type { ActorRef } from '../src/index.js'
import { bareWorker, startBenchSystem } from './context.js'
import { benchSink, type BenchMessage } from './fixtures/behaviors.js'
import { elapsedUs, measure, percentile, type BenchResult, type Subject } from './harness.js'

const SAMPLES = 3000

const subjects: Subject[] = [
  { name: 'ask_rtt_p50_pool', unit: 'us', baseline: 'bare MessagePort round trip (p50)', better: 'lower', target: 'ratio <= 1.2' },
  { name: 'ask_rtt_p99_pool', unit: 'us', baseline: 'bare MessagePort round trip (p99)', better: 'lower' },
]

/** One ask in flight at a time to an actor on a pool worker, against a bare port echo. */
export async function askRtt(rounds: number): Promise<BenchResult[]> {
  const system = await startBenchSystem()
  const ref = await system.spawn(benchSink, { placement: 'pool' })
  const bare = await bareWorker({ mode: 'echo' })
  try {
    return await measure(subjects, rounds, 1, async () => {
      const base = await bareRoundTrips(bare.port)
      const troupe = await askRoundTrips(ref)
      return [
        { value: percentile(troupe, 50), baseline: percentile(base, 50) },
        { value: percentile(troupe, 99), baseline: percentile(base, 99) },
      ]
    })
  } finally {
    await bare.close()
    await system.shutdown()
  }
}

async function askRoundTrips(ref: ActorRef<BenchMessage>): Promise<number[]> {
  const samples: number[] = []
  for (let i = 0; i < SAMPLES; i++) {
    const start = process.hrtime.bigint()
    await ref.ask({ type: 'echo', value: i })
    samples.push(elapsedUs(start))
  }
  return samples.sort((a, b) => a - b)
}

async function bareRoundTrips(port: MessagePort): Promise<number[]> {
  const samples: number[] = []
  let answer: (() => void) | undefined
  const onMessage = (): void => answer?.()
  port.on('message', onMessage)
  for (let i = 0; i < SAMPLES; i++) {
    const start = process.hrtime.bigint()
    await new Promise<void>(resolve => {
      answer = resolve
      port.postMessage({ type: 'echo', value: i })
    })
    samples.push(elapsedUs(start))
  }
  port.off('message', onMessage)
  return samples.sort((a, b) => a - b)
}
