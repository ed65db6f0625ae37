import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { parseConfig } from '../src/config/index.js'
import { startStack, type RunningStack } from '../src/supervisor/stack.js'
import { listen, startBenchSystem } from './context.js'
import { fakeOpenAI, type FakeUpstream } from './fixtures/upstreams.js'
import { measure, type BenchResult, type Subject } from './harness.js'
import { p50InTurn } from './http.js'

/** Sequential requests per side per slice (http.ts takes the sides in turn, in slices). */
const REQUESTS = 400
const PROVIDERS = 5

const subjects: Subject[] = [
  {
    name: 'models_list_p50_us',
    unit: 'us',
    baseline: 'bare node:http answering the same body (value: GET /v1/models with 5 providers, one hanging on its model list)',
    better: 'lower',
  },
  {
    name: 'models_list_hanging_vs_answering',
    unit: 'us',
    baseline: 'the same list with all 5 providers answering (value: with one hanging; ratio ~1: the list does not wait on it)',
    better: 'lower',
    target: 'ratio <= 1.1',
  },
  {
    name: 'circuit_open_503_p50_ms',
    unit: 'ms',
    baseline: 'bare node:http answering a 503 JSON error (value: a chat for a model whose provider is circuit-open, p50 time to its 503)',
    better: 'lower',
    target: 'value <= 1 ms',
  },
]

/**
 * The reconciler's promises, measured: a model list is served from the last snapshot however a
 * backend behaves, and a request for a model on a circuit-open provider is refused at once.
 *
 * Two stacks of five OpenAI-compatible providers with `refresh_models`, four answering; the
 * fifth answers its model list in one stack and never in the other (its listing stays in
 * flight the whole run: a 10-minute timeout, cycles every 200 ms that join it). A third stack's
 * only provider refuses connections, so its breaker is open for the whole run.
 */
export async function reconcilerBench(rounds: number): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-bench-reconciler-'))
  const upstreams: FakeUpstream[] = []
  for (let i = 0; i < PROVIDERS; i++) upstreams.push(await fakeOpenAI())
  // The fifth answers with an empty list, so that both stacks list the same served models (the
  // four others' two each): the lists compared differ only in whether the fifth has answered.
  upstreams[PROVIDERS - 1]!.models = []
  const hanging = await fakeOpenAI()
  hanging.listing = 'hang'
  const refused = await fakeOpenAI()
  const refusedUrl = refused.url
  await refused.close()

  const providers = (last: FakeUpstream): string =>
    [...upstreams.slice(0, PROVIDERS - 1), last].map((u, i) => `    - { provider_id: p${i}, provider_type: remote::openai, config: { base_url: ${u.url}, refresh_models: true } }`).join('\n')
  const yaml = (providerList: string, reconciler: string, models: string) => `
providers:
  inference:
${providerList}
troupe:
  reconciler: ${reconciler}
registered_resources:
  models:
${models}
`
  const models = Array.from({ length: PROVIDERS }, (_, i) => `    - { model_id: model-${i}, provider_id: p${i}, provider_model_id: gpt-test }`).join('\n')
  const cycling = '{ interval_ms: 200, timeout_ms: 600000 }'
  const start = async (text: string): Promise<RunningStack> => startStack(await startBenchSystem(1), parseConfig(text, {}, 'bench.yaml'), pino({ level: 'silent' }), { port: 0, host: '127.0.0.1' })
  const answering = await start(yaml(providers(upstreams[PROVIDERS - 1]!), cycling, models))
  const withHanging = await start(yaml(providers(hanging), cycling, models))
  const open = await start(yaml(`    - { provider_id: down, provider_type: remote::openai, config: { base_url: ${refusedUrl} } }`, '{ failure_threshold: 1, backoff_ms: 600000, max_backoff_ms: 600000 }', '    - { model_id: down-model, provider_id: down }'))
  const stacks = [answering, withHanging, open]
  try {
    // The lists to compare: each once it shows the four listing providers' models (and, for the
    // answering stack, the fifth's empty answer).
    const served = (PROVIDERS - 1) * 2
    await settledList(withHanging, served)
    await waitForCycle(answering)
    const body = await settledList(answering, served)
    const bare = createServer((req, res) => {
      const text = req.method === 'GET' ? body : JSON.stringify({ error: { code: 'provider_unavailable', message: "model 'down-model': provider 'down' is unreachable", param: null, type: 'api_error' } })
      res.writeHead(req.method === 'GET' ? 200 : 503, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
      res.end(text)
    })
    const bareUrl = await listen(bare)
    const chat = JSON.stringify({ model: 'down-model', messages: [{ role: 'user', content: 'benchmark' }] })
    await waitForOpen(open, chat)
    try {
      return await measure(subjects, rounds, 1, async () => {
        const p50 = await p50InTurn({
          bareList: { url: bareUrl, body: '', status: 200 },
          answering: { url: `${answering.url}/v1/models`, body: '', status: 200 },
          hanging: { url: `${withHanging.url}/v1/models`, body: '', status: 200 },
          bare503: { url: `${bareUrl}/v1/chat/completions`, body: chat, status: 503 },
          open: { url: `${open.url}/v1/chat/completions`, body: chat, status: 503 },
        }, REQUESTS)
        return [
          { value: p50.hanging * 1000, baseline: p50.bareList * 1000 },
          { value: p50.hanging * 1000, baseline: p50.answering * 1000 },
          { value: p50.open, baseline: p50.bare503 },
        ]
      })
    } finally {
      await new Promise(resolve => bare.close(resolve))
    }
  } finally {
    for (const stack of stacks) await stack.stop()
    for (const upstream of [...upstreams, hanging]) await upstream.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The /v1/models body once it lists exactly `served` provider_id/model entries besides the registered ones. */
async function settledList(stack: RunningStack, served: number): Promise<string> {
  for (let attempt = 0; attempt < 500; attempt++) {
    const text = await (await fetch(`${stack.url}/v1/models`)).text()
    const data = (JSON.parse(text) as { data: Array<{ id: string; available: boolean | null }> }).data
    const registeredKnown = data.filter(m => /^model-\d$/.test(m.id)).filter(m => m.available !== null).length
    if (data.filter(m => /^p\d\//.test(m.id)).length === served && registeredKnown >= PROVIDERS - 1) return text
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  throw new Error(`${stack.url}: the served models never showed in /v1/models`)
}

/** Waits until every provider of the answering stack has answered once (model-4 too shows available). */
async function waitForCycle(stack: RunningStack): Promise<void> {
  for (let attempt = 0; attempt < 500; attempt++) {
    const runtime = (await (await fetch(`${stack.url}/v1/inspect/runtime`)).json()) as { providers: Array<{ reachable: boolean | null }> }
    if (runtime.providers.every(p => p.reachable === true)) return
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  throw new Error(`${stack.url}: the providers never all answered`)
}

/** Waits until the circuit-open stack refuses its model with 503. */
async function waitForOpen(stack: RunningStack, chat: string): Promise<void> {
  for (let attempt = 0; attempt < 500; attempt++) {
    const res = await fetch(`${stack.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chat })
    await res.text()
    if (res.status === 503) return
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  throw new Error(`${stack.url}: the breaker never opened`)
}
