import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { parseConfig } from '../src/config/index.js'
import { startStack } from '../src/supervisor/stack.js'
import { listen, startBenchSystem } from './context.js'
import { benchSink } from './fixtures/behaviors.js'
import { fakeOpenAI } from './fixtures/upstreams.js'
import { measure, type BenchResult, type Subject } from './harness.js'
import { p50InTurn } from './http.js'

/** Actors spawned beside the stack's own. */
const ACTORS = 1_000
/** Spawned this many at a time. */
const SPAWN_BATCH = 100
/** Sequential scrapes per side per slice (http.ts takes the sides in turn, in slices). */
const REQUESTS = 100

const subjects: Subject[] = [
  {
    name: 'metrics_scrape_ms',
    unit: 'ms',
    baseline: 'bare node:http answering a text body of the same size (value: GET /metrics, p50, with 1,000 actors besides the stack on 2 pool workers)',
    better: 'lower',
  },
]

/**
 * What a Prometheus scrape costs on a stack of 1,000 actors: every figure is gathered at the
 * scrape (the actors' stats from each thread, the inference store's queue, the reconciler's
 * snapshot), so this is the price of doing nothing on the message path.
 */
export async function metricsScrape(rounds: number): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-bench-metrics-'))
  const upstream = await fakeOpenAI()
  const system = await startBenchSystem(2)
  const yaml = `
providers:
  inference:
    - { provider_id: openai, provider_type: remote::openai, config: { base_url: ${upstream.url} } }
storage:
  backends:
    sql: { type: sql_lmdb, path: ${dir}/sql }
  stores:
    inference: { backend: sql, table_name: inference_store }
registered_resources:
  models:
    - { model_id: gpt, provider_id: openai, provider_model_id: gpt-test }
`
  const stack = await startStack(system, parseConfig(yaml, {}, 'bench.yaml'), pino({ level: 'silent' }), { port: 0, host: '127.0.0.1' })
  try {
    for (let spawned = 0; spawned < ACTORS; spawned += SPAWN_BATCH) {
      await Promise.all(Array.from({ length: Math.min(SPAWN_BATCH, ACTORS - spawned) }, () => system.spawn(benchSink)))
    }
    const url = `${stack.url}/metrics`
    const sample = await fetch(url)
    const body = await sample.text()
    const contentType = sample.headers.get('content-type') ?? 'text/plain'
    if (!body.includes('troupe_actors{kind="benchSink",status="running"} 1000')) throw new Error(`${url}: the 1,000 actors are not in the scrape`)
    const bare = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
    const bareUrl = await listen(bare)
    try {
      return await measure(subjects, rounds, 1, async () => {
        const p50 = await p50InTurn({ bare: { url: `${bareUrl}/metrics`, body: '' }, troupe: { url, body: '' } }, REQUESTS)
        return [{ value: p50.troupe, baseline: p50.bare }]
      })
    } finally {
      await new Promise(resolve => bare.close(resolve))
    }
  } finally {
    await stack.stop() // and the system it runs on
    await upstream.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
