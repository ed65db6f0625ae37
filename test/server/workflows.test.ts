import { writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { pack } from 'msgpackr'
import t, { type Test } from 'tap'
import {
  createClient,
  createConfig,
  getEventsByHandlerId,
  getHandlers,
  getHandlersByHandlerId,
  getHealth,
  getResultsByHandlerId,
  getWorkflows,
  getWorkflowsByNameEvents,
  getWorkflowsByNameRepresentation,
  getWorkflowsByNameSchema,
  postEventsByHandlerId,
  postHandlersByHandlerIdCancel,
  postWorkflowsByNameRun,
  postWorkflowsByNameRunNowait,
  type Client,
  type Handler,
} from '@llamaindex/workflows-client'
import type { ActorRef, ActorSystem, AskOptions, StreamOptions } from '../../src/index.js'
import { parseConfig } from '../../src/config/index.js'
import { sendError, sendJson } from '../../src/server/http.js'
import { HANDLED } from '../../src/server/route.js'
import { Router } from '../../src/server/router.js'
import { WorkflowsApi, type WorkflowsApiDeps } from '../../src/server/routes/workflows.js'
import { ServedRequest } from '../../src/server/served-request.js'
import { startStack, type RunningStack } from '../../src/supervisor/stack.js'
import type { WorkflowMessage } from '../../actors/workflows/protocol.js'
import { startTestStack, tempDir } from '../fixtures/stack.js'
import { eventually } from '../fixtures/eventually.js'
import { quietLogger } from '../fixtures/logger.js'
import { startSystem } from '../fixtures/system.js'

const fixtures = fileURLToPath(new URL('../fixtures/workflows.ts', import.meta.url))
const srcIndex = new URL('../../src/index.ts', import.meta.url).href
const zodUrl = import.meta.resolve('zod')
const SECRET = 'a-test-secret-of-some-length'

/** A workflow that counts its session's runs in ctx.state, and declares events and a description for /events and /representation. */
const tallyModule = `import { z } from '${zodUrl}'
import { defineWorkflow } from '${srcIndex}'
export const tally = defineWorkflow(import.meta.url, 'tally', {
  description: 'Counts the runs of its session.',
  start: z.object({ by: z.number().int().default(1) }),
  stop: z.object({ count: z.number() }),
  events: { ProgressEvent: z.object({ count: z.number() }), HumanResponseEvent: z.object({ response: z.string() }) },
  async run({ by }, ctx) {
    const count = await ctx.step('add', () => (ctx.state.count = (ctx.state.count ?? 0) + by))
    return { count }
  },
})
`

function stackConfig(dir: string, options: { secret?: string; workflows: string }): string {
  writeFileSync(join(dir, 'tally.mjs'), tallyModule)
  return `
image_name: wf-test
storage:
  backends:
    kv: { type: kv_lmdb, path: ${dir}/kv }
    sql: { type: sql_lmdb, path: ${dir}/sql }
  stores:
    runs: { backend: sql, table_name: workflow_runs }
    sessions: { backend: kv, namespace: workflow_sessions }
${options.secret === undefined ? '' : `server:\n  workflows_context_secret: ${options.secret}\n`}workflows:
${options.workflows}
`
}

const dir = tempDir(t)
const stack = await startTestStack(
  t,
  stackConfig(dir, {
    secret: SECRET,
    workflows: `  - { name: three, module: ${fixtures}, export: threeSteps }
  - { name: one, module: ${fixtures}, export: oneStep }
  - { name: human, module: ${fixtures}, export: waitsForHuman }
  - { name: fails, module: ${fixtures}, export: fails }
  - { name: failsWithCode, module: ${fixtures}, export: failsWithCode }
  - { name: slow, module: ${fixtures}, export: slow }
  - { name: narrow, module: ${fixtures}, export: slow, max_concurrent_tasks: 1, queue_size: 0 }
  - { name: tally, module: ${join(dir, 'tally.mjs')}, export: tally }`,
  }),
)
const client = createClient(createConfig({ baseUrl: stack.url }))

const HANDLER_KEYS = ['handler_id', 'workflow_name', 'run_id', 'error', 'result', 'status', 'started_at', 'updated_at', 'completed_at']
const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$/

interface Envelope {
  value: Record<string, unknown>
  type: string
  types: string[] | null
  qualified_name: string | null
}

/** A run's SSE stream through the client to its end: the envelopes and the ids of their frames. */
async function streamEvents(
  handlerId: string,
  query: { after_sequence?: number | 'now'; include_qualified_name?: boolean } = { after_sequence: -1 },
  onEvent?: (event: Envelope) => unknown,
  through: Client = client,
): Promise<{ events: Envelope[]; ids: string[] }> {
  const ids: string[] = []
  const { stream } = await getEventsByHandlerId({
    client: through,
    path: { handler_id: handlerId },
    query,
    sseMaxRetryAttempts: 1,
    onSseEvent: event => {
      if (event.id !== undefined) ids.push(event.id)
    },
  })
  const events: Envelope[] = []
  for await (const data of stream) {
    events.push(data as Envelope)
    await onEvent?.(data as Envelope)
  }
  return { events, ids }
}

async function startNowait(name: string, body: Record<string, unknown> = {}, headers: Record<string, string> = {}): Promise<Handler> {
  const { data, error, response } = await postWorkflowsByNameRunNowait({ client, path: { name }, body, headers })
  if (data === undefined) throw new Error(`run-nowait ${name}: ${response.status} ${JSON.stringify(error)}`)
  return data
}

async function raw(method: string, path: string, init: { body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: Headers; text: string; json: any }> {
  const response = await fetch(`${stack.url}${path}`, { method, ...init })
  const text = await response.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined // not JSON (an event stream, or an empty body): the test reads `text`
  }
  return { status: response.status, headers: response.headers, text, json }
}

t.test('health, the workflow list, schemas, events and the graph', async t => {
  t.same((await getHealth({ client })).data, { status: 'healthy' })
  t.same((await getWorkflows({ client })).data, { workflows: ['three', 'one', 'human', 'fails', 'failsWithCode', 'slow', 'narrow', 'tally'] })

  const schema = (await getWorkflowsByNameSchema({ client, path: { name: 'three' } })).data as any
  t.match(schema.start, { title: 'StartEvent', type: 'object', properties: { n: { type: 'number' } }, required: ['n'] })
  t.match(schema.stop, { title: 'StopEvent', type: 'object', properties: { n: { type: 'number' } } })
  const noStop = (await getWorkflowsByNameSchema({ client, path: { name: 'fails' } })).data as any
  t.match(noStop.stop, { title: 'StopEvent', type: 'object' }, 'a workflow without a stop schema returns any object')
  const withDefault = (await getWorkflowsByNameSchema({ client, path: { name: 'tally' } })).data as any
  t.notOk(withDefault.start.required?.includes('by'), 'the start schema is what a client sends: a field with a default is optional')

  const events = (await getWorkflowsByNameEvents({ client, path: { name: 'tally' } })).data!.events
  t.match(events, [
    { title: 'ProgressEvent', properties: { count: { type: 'number' } } },
    { title: 'HumanResponseEvent', properties: { response: { type: 'string' } } },
  ])
  t.same((await getWorkflowsByNameEvents({ client, path: { name: 'three' } })).data, { events: [] })

  const graph = ((await getWorkflowsByNameRepresentation({ client, path: { name: 'tally' } })).data as any).graph
  t.equal(graph.name, 'tally')
  t.equal(graph.description, 'Counts the runs of its session.')
  t.same(
    graph.nodes.map((node: any) => [node.id, node.node_type]),
    [
      ['StartEvent', 'event'],
      ['run', 'step'],
      ['ProgressEvent', 'event'],
      ['HumanResponseEvent', 'event'],
      ['StopEvent', 'event'],
    ],
  )
  t.match(graph.nodes[0], { label: 'StartEvent', event_type: 'StartEvent', event_schema: { properties: { by: {} } } })
  t.same(graph.edges, [
    { source: 'StartEvent', target: 'run', label: null },
    { source: 'run', target: 'ProgressEvent', label: null },
    { source: 'run', target: 'HumanResponseEvent', label: null },
    { source: 'run', target: 'StopEvent', label: null },
  ])

  for (const path of ['/workflows/nope/schema', '/workflows/nope/events', '/workflows/nope/representation']) {
    const missing = await raw('GET', path)
    t.equal(missing.status, 404, path)
    t.match(missing.json, { detail: "Workflow 'nope' not found", error: { code: 'unknown_workflow' } })
  }
  const { error, response } = await postWorkflowsByNameRun({ client, path: { name: 'nope' }, body: {} })
  t.equal(response.status, 404)
  t.match(error, { detail: /nope/, error: { code: 'unknown_workflow' } })
})

t.test('/run waits for the run and answers the completed handler', async t => {
  const { data, response } = await postWorkflowsByNameRun({ client, path: { name: 'three' }, body: { start_event: { n: 1 } } })
  t.equal(response.status, 200)
  const handler = data as any
  t.same(Object.keys(handler).slice(0, HANDLER_KEYS.length), HANDLER_KEYS, 'every key, in the protocol order')
  t.match(handler, { workflow_name: 'three', status: 'completed', error: null, error_code: null, run_id: handler.handler_id })
  t.same(handler.result, { value: { n: 4 }, qualified_name: 'troupe.StopEvent', type: 'StopEvent', types: null })
  for (const key of ['started_at', 'updated_at', 'completed_at']) t.match(handler[key], ISO_UTC, key)
  t.match(handler.context, { state: String, signature: /^[0-9a-f]{64}$/ }, 'a finished run carries its sealed context when a secret is set')

  const got = await getHandlersByHandlerId({ client, path: { handler_id: handler.handler_id } })
  t.equal(got.response.status, 200)
  t.match(got.data, { handler_id: handler.handler_id, status: 'completed', result: { value: { n: 4 } } })
  const result = await getResultsByHandlerId({ client, path: { handler_id: handler.handler_id } })
  t.equal(result.response.status, 200)
  t.same((result.data as any).result, { n: 4 }, '/results gives the stop event value itself')

  const kwargs = await postWorkflowsByNameRun({ client, path: { name: 'three' }, body: { kwargs: { n: 10 } } })
  t.same((kwargs.data as any).result.value, { n: 13 }, 'kwargs are the start event fields when start_event is absent')
  const envelope = await postWorkflowsByNameRun({ client, path: { name: 'three' }, body: { start_event: { type: 'StartEvent', value: { n: 20 } } } })
  t.same((envelope.data as any).result.value, { n: 23 }, 'an envelope start event gives its value')
  const asString = await raw('POST', '/workflows/three/run', { body: JSON.stringify({ start_event: JSON.stringify({ n: 30 }) }) })
  t.same(asString.json.result.value, { n: 33 }, 'a start event may be a JSON string')

  const missing = await getHandlersByHandlerId({ client, path: { handler_id: 'run-nope' } })
  t.equal(missing.response.status, 404)
  t.match(missing.error, { detail: 'Handler not found' })
  t.equal((await getResultsByHandlerId({ client, path: { handler_id: 'run-nope' } })).response.status, 404)
})

t.test('a bad start event or body is a 400 naming the field, and starts nothing', async t => {
  const before = (await getHandlers({ client, query: { workflow_name: ['three'] } })).data!.handlers.length
  const bad = await postWorkflowsByNameRun({ client, path: { name: 'three' }, body: { start_event: { n: 'x' } } })
  t.equal(bad.response.status, 400)
  t.match(bad.error, { detail: /^start_event\.n: /, error: { code: 'invalid_request', param: 'start_event.n' } })
  const missingField = await postWorkflowsByNameRunNowait({ client, path: { name: 'three' }, body: {} })
  t.match(missingField, { response: { status: 400 }, error: { error: { param: 'start_event.n' } } })

  t.match(await raw('POST', '/workflows/three/run'), { status: 400, json: { detail: /JSON body/, error: { code: 'invalid_request' } } }, 'no body')
  t.match(await raw('POST', '/workflows/three/run', { body: '{"start_event": ' }), { status: 400, json: { error: { code: 'invalid_request' } } }, 'not JSON')
  t.match(await raw('POST', '/workflows/three/run', { body: '[]' }), { status: 400, json: { error: { param: 'body' } } })
  t.match(await raw('POST', '/workflows/three/run', { body: '{"start_event": 3}' }), { status: 400, json: { error: { param: 'start_event' } } })
  t.match(await raw('POST', '/workflows/three/run', { body: '{"start_event": "{nope"}' }), { status: 400, json: { error: { param: 'start_event' } } })
  t.match(await raw('POST', '/workflows/three/run', { body: '{"kwargs": [1]}' }), { status: 400, json: { error: { param: 'kwargs' } } })
  t.match(await raw('POST', '/workflows/three/run', { body: '{"handler_id": 5}' }), { status: 400, json: { error: { param: 'handler_id' } } })
  t.equal((await getHandlers({ client, query: { workflow_name: ['three'] } })).data!.handlers.length, before)
})

t.test('run-nowait, then the events as SSE (ids are sequences) and NDJSON, resumed by Last-Event-ID and after_sequence', async t => {
  const started = await startNowait('three', { start_event: { n: 0 } })
  t.equal(started.status, 'running')
  t.equal(started.completed_at, null)
  t.notOk('context' in started, 'a running run carries no context')

  const { events, ids } = await streamEvents(started.handler_id)
  t.same(
    events.map(e => e.type),
    ['ProgressEvent', 'ProgressEvent', 'ProgressEvent', 'StopEvent'],
  )
  t.same(ids, ['0', '1', '2', '3'])
  t.same(events[0], { value: { step: 'one', n: 1 }, qualified_name: 'troupe.ProgressEvent', type: 'ProgressEvent', types: null })
  t.same(events[3]!.value, { n: 3 })

  const ndjson = await raw('GET', `/events/${started.handler_id}?sse=false&after_sequence=-1`)
  t.equal(ndjson.status, 200)
  t.equal(ndjson.headers.get('content-type'), 'application/x-ndjson')
  const lines = ndjson.text.trimEnd().split('\n').map(line => JSON.parse(line) as Envelope)
  t.same(lines, events, 'the same envelopes, one a line')

  const sse = await raw('GET', `/events/${started.handler_id}`, { headers: { 'Last-Event-ID': '1' } })
  t.equal(sse.headers.get('content-type'), 'text/event-stream; charset=utf-8')
  t.equal(sse.text, `id: 2\ndata: ${JSON.stringify(events[2])}\n\nid: 3\ndata: ${JSON.stringify(events[3])}\n\n`, 'Last-Event-ID resumes after that sequence')
  const overridden = await raw('GET', `/events/${started.handler_id}?after_sequence=-1`, { headers: { 'Last-Event-ID': '2' } })
  t.equal(overridden.text.match(/^id: /gm)?.length, 1, 'Last-Event-ID takes priority over after_sequence')
  const after = await raw('GET', `/events/${started.handler_id}?sse=false&after_sequence=1&include_qualified_name=false`)
  t.same(
    after.text.trimEnd().split('\n').map(line => JSON.parse(line)),
    events.slice(2).map(e => ({ ...e, qualified_name: null })),
  )

  const finished = await raw('GET', `/events/${started.handler_id}`)
  t.equal(finished.status, 204, 'a finished run with nothing after "now" is 204')
  t.equal(finished.text, '')
  t.equal((await raw('GET', `/events/${started.handler_id}?after_sequence=3`)).status, 204)
  t.equal((await raw('GET', '/events/run-nope')).status, 404)
  t.match(await raw('GET', `/events/${started.handler_id}?after_sequence=soon`), { status: 400, json: { error: { param: 'after_sequence' } } })
  t.match(await raw('GET', `/events/${started.handler_id}?after_sequence=-2`), { status: 400 })
  t.match(await raw('GET', `/events/${started.handler_id}`, { headers: { 'Last-Event-ID': 'x' } }), { status: 400, json: { error: { param: 'Last-Event-ID' } } })
})

t.test('human in the loop: the stream asks, an event answers, and the run is over to later events', async t => {
  const started = await startNowait('human', { start_event: { prefix: 'Proceed?' } })
  const sent: unknown[] = []
  const answer = async (event: Envelope): Promise<void> => {
    if (event.type !== 'InputRequiredEvent') return
    t.same(event.value, { prefix: 'Proceed?' })
    const { data } = await postEventsByHandlerId({ client, path: { handler_id: started.handler_id }, body: { event: { type: 'HumanResponseEvent', value: { response: 'yes' } } } })
    sent.push(data)
  }
  // Two clients stream the run at once; one of them answers.
  const [first, second] = await Promise.all([streamEvents(started.handler_id, { after_sequence: -1 }, answer), streamEvents(started.handler_id, { after_sequence: -1 })])
  t.same(sent, [{ status: 'sent' }])
  for (const { events } of [first, second]) {
    t.same(
      events.map(e => e.type),
      ['InputRequiredEvent', 'StopEvent'],
    )
    t.same(events[1]!.value, { response: 'yes' })
  }
  const done = await getHandlersByHandlerId({ client, path: { handler_id: started.handler_id } })
  t.match(done.data, { status: 'completed', result: { value: { response: 'yes' } } })

  const late = await postEventsByHandlerId({ client, path: { handler_id: started.handler_id }, body: { event: { type: 'HumanResponseEvent', value: { response: 'no' } } } })
  t.equal(late.response.status, 409)
  t.match(late.error, { detail: String, error: { code: 'run_over' } })

  // The legacy form: the event as a JSON string, its fields under `data`.
  const legacy = await startNowait('human', {})
  const legacyStream = streamEvents(legacy.handler_id, { after_sequence: -1 }, async event => {
    if (event.type === 'InputRequiredEvent') {
      await postEventsByHandlerId({ client, path: { handler_id: legacy.handler_id }, body: { event: JSON.stringify({ type: 'HumanResponseEvent', data: { response: 'ok' } }) } })
    }
  })
  t.same((await legacyStream).events.at(-1)!.value, { response: 'ok' })

  const running = await startNowait('human', {})
  const post = (body: string) => raw('POST', `/events/${running.handler_id}`, { body })
  t.match(await post('{}'), { status: 400, json: { error: { param: 'event' } } })
  t.match(await post('{"event": {"value": {}}}'), { status: 400, json: { error: { param: 'event.type' } } })
  t.match(await post('{"event": {"type": "X", "value": 3}}'), { status: 400, json: { error: { param: 'event.value' } } })
  t.match(await post('{"event": "{oops"}'), { status: 400, json: { error: { param: 'event' } } })
  t.match(await raw('POST', '/events/run-nope', { body: '{"event": {"type": "X", "value": {}}}' }), { status: 404, json: { detail: 'Handler not found' } })
  t.same((await postHandlersByHandlerIdCancel({ client, path: { handler_id: running.handler_id } })).data, { status: 'cancelled' })
})

t.test('cancel mid-run ends the stream with a cancel event; purge deletes the run', async t => {
  const started = await startNowait('slow')
  const running = await getHandlersByHandlerId({ client, path: { handler_id: started.handler_id } })
  t.equal(running.response.status, 202, 'a running handler is 202')
  t.match(running.data, { status: 'running', completed_at: null, result: null })
  t.equal((await getResultsByHandlerId({ client, path: { handler_id: started.handler_id } })).response.status, 202)
  const { events } = await streamEvents(started.handler_id, { after_sequence: -1 }, async event => {
    if (event.type === 'ProgressEvent') t.same((await postHandlersByHandlerIdCancel({ client, path: { handler_id: started.handler_id } })).data, { status: 'cancelled' })
  })
  t.same(
    events.map(e => [e.type, e.types]),
    [
      ['ProgressEvent', null],
      ['WorkflowCancelledEvent', ['StopEvent']],
    ],
  )
  const cancelled = await getHandlersByHandlerId({ client, path: { handler_id: started.handler_id } })
  t.equal(cancelled.response.status, 500)
  t.match(cancelled.error, { handler_id: started.handler_id, status: 'cancelled', result: null, error_code: 'cancelled' })

  const purged = await postHandlersByHandlerIdCancel({ client, path: { handler_id: started.handler_id }, query: { purge: true } })
  t.same(purged.data, { status: 'deleted' })
  t.equal((await getHandlersByHandlerId({ client, path: { handler_id: started.handler_id } })).response.status, 404)
  t.equal((await postHandlersByHandlerIdCancel({ client, path: { handler_id: 'run-nope' } })).response.status, 404)
})

t.test('/run of a run cancelled while it waits answers 500 with the cancelled handler', async t => {
  const headers = { 'Idempotency-Key': 'cancel-while-waiting' }
  const waiting = postWorkflowsByNameRun({ client, path: { name: 'slow' }, body: {}, headers })
  // The same key names the same run: run-nowait finds it without starting another.
  let handlerId: string | undefined
  await eventually(async () => {
    const { data } = await postWorkflowsByNameRunNowait({ client, path: { name: 'slow' }, body: {}, headers })
    handlerId = data?.handler_id
    return data?.status === 'running'
  }, 'the waited-on run to be admitted')
  await postHandlersByHandlerIdCancel({ client, path: { handler_id: handlerId! } })
  const { response, error } = await waiting
  t.equal(response.status, 500)
  t.match(error, { handler_id: handlerId, status: 'cancelled', completed_at: ISO_UTC })
})

t.test('a failed run is failed with its error and code, never completed, and /run answers 500', async t => {
  const failed = await postWorkflowsByNameRun({ client, path: { name: 'fails' }, body: {} })
  t.equal(failed.response.status, 500)
  t.match(failed.error, { status: 'failed', error: 'boom', error_code: 'workflow_error', result: null, completed_at: ISO_UTC })
  const coded = await postWorkflowsByNameRun({ client, path: { name: 'failsWithCode' }, body: {} })
  t.match(coded.error, { status: 'failed', error: 'no', error_code: 'quota_exceeded' })

  const handlerId = (failed.error as any).handler_id as string
  t.equal((await getHandlersByHandlerId({ client, path: { handler_id: handlerId } })).response.status, 500)
  t.equal((await getResultsByHandlerId({ client, path: { handler_id: handlerId } })).response.status, 500)
  const { events } = await streamEvents(handlerId)
  t.match(events, [{ type: 'WorkflowFailedEvent', types: ['StopEvent'], value: { code: 'workflow_error', exception: { exception_message: 'boom' } } }])

  const completedFails = (await getHandlers({ client, query: { status: ['completed'], workflow_name: ['fails', 'failsWithCode'] } })).data!.handlers
  t.same(completedFails, [], 'never reported as completed')
  const failedOnes = (await getHandlers({ client, query: { status: ['failed'] } })).data!.handlers
  t.ok(failedOnes.some(h => h.handler_id === handlerId))
  t.ok(failedOnes.every(h => h.status === 'failed'))
})

t.test('GET /handlers filters by status and workflow name; unknown statuses match nothing', async t => {
  await postWorkflowsByNameRun({ client, path: { name: 'one' }, body: {} })
  const completedOne = (await getHandlers({ client, query: { status: ['completed'], workflow_name: ['one'] } })).data!.handlers
  t.ok(completedOne.length >= 1)
  t.ok(completedOne.every(h => h.status === 'completed' && h.workflow_name === 'one'))
  const all = (await getHandlers({ client })).data!.handlers
  t.ok(all.length > completedOne.length)
  t.same((await raw('GET', '/handlers?status=bogus')).json, { handlers: [] })
  const mixed = (await raw('GET', '/handlers?status=bogus&status=failed')).json.handlers as Handler[]
  t.ok(mixed.length > 0 && mixed.every(h => h.status === 'failed'), 'invalid statuses are dropped')
})

t.test('a full workflow refuses a run with 429 and Retry-After', async t => {
  const first = await startNowait('narrow')
  const refused = await postWorkflowsByNameRunNowait({ client, path: { name: 'narrow' }, body: {} })
  t.equal(refused.response.status, 429)
  t.equal(refused.response.headers.get('retry-after'), '1')
  t.match(refused.error, { detail: /narrow/, error: { code: 'backpressure', type: 'rate_limit_error' } })
  await postHandlersByHandlerIdCancel({ client, path: { handler_id: first.handler_id } })
  const again = await startNowait('narrow')
  t.equal(again.status, 'running', 'a slot frees as the run is cancelled')
  await postHandlersByHandlerIdCancel({ client, path: { handler_id: again.handler_id } })
})

t.test('an Idempotency-Key returns the first run for a repeated start', async t => {
  const headers = { 'Idempotency-Key': 'order-42' }
  const first = await startNowait('one', {}, headers)
  const second = await startNowait('one', {}, headers)
  t.equal(second.handler_id, first.handler_id)
  t.not((await startNowait('one', {}, { 'Idempotency-Key': 'order-43' })).handler_id, first.handler_id)
  t.match(await raw('POST', '/workflows/one/run-nowait', { body: '{}', headers: { 'Idempotency-Key': 'x'.repeat(300) } }), { status: 400, json: { error: { param: 'Idempotency-Key' } } })
})

t.test('handler_id continues the session: the new run sees ctx.state, under a new handler_id', async t => {
  const first = (await postWorkflowsByNameRun({ client, path: { name: 'tally' }, body: {} })).data!
  t.same((first.result as any).value, { count: 1 })
  const second = (await postWorkflowsByNameRun({ client, path: { name: 'tally' }, body: { handler_id: first.handler_id, start_event: { by: 2 } } })).data!
  t.same((second.result as any).value, { count: 3 })
  t.not(second.handler_id, first.handler_id)
  const third = (await postWorkflowsByNameRun({ client, path: { name: 'tally' }, body: { handler_id: second.handler_id } })).data!
  t.same((third.result as any).value, { count: 4 })
  const fresh = (await postWorkflowsByNameRun({ client, path: { name: 'tally' }, body: {} })).data!
  t.same((fresh.result as any).value, { count: 1 }, 'without handler_id, a new session')

  const unknown = await postWorkflowsByNameRun({ client, path: { name: 'tally' }, body: { handler_id: 'run-nope' } })
  t.equal(unknown.response.status, 404)
  t.match(unknown.error, { error: { code: 'not_found', param: 'handler_id' } })
})

t.test('a signed context starts a run from its state; a tampered or unsigned one is refused and changes nothing', async t => {
  const earlier = (await postWorkflowsByNameRun({ client, path: { name: 'tally' }, body: { start_event: { by: 5 } } })).data as any
  const context = earlier.context as { state: string; signature: string }
  const resumed = await postWorkflowsByNameRun({ client, path: { name: 'tally' }, body: { context } })
  t.same((resumed.data as any).result.value, { count: 6 })

  const count = async (): Promise<number> => (await getHandlers({ client, query: { workflow_name: ['tally'] } })).data!.handlers.length
  const before = await count()
  const flipped = context.signature.slice(0, -1) + (context.signature.endsWith('0') ? '1' : '0')
  const forged = Buffer.from(pack({ count: 1_000_000 })).toString('base64')
  for (const [what, bad] of [
    ['a changed signature', { ...context, signature: flipped }],
    ['a changed state', { ...context, state: forged }],
    ['no signature', { state: context.state }],
    ['not an object', 'context'],
  ] as const) {
    const refused = await postWorkflowsByNameRun({ client, path: { name: 'tally' }, body: { context: bad as any } })
    t.equal(refused.response.status, 400, what)
    t.match(refused.error, { detail: String, error: { code: 'bad_context', param: 'context' } }, what)
  }
  t.equal(await count(), before, 'no run was started')
  t.match(await raw('POST', '/workflows/tally/run', { body: JSON.stringify({ context, handler_id: earlier.handler_id }) }), { status: 400, json: { error: { param: 'context' } } })
})

t.test('every route is served under /deployments/{image_name} too', async t => {
  const deployed = createClient(createConfig({ baseUrl: `${stack.url}/deployments/wf-test` }))
  t.same((await getWorkflows({ client: deployed })).data!.workflows.length, 8)
  const run = await postWorkflowsByNameRun({ client: deployed, path: { name: 'three' }, body: { start_event: { n: 0 } } })
  t.equal(run.data?.status, 'completed')
  const handler = await getHandlersByHandlerId({ client: deployed, path: { handler_id: run.data!.handler_id } })
  t.equal(handler.response.status, 200)
  t.equal((await streamEvents(run.data!.handler_id, { after_sequence: -1 }, undefined, deployed)).events.length, 4)
  t.equal((await raw('GET', '/deployments/other/workflows')).status, 404)
})

/**
 * A stack without a context secret, started here rather than by startTestStack so that the
 * test holds its actor system and can reach the workflow actors themselves.
 */
async function startPlainStack(t: Test): Promise<{ stack: RunningStack; system: ActorSystem }> {
  const dir = tempDir(t)
  const system = await startSystem(t)
  const yaml = stackConfig(dir, { workflows: `  - { name: one, module: ${fixtures}, export: oneStep }\n  - { name: slow, module: ${fixtures}, export: slow }` })
  const stack = await startStack(system, parseConfig(yaml, {}, join(dir, 'stack.yaml')), quietLogger(), { port: 0, host: '127.0.0.1' })
  t.teardown(() => stack.stop())
  return { stack, system }
}

t.test('a stack without workflows_context_secret', async t => {
  const { stack: plain, system } = await startPlainStack(t)

  t.test('handlers carry no context and client contexts are refused', async t => {
    const plainClient = createClient(createConfig({ baseUrl: plain.url }))
    const run = await postWorkflowsByNameRun({ client: plainClient, path: { name: 'one' }, body: {} })
    t.equal(run.data?.status, 'completed')
    t.notOk('context' in run.data!, 'no secret, no context')
    const refused = await postWorkflowsByNameRun({ client: plainClient, path: { name: 'one' }, body: { context: { state: 'gA==', signature: '00' } } })
    t.equal(refused.response.status, 400)
    t.match(refused.error, { detail: /server\.workflows_context_secret/, error: { code: 'bad_context' } })
  })

  t.test('a silent SSE stream gets heartbeats; a client that goes away cancels the run event stream', async t => {
    const ref = (await system.lookup<WorkflowMessage>('workflow:slow'))!
    let streamCancelled = false
    // The real actor, watched: whether the stream it is asked for is cancelled.
    const watched = {
      ask: (message: WorkflowMessage, options?: AskOptions) => ref.ask(message, options),
      prewake: () => ref.prewake(),
      stream: (message: WorkflowMessage, options?: StreamOptions) => {
        options?.cancellation?.onCancel(() => (streamCancelled = true))
        return ref.stream(message, options)
      },
    } as unknown as ActorRef<WorkflowMessage>
    const served = await serveWorkflowsApi(t, { workflows: [{ name: 'slow', url: pathToFileURL(fixtures).href, exportName: 'slow', ref: watched }], heartbeatMs: 20 })
    const started = (await (await fetch(`${served.url}/workflows/slow/run-nowait`, { method: 'POST', body: '{}' })).json()) as Handler

    const abort = new AbortController()
    const response = await fetch(`${served.url}/events/${started.handler_id}?after_sequence=-1`, { signal: abort.signal })
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader()
    let text = ''
    for (let read = await reader.read(); !/: heartbeat\n\n/.test(text); read = await reader.read()) {
      if (read.done) throw new Error(`the stream ended before a heartbeat: ${text}`)
      text += read.value
    }
    t.match(text, /^id: 0\ndata: \{"value":\{"msg":"started"\}.*\n\n: heartbeat\n\n/s, 'the event, then a heartbeat comment while the run is silent')
    abort.abort()
    await reader.closed.catch(() => undefined) // aborting errors the reader: that is the point
    await eventually(() => served.handled.length === 2, 'the stream request to be handled')
    await Promise.all(served.handled)
    t.ok(streamCancelled, 'the actor stream was cancelled with the request')
    await ref.ask({ type: 'cancel', runId: started.handler_id })
  })
})

t.test('with no workflows configured, there are no workflows and no handlers', async t => {
  const served = await serveWorkflowsApi(t, {})
  t.same(await (await fetch(`${served.url}/workflows`)).json(), { workflows: [] })
  t.same(await (await fetch(`${served.url}/handlers`)).json(), { handlers: [] })
  t.equal((await fetch(`${served.url}/handlers/run-nope`)).status, 404)
})

/** The workflow routes alone on a server of their own, with the handlers' promises kept, so a test sees each request's handling end. */
async function serveWorkflowsApi(t: Test, deps: Partial<WorkflowsApiDeps>): Promise<{ url: string; handled: Array<Promise<unknown>> }> {
  const api = new WorkflowsApi({ workflows: [], contextSecret: undefined, maxBodyBytes: 1 << 20, log: quietLogger(), ...deps })
  const router = new Router(api.routes(''))
  const handled: Array<Promise<unknown>> = []
  const server = createServer((req, res) => {
    const request = new ServedRequest(req, res, 'test-request')
    const found = router.match(req.method ?? 'GET', request.pathname)
    if (found?.route === undefined) return void res.writeHead(404).end()
    request.params = found.params
    handled.push(
      found.route.handle(request).then(
        result => (result === HANDLED ? undefined : sendJson(res, 200, result)),
        (error: unknown) => sendError(res, found.route!.errors!.toHttp(error)),
      ),
    )
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(
    () =>
      new Promise(resolve => {
        server.close(resolve)
        server.closeAllConnections()
      }),
  )
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, handled }
}
