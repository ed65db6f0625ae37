import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs'
import { request, Agent } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { loadConfigFile } from '../src/config/index.js'
import { startStack, type RunningStack } from '../src/supervisor/stack.js'
import { serveReloads } from '../src/supervisor/triggers.js'
import { startBenchSystem } from './context.js'
import { fakeOpenAI, type FakeUpstream } from './fixtures/upstreams.js'
import { measure, median, type BenchResult, type Subject } from './harness.js'

/** Reloads per side per round; a round's figure is their median. */
const RELOADS_PER_ROUND = 8
/** Clients sending chat completions while the hot reloads happen. */
const LOAD_CLIENTS = 4
const WORKERS = 2
const POLL_MS = 1

const subjects: Subject[] = [
  {
    name: 'reload_hot_ms',
    unit: 'ms',
    baseline: 'a bare fs.watch of the same directory noticing the same write and hashing the file (p50)',
    better: 'lower',
    target: 'value <= 100 ms',
  },
  {
    name: 'reload_hot_failed_requests',
    unit: 'requests',
    baseline: 'chat completions sent under load during the hot reloads (value: how many failed)',
    better: 'lower',
    target: 'value = 0',
  },
  {
    name: 'reload_provider_ms',
    unit: 'ms',
    baseline: 'the bare fs.watch noticing the write, then one node:http request straight to the upstream (p50)',
    better: 'lower',
  },
]

const agent = new Agent({ keepAlive: true })

function call(url: string, method: 'GET' | 'POST', body?: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const req = request(url, { method, agent, headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } }, res => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(payload)
  })
}

const pause = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))
const CHAT = { model: 'gpt', messages: [{ role: 'user', content: 'hi' }] }

function yamlFor(dir: string, upstream: FakeUpstream, variant: { image: string; level: string; timeoutMs: number }): string {
  return `
version: 2
image_name: ${variant.image}
providers:
  inference:
    - { provider_id: up, provider_type: remote::openai, config: { base_url: '${upstream.url}', api_key: sk-test } }
    - { provider_id: other, provider_type: remote::openai, config: { base_url: '${upstream.url}', api_key: sk-test, timeout_ms: ${variant.timeoutMs} } }
storage:
  backends:
    kv: { type: kv_lmdb, path: ${dir}/kv }
    sql: { type: sql_lmdb, path: ${dir}/sql }
  stores:
    metadata: { backend: kv, namespace: registry }
    inference: { backend: sql, table_name: completions }
registered_resources:
  models:
    - { model_id: gpt, provider_id: up, provider_model_id: gpt-test }
    - { model_id: other-gpt, provider_id: other, provider_model_id: gpt-test }
logging: { level: ${variant.level} }
`
}

async function generation(url: string): Promise<number> {
  return (JSON.parse((await call(`${url}/v1/inspect/config`, 'GET')).body) as { generation: number }).generation
}

/** Polls until the stack's generation passes `from`: the reload, hot fields on every thread included, is done. */
async function untilGeneration(url: string, from: number): Promise<void> {
  while ((await generation(url)) <= from) await pause(POLL_MS)
}

/**
 * From writing stack.yaml to the change applied, through the same trigger `npm start` uses (the
 * file watch, src/supervisor/triggers.ts), on a stack started as `npm start` starts one. Hot:
 * image_name and logging.level (which reaches every worker before the reload reports done),
 * under a steady chat load whose failures are counted. Provider: one provider's timeout_ms
 * (restart-class), to the first completion that provider serves after its restart. The
 * baseline is the notification floor: a bare fs.watch of another file in the same kind of
 * directory noticing a write of the same size and hashing it (plus, for the provider, one
 * request straight to the upstream).
 */
export async function reloadBench(rounds: number): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-bench-reload-'))
  const upstream = await fakeOpenAI({ apiKey: 'sk-test' })
  const file = join(dir, 'stack.yaml')
  let variant = { image: 'bench-a', level: 'warn', timeoutMs: 60_000 }
  writeFileSync(file, yamlFor(dir, upstream, variant))
  const log = pino({ level: 'warn' })
  const stack: RunningStack = await startStack(await startBenchSystem(WORKERS), await loadConfigFile(file), log, { port: 0, host: '127.0.0.1' })
  const triggers = serveReloads(stack, log, true)

  const bareDir = mkdtempSync(join(tmpdir(), 'troupe-bench-reload-bare-'))
  const bareFile = join(bareDir, 'stack.yaml')
  writeFileSync(bareFile, readFileSync(file))
  let noticed: (() => void) | undefined
  const bareWatch = watch(bareDir, { persistent: false }, () => {
    createHash('sha256').update(readFileSync(bareFile)).digest('hex')
    noticed?.()
  })
  const bareReload = async (extra?: () => Promise<unknown>): Promise<number> => {
    const seen = new Promise<void>(resolve => (noticed = resolve))
    const start = performance.now()
    writeFileSync(bareFile, yamlFor(dir, upstream, { ...variant, image: `bare-${start}` }))
    await seen
    noticed = undefined
    await extra?.()
    return performance.now() - start
  }
  const write = (next: Partial<typeof variant>): void => {
    variant = { ...variant, ...next }
    writeFileSync(file, yamlFor(dir, upstream, variant))
  }

  let sent = 0
  let failed = 0
  try {
    return await measure(subjects, rounds, 1, async () => {
      // Hot, under load.
      let loading = true
      const clients = Array.from({ length: LOAD_CLIENTS }, async () => {
        while (loading) {
          sent++
          const answer = await call(`${stack.url}/v1/chat/completions`, 'POST', CHAT).catch(() => ({ status: 0, body: '' }))
          if (answer.status !== 200) failed++
        }
      })
      const failedBefore = failed
      const sentBefore = sent
      const hot: number[] = []
      const bareHot: number[] = []
      for (let i = 0; i < RELOADS_PER_ROUND; i++) {
        bareHot.push(await bareReload())
        const from = await generation(stack.url)
        const start = performance.now()
        write({ image: `bench-${from}`, level: variant.level === 'warn' ? 'error' : 'warn' })
        await untilGeneration(stack.url, from)
        hot.push(performance.now() - start)
      }
      loading = false
      await Promise.all(clients)

      // A provider's restart-class field, to its first served request.
      const provider: number[] = []
      const bareProvider: number[] = []
      for (let i = 0; i < RELOADS_PER_ROUND; i++) {
        bareProvider.push(await bareReload(() => call(`${upstream.url}/chat/completions`, 'POST', CHAT)))
        const from = await generation(stack.url)
        const start = performance.now()
        write({ timeoutMs: variant.timeoutMs === 60_000 ? 61_000 : 60_000 })
        await untilGeneration(stack.url, from)
        const answer = await call(`${stack.url}/v1/chat/completions`, 'POST', { ...CHAT, model: 'other-gpt' })
        if (answer.status !== 200) throw new Error(`the restarted provider answered ${answer.status}: ${answer.body}`)
        provider.push(performance.now() - start)
      }
      return [
        { value: median(hot), baseline: median(bareHot) },
        { value: failed - failedBefore, baseline: sent - sentBefore },
        { value: median(provider), baseline: median(bareProvider) },
      ]
    })
  } finally {
    bareWatch.close()
    triggers.close()
    agent.destroy()
    await stack.stop()
    await upstream.close()
    rmSync(dir, { recursive: true, force: true })
    rmSync(bareDir, { recursive: true, force: true })
  }
}
