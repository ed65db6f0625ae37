import { startBenchSystem } from './context.js'
import { benchPump, benchSink } from './fixtures/behaviors.js'
import { measure, type BenchResult, type Subject } from './harness.js'

const TELLS = 1_000_000
const CHUNK = 1000

const subjects: Subject[] = [
  {
    name: 'tell_tput_same_thread',
    unit: 'msg/s',
    baseline: 'bare in-thread queue drained per microtask',
    better: 'higher',
    target: '>= 5,000,000 msg/s',
  },
]

/** Tells between two `main` actors: no encoding, no thread hop; the kernel's own cost per message. */
export async function sameThread(rounds: number): Promise<BenchResult[]> {
  const system = await startBenchSystem(0)
  const sink = await system.spawn(benchSink, { placement: 'main', mailbox: { capacity: CHUNK * 2 } })
  const pump = await system.spawn(benchPump, { placement: 'main' })
  let told = 0
  try {
    return await measure(subjects, rounds, 1, async () => {
      const baseline = await bareQueue()
      const start = performance.now()
      await pump.ask({ type: 'pump', to: sink, n: TELLS, chunk: CHUNK })
      const total = await sink.ask<number>({ type: 'count' })
      const value = TELLS / ((performance.now() - start) / 1000)
      if (total !== (told += TELLS)) throw new Error(`tell_tput_same_thread: counted ${total}, expected ${told}`)
      return [{ value, baseline }]
    })
  } finally {
    await system.shutdown()
  }
}

/** The same traffic through a plain array queue drained in a microtask: the floor to compare with. */
async function bareQueue(): Promise<number> {
  const queue: Array<{ type: string; i: number }> = []
  let hits = 0
  let scheduled = false
  const drain = (): void => {
    scheduled = false
    for (let i = 0; i < queue.length; i++) if (queue[i]!.type === 'hit') hits++
    queue.length = 0
  }
  const deliver = (msg: { type: string; i: number }): void => {
    queue.push(msg)
    if (!scheduled) {
      scheduled = true
      queueMicrotask(drain)
    }
  }
  const start = performance.now()
  for (let sent = 0; sent < TELLS; ) {
    const end = Math.min(TELLS, sent + CHUNK)
    for (; sent < end; sent++) deliver({ type: 'hit', i: sent })
    await null
  }
  const seconds = (performance.now() - start) / 1000
  if (hits !== TELLS) throw new Error('baseline lost messages')
  return TELLS / seconds
}
