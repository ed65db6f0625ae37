import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { pino } from 'pino'
import { parseConfig } from '../src/config/index.js'
import { startStack } from '../src/supervisor/stack.js'
import { listen, startBenchSystem } from './context.js'
import { measure, type BenchResult, type Measured, type Subject } from './harness.js'

/** Requests in flight when the drain begins: one figure each. */
const IN_FLIGHT = [1, 16, 64] as const
/** How long the upstream takes to answer: the drain waits for it. */
const UPSTREAM_MS = 200
const WORKERS = 2

const subjects: Subject[] = IN_FLIGHT.map(n => ({
  name: `drain_ms_n${n}`,
  unit: 'ms' as const,
  baseline: `a bare node:http proxy to the same upstream closing with ${n} requests in flight (server.close, then idle connections), until closed`,
  better: 'lower' as const,
}))

const CHAT = JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content: 'hi' }] })
const MODELS = JSON.stringify({ object: 'list', data: [{ id: 'gpt-test', object: 'model', created: 0, owned_by: 'bench' }] })
const ANSWER = JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion', created: 0, model: 'gpt-test', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }] })

/** An OpenAI-compatible upstream that answers every chat completion after UPSTREAM_MS, and says when it holds `n` of them. */
async function slowUpstream(): Promise<{ url: string; holding(n: number): Promise<void>; close(): Promise<void> }> {
  let held = 0
  let waiter: { n: number; resolve: () => void } | undefined
  const server = createServer((req, res) => {
    req.resume()
    // The reconciler's model list is answered at once, and is not one of the requests held.
    if (req.method === 'GET' && req.url === '/v1/models') return void res.writeHead(200, { 'content-type': 'application/json' }).end(MODELS)
    req.on('end', () => {
      held++
      if (waiter !== undefined && held >= waiter.n) waiter.resolve()
      setTimeout(() => {
        held--
        res.writeHead(200, { 'content-type': 'application/json' }).end(ANSWER)
      }, UPSTREAM_MS)
    })
  })
  const base = await listen(server)
  return {
    url: `${base}/v1`,
    holding: n => (held >= n ? Promise.resolve() : new Promise(resolve => (waiter = { n, resolve }))),
    close: () => new Promise(resolve => server.close(() => resolve())),
  }
}

/** One POST on its own connection: resolves with its status (0 when the connection failed). */
function post(url: string, body: string): Promise<number> {
  return new Promise(resolve => {
    const req = request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, res => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', () => resolve(0))
    req.end(body)
  })
}

/** `n` requests in flight at `url`, then `drain()`: ms from its start until it resolved and every request was answered 200. */
async function timeDrain(n: number, url: string, upstream: Awaited<ReturnType<typeof slowUpstream>>, drain: () => Promise<void>): Promise<number> {
  const answers = Array.from({ length: n }, () => post(url, CHAT))
  await upstream.holding(n)
  const start = performance.now()
  const [statuses] = await Promise.all([Promise.all(answers), drain()])
  const ms = performance.now() - start
  const failed = statuses.filter(status => status !== 200).length
  if (failed > 0) throw new Error(`${failed} of ${n} requests in flight at the drain were not answered 200`)
  return ms
}

/**
 * From the start of a shutdown with N chat completions in flight (their upstream answers
 * UPSTREAM_MS after it got them) until every one was answered 200 and the shutdown resolved:
 * troupe's whole stop (intake closed, HTTP and runs drained, actors and workers stopped) against
 * a bare node:http proxy to the same upstream closing its server. Each figure stands beside a
 * baseline draining the same N, so the ratio is troupe's cost over the same wait.
 */
export async function drainBench(rounds: number): Promise<BenchResult[]> {
  const upstream = await slowUpstream()
  const log = pino({ level: 'warn' })
  const troupe = async (n: number): Promise<number> => {
    const yaml = `
version: 2
image_name: bench-drain
providers:
  inference:
    - { provider_id: up, provider_type: remote::openai, config: { base_url: '${upstream.url}', connections: 128 } }
storage:
  backends:
    kv: { type: kv_memory }
  stores:
    metadata: { backend: kv, namespace: registry }
registered_resources:
  models:
    - { model_id: gpt, provider_id: up, provider_model_id: gpt-test }
troupe: { drain_timeout_ms: 10000 }
`
    const stack = await startStack(await startBenchSystem(WORKERS), parseConfig(yaml, {}, 'bench-drain.yaml'), log, { port: 0, host: '127.0.0.1' })
    return timeDrain(n, `${stack.url}/v1/chat/completions`, upstream, () => stack.stop())
  }
  const bare = async (n: number): Promise<number> => {
    const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('end', () => {
        const body = Buffer.concat(chunks)
        const up = request(`${upstream.url}/chat/completions`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': body.length } }, answer => {
          res.writeHead(answer.statusCode ?? 502, { 'content-type': 'application/json' })
          answer.pipe(res)
        })
        up.end(body)
      })
    })
    const url = `${await listen(server)}/v1/chat/completions`
    return timeDrain(n, url, upstream, () => new Promise(resolve => {
      server.close(() => resolve())
      server.closeIdleConnections()
    }))
  }
  try {
    return await measure(subjects, rounds, 1, async () => {
      const figures: Measured[] = []
      for (const n of IN_FLIGHT) figures.push({ baseline: await bare(n), value: await troupe(n) })
      return figures
    })
  } finally {
    await upstream.close()
  }
}
