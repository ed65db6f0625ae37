import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { Agent, createServer, request as httpRequest, type Server } from 'node:http'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Worker } from 'node:worker_threads'
import { pino } from 'pino'
import { parseConfig } from '../src/config/index.js'
import { startStack, type RunningStack } from '../src/supervisor/stack.js'
import { fixture, listen, startBenchSystem } from './context.js'
import { measure, median, type BenchResult, type Subject } from './harness.js'

const run = promisify(execFile)
const autocannonBin = createRequire(import.meta.url).resolve('autocannon/autocannon.js')

const MODELS = 20
/** Each load runs SLICES times for SLICE_S seconds, taking turns with the load it is compared to. */
const SLICE_S = 1
const SLICES = 3
const CONNECTIONS = 32
/** Requests one at a time, per slice: SLICES of them, taking turns like the loads. */
const SEQUENTIAL = 700

const subjects: Subject[] = [
  { name: 'http_models_rps', unit: 'req/s', baseline: 'bare node:http returning a list of the same size', better: 'higher', target: 'ratio >= 0.8' },
  { name: 'http_chat_rps', unit: 'req/s', baseline: 'bare node:http proxy to the same upstream', better: 'higher', target: 'ratio >= 0.8' },
  {
    name: 'http_chat_rps_sync',
    unit: 'req/s',
    baseline: 'bare node:http proxy to the same upstream (value: troupe with write_mode: sync)',
    better: 'higher',
  },
  {
    name: 'http_chat_rps_unrecorded',
    unit: 'req/s',
    baseline: 'bare node:http proxy to the same upstream (value: troupe with no inference store)',
    better: 'higher',
  },
  {
    name: 'http_chat_rps_hop_floor',
    unit: 'req/s',
    baseline: 'bare node:http proxy to the same upstream (value: the same proxy with its upstream call on a bare worker)',
    better: 'higher',
  },
  { name: 'http_chat_overhead_p50_ms', unit: 'ms', baseline: 'bare proxy p50, one request at a time (value: troupe p50 minus it)', better: 'lower', target: 'value <= 0.3 ms' },
  { name: 'http_chat_sync_overhead_p50_ms', unit: 'ms', baseline: 'bare proxy p50, one request at a time (value: troupe with write_mode: sync, p50 minus it)', better: 'lower' },
  {
    name: 'http_chat_hop_floor_p50_ms',
    unit: 'ms',
    baseline: 'bare proxy p50 (value: the same proxy with its upstream call on a bare worker, minus it)',
    better: 'lower',
  },
]

interface Load {
  readonly requests: number
  readonly seconds: number
}

