#!/usr/bin/env node
// npm run bench [-- --json] [-- --only PREFIX] [-- --rounds N]
import { parseArgs } from 'node:util'
import { askRtt } from './ask-rtt.js'
import { formatTable, type BenchResult } from './harness.js'
import { httpThroughput } from './http.js'
import { kvStoreThroughput } from './kv-store.js'
import { sameThread } from './same-thread.js'
import { tellThroughput } from './tell-throughput.js'

interface Bench {
  /** The names it reports, for --only. */
  readonly names: readonly string[]
  readonly run: (rounds: number) => Promise<BenchResult[]>
}

const benches: Bench[] = [
  { names: ['ask_rtt_p50_pool', 'ask_rtt_p99_pool'], run: askRtt },
  { names: ['tell_tput_pool', 'tell_tput_pool_vs_piscina'], run: tellThroughput },
  { names: ['tell_tput_same_thread'], run: sameThread },
  { names: ['kv_put_tput_actor', 'kv_get_tput_actor', 'kv_put_tput_actor_per_ask', 'kv_get_tput_actor_per_ask'], run: kvStoreThroughput },
  { names: ['http_models_rps', 'http_chat_rps', 'http_chat_overhead_p50_ms'], run: rounds => httpThroughput(Math.min(rounds, 3)) },
]

const { values } = parseArgs({
  options: { json: { type: 'boolean' }, only: { type: 'string' }, rounds: { type: 'string' } },
})
const rounds = values.rounds === undefined ? 5 : Number(values.rounds)
if (!Number.isInteger(rounds) || rounds < 1) throw new TypeError(`--rounds: expected a positive integer, got ${values.rounds}`)
const only = values.only
const selected = benches.filter(bench => only === undefined || bench.names.some(name => name.startsWith(only)))
if (selected.length === 0) {
  process.stderr.write(`--only ${only}: no benchmark starts with that; names: ${benches.flatMap(b => b.names).join(', ')}\n`)
  process.exit(2)
}

const results: BenchResult[] = []
for (const bench of selected) {
  process.stderr.write(`running ${bench.names.join(', ')} (${rounds} rounds)…\n`)
  for (const result of await bench.run(rounds)) {
    if (only !== undefined && !result.name.startsWith(only)) continue
    results.push(result)
    if (values.json) {
      const { name, unit, value, baseline, baseline_value, ratio } = result
      process.stdout.write(`${JSON.stringify({ name, unit, value, baseline, baseline_value, ratio, spread: result.spread, rounds: result.rounds })}\n`)
    }
  }
}
if (!values.json) process.stdout.write(`${formatTable(results)}\n`)
