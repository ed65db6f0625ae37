#!/usr/bin/env node
// npm run bench [-- --json] [-- --only PREFIX] [-- --rounds N]
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { askRtt } from './ask-rtt.js'
import { authBench } from './auth.js'
import { drainBench } from './drain.js'
import { formatTable, type BenchResult } from './harness.js'
import { httpThroughput } from './http.js'
import { kernelScale } from './kernel-scale.js'
import { kvStoreThroughput } from './kv-store.js'
import { metricsScrape } from './metrics.js'
import { recordThroughput } from './record.js'
import { reconcilerBench } from './reconciler.js'
import { reloadBench } from './reload.js'
import { sameThread } from './same-thread.js'
import { tellThroughput } from './tell-throughput.js'
import { workflowHttpLatency } from './workflows-http.js'
import { workflowResume } from './workflows-resume.js'
import { workflowRunThroughput } from './workflows-run.js'

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
  { names: ['record_tput', 'record_cpu_us', 'record_tput_1m_vs_empty'], run: recordThroughput },
  {
    names: ['http_models_rps', 'http_chat_rps', 'http_chat_rps_sync', 'http_chat_rps_unrecorded', 'http_chat_rps_hop_floor', 'http_chat_overhead_p50_ms', 'http_chat_sync_overhead_p50_ms', 'http_chat_hop_floor_p50_ms'],
    run: rounds => httpThroughput(rounds),
  },
  { names: ['http_chat_rps_jwt', 'http_chat_rps_auth'], run: authBench },
  { names: ['wf_run_tput'], run: workflowRunThroughput },
  { names: ['wf_http_run_p50_ms', 'wf_http_run_overhead_p50_ms', 'wf_http_run_sync_floor_p50_ms'], run: workflowHttpLatency },
  { names: ['wf_resume_ms'], run: workflowResume },
  { names: ['models_list_p50_us', 'models_list_hanging_vs_answering', 'circuit_open_503_p50_ms'], run: reconcilerBench },
  { names: ['reload_hot_ms', 'reload_hot_failed_requests', 'reload_provider_ms'], run: reloadBench },
  { names: ['drain_ms_n1', 'drain_ms_n16', 'drain_ms_n64'], run: drainBench },
  { names: ['metrics_scrape_ms'], run: metricsScrape },
  { names: ['spawn_rate_main', 'spawn_rate_pool', 'spawn_many_rate_pool', 'spawn_rate_100k_vs_1k_main', 'spawn_rate_100k_vs_1k_pool', 'shutdown_100k_ms', 'actor_idle_bytes_main', 'actor_idle_bytes_pool'], run: kernelScale },
]

/** Marks a result line on a child's stdout, which also carries warnings logged there. */
const RESULT = 'bench-result '

const { values } = parseArgs({
  options: { json: { type: 'boolean' }, only: { type: 'string' }, rounds: { type: 'string' }, child: { type: 'string' } },
})
const rounds = values.rounds === undefined ? 5 : Number(values.rounds)
if (!Number.isInteger(rounds) || rounds < 1) throw new TypeError(`--rounds: expected a positive integer, got ${values.rounds}`)

if (values.child !== undefined) {
  // One benchmark, in this process of its own: its results go to the parent as JSON lines.
  for (const result of await benches[Number(values.child)]!.run(rounds)) process.stdout.write(`${RESULT}${JSON.stringify(result)}\n`)
  process.exit(0)
}

const only = values.only
const selected = benches.filter(bench => only === undefined || bench.names.some(name => name.startsWith(only)))
if (selected.length === 0) {
  process.stderr.write(`--only ${only}: no benchmark starts with that; names: ${benches.flatMap(b => b.names).join(', ')}\n`)
  process.exit(2)
}

const results: BenchResult[] = []
for (const bench of selected) {
  process.stderr.write(`running ${bench.names.join(', ')} (${rounds} rounds)…\n`)
  for (const result of await inOwnProcess(benches.indexOf(bench))) {
    if (only !== undefined && !result.name.startsWith(only)) continue
    results.push(result)
    if (values.json) {
      const { name, unit, value, baseline, baseline_value, ratio } = result
      process.stdout.write(`${JSON.stringify({ name, unit, value, baseline, baseline_value, ratio, spread: result.spread, rounds: result.rounds })}\n`)
    }
  }
}
if (!values.json) process.stdout.write(`${formatTable(results)}\n`)

/**
 * Runs one benchmark in a fresh process. In one shared process a benchmark measured what the
 * earlier ones left behind: after the tell benchmark, kv gets through the store actor measured
 * 0.77 of raw LMDB, against 1.14 alone, with their baseline unchanged. A benchmark and its raw
 * baseline still share their process, round by round.
 */
function inOwnProcess(index: number): Promise<BenchResult[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', String(index), '--rounds', String(rounds)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    child.stdout.on('data', chunk => (out += chunk))
    child.on('error', reject)
    child.on('close', code => {
      if (code !== 0) return reject(new Error(`${benches[index]!.names[0]}: the benchmark process exited with ${code}`))
      const found: BenchResult[] = []
      for (const line of out.split('\n')) {
        if (line.startsWith(RESULT)) found.push(JSON.parse(line.slice(RESULT.length)) as BenchResult)
        else if (line.trim() !== '') process.stderr.write(`${line}\n`) // a log line, not a result
      }
      resolve(found)
    })
  })
}