/** Load from autocannon in its own process on 127.0.0.1, bounded by duration; `headers` go with every request. */
async function load(url: string, body?: string, headers: Readonly<Record<string, string>> = {}): Promise<Load> {
  const args = [autocannonBin, '--json', '-c', String(CONNECTIONS), '-d', String(SLICE_S)]
  if (body !== undefined) args.push('-m', 'POST', '-H', 'content-type=application/json', '-b', body)
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}=${value}`)
  args.push(url)
  const { stdout } = await run(process.execPath, args, { maxBuffer: 16 * 1024 * 1024 })
  const result = JSON.parse(stdout) as { requests: { total: number }; duration: number; non2xx: number; errors: number; timeouts: number }
  if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0) throw new Error(`${url}: ${result.non2xx} non-2xx, ${result.errors} errors, ${result.timeouts} timeouts under load`)
  return { requests: result.requests.total, seconds: result.duration }
}

/**
 * Requests a second of each server, loaded in turn SLICES times: a stall of the shared machine
 * then falls on all alike, where in one long load each it fell on whichever was running.
 */
export async function loadInTurn<K extends string>(servers: Record<K, { url: string; body?: string; headers?: Record<string, string> }>): Promise<Record<K, number>> {
  const sides = Object.keys(servers) as K[]
  const total = new Map<K, Load>(sides.map(side => [side, { requests: 0, seconds: 0 }]))
  for (let i = 0; i < SLICES; i++) {
    for (const side of sides) {
      const slice = await load(servers[side].url, servers[side].body, servers[side].headers)
      const sum = total.get(side)!
      total.set(side, { requests: sum.requests + slice.requests, seconds: sum.seconds + slice.seconds })
    }
  }
  return Object.fromEntries(sides.map(side => [side, total.get(side)!.requests / total.get(side)!.seconds])) as Record<K, number>
}

/**
 * Latencies in ms of `count` sequential requests from a client in its own process, at µs
 * resolution: POSTs of `body`, or GETs when it is empty; each must answer `status`.
 */
async function sequential(url: string, body: string, count: number, status = 200): Promise<number[]> {
  const { stdout } = await run(process.execPath, [fileURLToPath(fixture('sequential-client')), url, body, String(count), String(status)])
  return (JSON.parse(stdout) as { latencies: number[] }).latencies
}

/**
 * p50 latency of one request at a time through each server, measured in turn SLICES times each
 * and pooled, for the reason loadInTurn gives.
 */
export async function p50InTurn<K extends string>(servers: Record<K, { url: string; body: string; status?: number }>, count = SEQUENTIAL): Promise<Record<K, number>> {
  const sides = Object.keys(servers) as K[]
  const all = new Map<K, number[]>(sides.map(side => [side, []]))
  for (let i = 0; i < SLICES; i++) {
    for (const side of sides) all.get(side)!.push(...(await sequential(servers[side].url, servers[side].body, count, servers[side].status)))
  }
  return Object.fromEntries(sides.map(side => [side, median(all.get(side)!)])) as Record<K, number>
}

/**
 * The upstream runs in a process of its own, as a model server does. In the benchmark's own
 * thread it cost the bare proxy nothing to reach (no thread to wake), while troupe's provider,
 * on a worker, woke the main thread to reach it and was woken by its answer: two thread wakes
 * that no deployment has, charged to troupe alone.
 */
export async function startUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  const child = spawn(process.execPath, [fileURLToPath(fixture('upstream-process'))], { stdio: ['pipe', 'pipe', 'inherit'] })
  let seen = ''
  const url = await new Promise<string>((resolve, reject) => {
    child.on('error', reject)
    child.on('exit', code => reject(new Error(`the upstream process exited (${code}) before it was listening`)))
    child.stdout.on('data', (chunk: Buffer) => {
      seen += chunk.toString('utf8')
      if (seen.includes('\n')) resolve(seen.slice(0, seen.indexOf('\n')))
    })
  })
  return {
    url,
    close: async () => {
      const exited = once(child, 'exit')
      child.stdin.end()
      await exited
    },
  }
}

/**
 * The floor of any provider on a worker: the bare proxy, but its upstream call crosses to a bare
 * worker (one MessagePort message each way) that makes it with undici. What troupe adds past
 * this is its own; this much is the thread hop.
 */
function hopProxy(upstream: string): { server: Server; close(): Promise<number> } {
  const worker = new Worker(fixture('hop-worker'), { workerData: { upstream } })
  const waiting = new Map<number, (answer: { status: number; body: string }) => void>()
  worker.on('message', (answer: { id: number; status: number; body: string }) => {
    waiting.get(answer.id)?.(answer)
    waiting.delete(answer.id)
  })
  let next = 0
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', chunk => chunks.push(chunk as Buffer))
    req.on('end', () => {
      const id = next++
      waiting.set(id, ({ status, body }) => {
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
        res.end(body)
      })
      worker.postMessage({ id, body: Buffer.concat(chunks).toString('utf8') })
    })
  })
  return { server, close: () => worker.terminate() }
}

/** The baseline proxy: forwards the body to the upstream and the answer back, nothing else. */
function bareProxy(upstream: string): Server {
  const target = new URL(upstream)
  const agent = new Agent({ keepAlive: true, maxSockets: 64 })
  return createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', chunk => chunks.push(chunk as Buffer))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      const out = httpRequest(
        { host: target.hostname, port: target.port, path: `${target.pathname}/chat/completions`, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': body.length } },
        upstreamRes => {
          const parts: Buffer[] = []
          upstreamRes.on('data', chunk => parts.push(chunk as Buffer))
          upstreamRes.on('end', () => {
            const reply = Buffer.concat(parts)
            res.writeHead(upstreamRes.statusCode ?? 502, { 'content-type': 'application/json', 'content-length': reply.length })
            res.end(reply)
          })
        },
      )
      out.end(body)
    })
  })
}

/** GET /v1/models and non-streaming chat through the whole stack, against bare node:http doing the same. */
export async function httpThroughput(rounds: number): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-bench-http-'))
  const upstream = await startUpstream()
  const models = Array.from({ length: MODELS }, (_, i) => `    - { model_id: model-${i}, provider_id: up, provider_model_id: gpt-test }`).join('\n')
  /**
   * The stack under test, its inference store in a write mode; `record: false` leaves the store
   * out, to show what recording costs.
   */
  const yaml = (record: false | 'async' | 'sync', under: string): string => `
providers:
  inference: [{ provider_id: up, provider_type: remote::openai, config: { base_url: ${upstream.url} } }]
storage:
  backends:
    kv: { type: kv_lmdb, path: ${under}/kv }
    sql: { type: sql_lmdb, path: ${under}/sql }
  stores:
    metadata: { backend: kv, namespace: registry }
${record === false ? '' : `    inference: { backend: sql, table_name: inference_store, write_mode: ${record} }`}
registered_resources:
  models:
${models}
`
  // Each stack in a system of its own (a stack's actor names are unique in one); stop() shuts it down.
  const start = async (record: false | 'async' | 'sync', under: string): Promise<RunningStack> =>
    startStack(await startBenchSystem(1), parseConfig(yaml(record, under), {}, 'bench.yaml'), pino({ level: 'warn' }), { port: 0, host: '127.0.0.1' })
  const stack = await start('async', join(dir, 'recorded'))
  const synced = await start('sync', join(dir, 'synced'))
  const unrecorded = await start(false, join(dir, 'unrecorded'))
  // The bare list server answers with the same bytes troupe's /v1/models does.
  const listBody = await (await fetch(`${stack.url}/v1/models`)).text()
  const bareList = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(listBody) })
    res.end(listBody)
  })
  const bareListUrl = await listen(bareList)
  const proxy = bareProxy(upstream.url)
  const proxyUrl = await listen(proxy)
  const hop = hopProxy(upstream.url)
  const hopUrl = await listen(hop.server)
  const chat = JSON.stringify({ model: 'model-0', messages: [{ role: 'user', content: 'benchmark' }] })
  const bareChat = JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'benchmark' }] })
  try {
    // One warm-up round: troupe has more code for the JIT to settle than the bare servers.
    return await measure(subjects, rounds, 1, async () => {
      const models = await loadInTurn({ bare: { url: bareListUrl }, troupe: { url: `${stack.url}/v1/models` } })
      const chats = await loadInTurn({
        bare: { url: proxyUrl, body: bareChat },
        troupe: { url: `${stack.url}/v1/chat/completions`, body: chat },
        synced: { url: `${synced.url}/v1/chat/completions`, body: chat },
        unrecorded: { url: `${unrecorded.url}/v1/chat/completions`, body: chat },
        hop: { url: hopUrl, body: bareChat },
      })
      // autocannon reports whole milliseconds: the overhead needs a finer clock.
      const one = await p50InTurn({
        bare: { url: proxyUrl, body: bareChat },
        hop: { url: hopUrl, body: bareChat },
        troupe: { url: `${stack.url}/v1/chat/completions`, body: chat },
        synced: { url: `${synced.url}/v1/chat/completions`, body: chat },
      })
      return [
        { value: models.troupe, baseline: models.bare },
        { value: chats.troupe, baseline: chats.bare },
        { value: chats.synced, baseline: chats.bare },
        { value: chats.unrecorded, baseline: chats.bare },
        { value: chats.hop, baseline: chats.bare },
        { value: one.troupe - one.bare, baseline: one.bare },
        { value: one.synced - one.bare, baseline: one.bare },
        { value: one.hop - one.bare, baseline: one.bare },
      ]
    })
  } finally {
    await stack.stop()
    await synced.stop()
    await unrecorded.stop()
    await new Promise(resolve => bareList.close(resolve))
    await new Promise(resolve => proxy.close(resolve))
    await new Promise(resolve => hop.server.close(resolve))
    await hop.close()
    await upstream.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
