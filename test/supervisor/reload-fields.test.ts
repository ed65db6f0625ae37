import { createHash } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { TLSSocket } from 'node:tls'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pino, type DestinationStream } from 'pino'
import t, { type Test } from 'tap'
import { stringify } from 'yaml'
import { listFields, loadConfigFile, type FieldInfo } from '../../src/config/index.js'
import { ActorError, actorNodes, type ActorRef, type ActorSystem, type Supervisor } from '../../src/actor/index.js'
import { ActorChild } from '../../src/actor/actor-child.js'
import { SupervisorChild } from '../../src/actor/supervisor.js'
import { SUBTREES } from '../../src/stack/plan.js'
import { startStack, type RunningStack } from '../../src/supervisor/stack.js'
import type { ReloadReport } from '../../src/supervisor/stack-supervisor.js'
import { RedactingDestination, SECRET_PATHS } from '../../src/supervisor/redaction.js'
import { sealContext } from '../../src/server/workflow-context.js'
import type { InferenceStoreMessage } from '../../actors/stores/inference-store.js'
import type { KvMessage, RowPage, TableMessage } from '../../actors/stores/protocol.js'
import type { RunInfo, StartReply, WorkflowMessage, WorkflowStats } from '../../actors/workflows/protocol.js'
import { fakeOllama, fakeOpenAI, type FakeUpstream } from '../../bench/fixtures/upstreams.js'
import { ledger, type LedgerMessage } from '../fixtures/restart-behaviors.js'
import { freePort } from '../fixtures/cli-stack.js'
import { eventually, whenRunning } from '../fixtures/eventually.js'
import { REDIS_URL, unreachable } from '../fixtures/servers.js'
import { tempDir } from '../fixtures/stack.js'
import { startSystem } from '../fixtures/system.js'

/**
 * Drift, observed live: every field of the stack.yaml schema is changed in one running stack,
 * one field after another, and the effect its reload class promises is seen from outside:
 * - hot: the new value is in effect (an HTTP reply, a store's stats, a log line, an ask's
 *   deadline) and no actor restarted;
 * - restart: exactly the owning actors were restarted in place (same ref, new incarnation),
 *   replaced (new ref), started or stopped, and no other actor;
 * - owned by `none`: nothing changes; by `read-on-use`/`process`: the report lists it as not applied.
 * test/stack/reload-boundary.test.ts checks the same table at the level of the plan; this file
 * checks what the running stack does with it.
 *
 * Coverage rule: every path listFields() returns needs a probe in PROBES, keyed by that path
 * (`<key>` for a map key, `[]` for a list item), or the drift test fails. The one exception is
 * a grouping object: an object field with a default (`storage`, `server`, `troupe.reconciler`),
 * which is always present and so only ever changes through its sub-fields; it is covered when
 * every path under it is. Collections (maps, lists) and optional objects (a store, server.tls)
 * have probes of their own, since adding or removing one whole is an effect of its own.
 *
 * Each probe leaves the config as the next one can use it (most put back what they changed).
 * Probes of fields announced but not yet in the schema (PENDING) are skipped until they land;
 * those that need Postgres or Redis skip when it is not reachable. A promise found not to hold
 * is asserted as it should be and marked todo with what is wrong (the *_BUG texts below).
 * Actor incarnations are read from the supervision tree: system.inspect() counts crash
 * restarts only, and a restart in place on purpose is not a crash.
 */

const WORKFLOWS_MODULE = fileURLToPath(new URL('../fixtures/workflows.ts', import.meta.url))
const CERT = fileURLToPath(new URL('../fixtures/tls/cert.pem', import.meta.url))
const KEY = fileURLToPath(new URL('../fixtures/tls/key.pem', import.meta.url))
/** A second certificate for KEY, then KEY in another encoding: see the file's preamble. */
const ROTATED = fileURLToPath(new URL('../fixtures/tls/reload-fields.pem', import.meta.url))
const OPENAI_PROVIDER_MODULE = fileURLToPath(new URL('../../actors/providers/inference/openai.ts', import.meta.url))

/** Fields announced for the schema and probed here already; until they land their probes skip. */
const PENDING = new Set([
  'storage.stores.inference.write_mode',
  'storage.stores.inference.retention',
  'storage.stores.inference.retention.max_count',
  'storage.stores.inference.retention.max_age',
  'storage.stores.conversations.write_mode',
])


const KV = 'store:kv'
const SQL = 'store:sql'
const ROUTING = 'routing:models'
const INFERENCE = 'inference-store'
const CONVERSATIONS = 'conversations'
const WORKFLOW_ACTORS = ['workflow:human', 'workflow:steps', 'workflow:crashy']

// ---- the config as a document, edited by path --------------------------------------------

type Doc = Record<string, unknown>

/** List items are named by their identity, as a reload report names them: `workflows.human.timeout_ms`. */
const IDENTITY = ['provider_id', 'name', 'model_id'] as const

function child(node: unknown, segment: string, path: string): unknown {
  const next = Array.isArray(node) ? node.find(item => IDENTITY.some(key => (item as Doc)[key] === segment)) : (node as Doc | undefined)?.[segment]
  if (next === undefined) throw new Error(`the config has no ${path}`)
  return next
}

function parentOf(doc: Doc, path: string): { parent: unknown; last: string } {
  const segments = path.split('.')
  const last = segments.pop()!
  return { parent: segments.reduce<unknown>((node, segment) => child(node, segment, path), doc), last }
}

function get<T = unknown>(doc: Doc, path: string): T {
  return path.split('.').reduce<unknown>((node, segment) => child(node, segment, path), doc) as T
}

function set(doc: Doc, path: string, value: unknown): void {
  const { parent, last } = parentOf(doc, path)
  ;(parent as Doc)[last] = value
}

/** Removes a key, or a list item by its identity. */
function unset(doc: Doc, path: string): void {
  const { parent, last } = parentOf(doc, path)
  if (Array.isArray(parent)) parent.splice(parent.indexOf(child(parent, last, path)), 1)
  else delete (parent as Doc)[last]
}

function append(doc: Doc, path: string, item: Doc): void {
  get<unknown[]>(doc, path).push(item)
}

// ---- observing actors ----------------------------------------------------------------------

/** Every supervised actor: its ref (slot and generation) and its incarnation, by id. */
function actorIdentities(system: ActorSystem): Map<string, { ref: string; incarnation: number }> {
  // The root supervisor is the system's own; a test reads it to see incarnations.
  const root = (system as unknown as { root: Supervisor }).root
  const out = new Map<string, { ref: string; incarnation: number }>()
  const walk = (supervisor: Supervisor): void => {
    for (const handle of supervisor.childHandles) {
      if (handle instanceof SupervisorChild) walk(handle.supervisor)
      else if (handle instanceof ActorChild) out.set(handle.id, { ref: `${handle.ref.slot}/${handle.ref.generation}`, incarnation: handle.incarnation })
    }
  }
  walk(root)
  return out
}

/** The actor children of the stack's subtrees (stores, providers, apis, workflows). */
function stackActors(system: ActorSystem): ActorChild[] {
  const root = (system as unknown as { root: Supervisor }).root
  const out: ActorChild[] = []
  for (const handle of root.childHandles) {
    if (!(handle instanceof SupervisorChild) || !(SUBTREES as readonly string[]).includes(handle.id)) continue
    for (const actor of handle.supervisor.childHandles) if (actor instanceof ActorChild) out.push(actor)
  }
  return out
}

interface ActorChanges {
  readonly restarted: string[]
  readonly replaced: string[]
  readonly started: string[]
  readonly stopped: string[]
}

function actorChanges(before: ReturnType<typeof actorIdentities>, after: ReturnType<typeof actorIdentities>): ActorChanges {
  const changes: ActorChanges = { restarted: [], replaced: [], started: [], stopped: [] }
  for (const [id, now] of after) {
    const was = before.get(id)
    if (was === undefined) changes.started.push(id)
    else if (was.ref !== now.ref) changes.replaced.push(id)
    else if (was.incarnation !== now.incarnation) changes.restarted.push(id)
  }
  for (const id of before.keys()) if (!after.has(id)) changes.stopped.push(id)
  return changes
}

// ---- the stack under test ------------------------------------------------------------------

/** What a reload must have done; everything left out must not have happened. */
interface Effect {
  readonly result?: ReloadReport['result']
  /** Restarted in place: same ref, a new incarnation. */
  readonly restarted?: readonly string[]
  /** Stopped and started anew under the same id, with a new ref. */
  readonly replaced?: readonly string[]
  readonly started?: readonly string[]
  readonly stopped?: readonly string[]
  /** Pushed to its owner live: the report's appliedLive is not empty. */
  readonly live?: boolean
  /** The path the report's notApplied must name. */
  readonly notApplied?: string
  /** A known bug: the reload's result is asserted, and reported as todo until it holds. */
  readonly todo?: string
}

/** pino's numbers for the levels the pool actor logs at. */
const DEBUG = 20
const WARN = 40

const sorted = (list: readonly string[]): string[] => [...list].sort()

class FieldStack {
  readonly lines: Array<Record<string, unknown>> = []
  doc: Doc
  stack!: RunningStack
  system!: ActorSystem
  /** A pool actor that logs on demand and forwards asks from a worker thread. */
  logger!: ActorRef<LedgerMessage>

  constructor(
    readonly dir: string,
    readonly file: string,
    readonly openai: FakeUpstream,
    readonly ollama: FakeUpstream,
    port: number,
  ) {
    this.doc = baseConfig(dir, openai, ollama, port)
  }

  async start(t: Test): Promise<void> {
    // As main.ts builds it: every thread's lines pass the redacting destination, whose paths
    // logging.redact replaces live.
    const sink: DestinationStream = { write: (text: string) => void text.split('\n').forEach(line => line && this.lines.push(JSON.parse(line) as Record<string, unknown>)) }
    const redaction = new RedactingDestination(sink, [...SECRET_PATHS])
    const log = pino({ level: 'info' }, redaction)
    this.system = await startSystem(t, { workers: 2, logger: log })
    writeFileSync(this.file, stringify(this.doc))
    this.stack = await startStack(this.system, await loadConfigFile(this.file), log, { redaction })
    t.teardown(() => this.stack.stop())
    this.logger = await this.system.spawn(ledger, { placement: 'pool' })
  }

  /** Writes the edited config, reloads, and checks the reload did `effect` and nothing else. */
  async change(t: Test, what: string, edit: (doc: Doc) => void, effect: Effect = {}): Promise<ReloadReport> {
    const before = actorIdentities(this.system)
    const generation = this.stack.supervisor.inspect().generation
    const report = await this.attempt(edit)
    const seen = actorChanges(before, actorIdentities(this.system))
    const extra = effect.todo === undefined ? {} : { todo: effect.todo }
    const result = effect.result ?? 'applied'
    const errors = report.errors.length > 0 ? ` (${report.errors.map(e => `${e.path}: ${e.message}`).join('; ')})` : ''
    t.equal(report.result, result, `${what}: the reload is ${result}${errors}`, extra)
    t.same(sorted(seen.restarted), sorted(effect.restarted ?? []), `${what}: restarted in place: ${effect.restarted?.join(', ') || 'none'}`)
    t.same(sorted(seen.replaced), sorted(effect.replaced ?? []), `${what}: replaced: ${effect.replaced?.join(', ') || 'none'}`)
    t.same(sorted(seen.started), sorted(effect.started ?? []), `${what}: started: ${effect.started?.join(', ') || 'none'}`)
    t.same(sorted(seen.stopped), sorted(effect.stopped ?? []), `${what}: stopped: ${effect.stopped?.join(', ') || 'none'}`)
    t.same(sorted(report.restarted), sorted([...(effect.restarted ?? []), ...(effect.replaced ?? [])]), `${what}: the report lists what restarted`)
    t.same([sorted(report.started), sorted(report.stopped)], [sorted(effect.started ?? []), sorted(effect.stopped ?? [])], `${what}: the report lists what started and stopped`)
    if (report.result === 'applied') {
      t.equal(report.appliedLive.length > 0, effect.live === true, `${what}: ${effect.live === true ? 'applied live' : 'nothing applied live'} (${report.appliedLive.join(', ') || 'none'})`)
      t.same(
        report.notApplied.map(n => n.path),
        effect.notApplied === undefined ? [] : [effect.notApplied],
        `${what}: ${effect.notApplied === undefined ? 'nothing reported as not applied' : `${effect.notApplied} reported as not applied`}`,
      )
    } else if (report.result === 'invalid') {
      t.equal(this.stack.supervisor.inspect().generation, generation, `${what}: the generation stays`)
    }
    return report
  }

  /** Writes the edited config and reloads; the config is the new one if the reload applied it. */
  async attempt(edit: (doc: Doc) => void): Promise<ReloadReport> {
    const next = structuredClone(this.doc)
    edit(next)
    writeFileSync(this.file, stringify(next))
    const report = await this.stack.reload()
    if (report.result === 'applied') this.doc = next
    return report
  }

  /** Puts the file back to the config that runs (after a reload that did not apply). */
  async rewrite(t: Test): Promise<void> {
    writeFileSync(this.file, stringify(this.doc))
    const report = await this.stack.reload()
    t.ok(['unchanged', 'applied'].includes(report.result), `the file put back reloads as ${report.result}`)
  }

  // ---- HTTP

  async request(path: string, init: RequestInit = {}): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
    const res = await fetch(`${this.stack.url}${path}`, init)
    const text = await res.text()
    let body: Record<string, unknown>
    try {
      body = JSON.parse(text) as Record<string, unknown>
    } catch {
      body = { text } // not JSON: kept as text, for the assertion that fails on it
    }
    return { status: res.status, body, headers: res.headers }
  }

  post(path: string, body: unknown, headers: Record<string, string> = {}) {
    return this.request(path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
  }

  chat(model: string, content = 'hi') {
    return this.post('/v1/chat/completions', { model, messages: [{ role: 'user', content }] })
  }

  /** The model the last request to `upstream` asked it for. */
  lastModel(upstream: FakeUpstream): unknown {
    return (upstream.requests.at(-1)?.body as Record<string, unknown> | undefined)?.['model']
  }

  // ---- actors

  async ref<M>(name: string): Promise<ActorRef<M>> {
    const ref = await this.system.lookup<M>(name)
    if (ref === undefined) throw new Error(`no actor named ${name}`)
    return ref
  }

  inferenceStats(): Promise<Record<string, unknown>> {
    return this.ref<InferenceStoreMessage>(INFERENCE).then(ref => ref.ask<Record<string, unknown>>({ type: 'stats' }))
  }

  /** Runs an inference retention pass now; how many completions are left. */
  async trimmedTo(): Promise<number> {
    await (await this.ref<InferenceStoreMessage>(INFERENCE)).ask({ type: 'trim' })
    return ((await this.request('/v1/chat/completions?limit=100')).body['data'] as unknown[]).length
  }

  /** Starts a run of the `human` workflow, which waits for an event that never comes: it holds a slot until cancelled. */
  async parkedRun(): Promise<string> {
    const ref = await this.ref<WorkflowMessage>('workflow:human')
    return (await ref.ask<StartReply>({ type: 'start', startEvent: {} })).run.runId
  }

  async cancel(runIds: readonly string[]): Promise<void> {
    const ref = await this.ref<WorkflowMessage>('workflow:human')
    for (const runId of runIds) await ref.ask({ type: 'cancel', runId, purge: true })
  }

  /** A run of `human` that finished: the event it waits for sent. */
  async finishedHumanRun(): Promise<string> {
    const runId = await this.parkedRun()
    const human = await this.ref<WorkflowMessage>('workflow:human')
    await human.ask({ type: 'send', runId, event: { type: 'HumanResponseEvent', value: { response: 'yes' } } })
    await human.ask({ type: 'wait', runId })
    return runId
  }

  /** Whether a finished run's history is gone (or the run itself), waiting for it up to `withinMs`. */
  async historyRemoved(workflow: string, runId: string, withinMs = 0): Promise<boolean> {
    const ref = await this.ref<WorkflowMessage>(`workflow:${workflow}`)
    const removed = async (): Promise<boolean> => {
      const run = await ref.ask<RunInfo | null>({ type: 'get', runId })
      return run === null || run.trimmedTo >= run.lastSeq
    }
    if (withinMs === 0) return removed()
    return eventually(removed, `the history of run ${runId}`, withinMs).then(
      () => true,
      () => false,
    )
  }

  /** A row of the current runs table. */
  async runRow(runId: string): Promise<Record<string, unknown> | null> {
    const runs = get<Doc>(this.doc, 'storage.stores.runs')
    const store = await this.ref<TableMessage>(`store:${String(runs['backend'])}`)
    return store.ask<Record<string, unknown> | null>({ type: 'fetchOne', table: String(runs['table_name']), where: { run_id: runId } })
  }

  /** Rows of a table of a sql backend. */
  async rows(backend: string, table: string): Promise<Array<Record<string, unknown>>> {
    const store = await this.ref<TableMessage>(`store:${backend}`)
    return (await store.ask<RowPage>({ type: 'fetchAll', table, limit: 1000 })).rows
  }

  /**
   * Has the pool actor log `text` at `level`, and returns the line as written, or undefined
   * when none was. A debug line is followed by a warn line, waited for: worker lines arrive
   * in order, so once it is here a debug line that is not was dropped at its thread.
   */
  async logFromPool(level: 'debug' | 'warn', text: string): Promise<Record<string, unknown> | undefined> {
    const from = this.lines.length
    const mine = () => this.lines.slice(from).filter(line => line['msg'] === 'ledger log')
    await this.logger.ask({ type: 'log', level, text })
    if (level === 'debug') await this.logger.ask({ type: 'log', level: 'warn', text: 'after the debug line' })
    await eventually(() => mine().some(line => line['level'] === WARN), 'a warn line from the pool')
    return mine().find(line => line['level'] === (level === 'debug' ? DEBUG : WARN))
  }
}

function baseConfig(dir: string, openai: FakeUpstream, ollama: FakeUpstream, port: number): Doc {
  return {
    version: 2,
    image_name: 'fields-stack',
    apis: ['inference', 'models', 'conversations'],
    providers: {
      inference: [
        { provider_id: 'fake-openai', provider_type: 'remote::openai', config: { base_url: openai.url, api_key: 'sk-test' } },
        // Readable as either provider type (each takes its own keys), so that provider_type can change alone.
        { provider_id: 'fake-ollama', provider_type: 'remote::ollama', config: { url: ollama.url, base_url: openai.url, api_key: 'sk-test' } },
      ],
    },
    storage: {
      backends: {
        kv: { type: 'kv_lmdb', path: join(dir, 'kv') },
        sql: { type: 'sql_lmdb', path: join(dir, 'sql') },
        // Where stores move to.
        spare_kv: { type: 'kv_memory' },
        spare_sql: { type: 'sql_lmdb', path: join(dir, 'spare_sql') },
      },
      stores: {
        metadata: { backend: 'kv', namespace: 'registry' },
        inference: { backend: 'sql', table_name: 'inference_store', max_write_queue_size: 100, num_writers: 2 },
        conversations: { backend: 'sql', table_name: 'conversations' },
        runs: { backend: 'sql', table_name: 'runs' },
        sessions: { backend: 'kv', namespace: 'sessions' },
        prompts: { backend: 'kv', namespace: 'prompts' },
      },
    },
    registered_resources: {
      models: [
        { model_id: 'gpt', provider_id: 'fake-openai', provider_model_id: 'gpt-test' },
        { model_id: 'llama', provider_id: 'fake-ollama', provider_model_id: 'llama-test:latest' },
      ],
    },
    server: { host: '127.0.0.1', port },
    workflows: [
      // A retention from the start: the sweep that applies it runs as often (workflows[].retention).
      { name: 'human', module: WORKFLOWS_MODULE, export: 'waitsForHuman', retention: 150 },
      { name: 'steps', module: WORKFLOWS_MODULE, export: 'threeSteps' },
      { name: 'crashy', module: WORKFLOWS_MODULE, export: 'counterFile' },
    ],
    logging: { level: 'info' },
    // Two workers: when the crash of workflows[].resumable takes one, the other hosts what restarts.
    troupe: { workers: 2, node_id: 'fields-node-1' },
  }
}

// ---- HTTPS -------------------------------------------------------------------------------------

interface HttpsAnswer {
  readonly status: number
  /** The CN of the certificate the server presented. */
  readonly servedBy: string
}

function httpsGet(url: string, options: { ca: Buffer[]; cert?: Buffer; key?: Buffer }): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ...options, agent: false }, res => {
      const servedBy = String((res.socket as TLSSocket).getPeerCertificate().subject?.CN ?? '')
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? 0, servedBy }))
    })
    req.on('error', reject)
    req.end()
  })
}

const TRUSTED = [readFileSync(CERT), readFileSync(ROTATED)]

/** Whether a new connection to `url` is refused (fetch's pool could reuse one still open). */
function refused(url: string): Promise<boolean> {
  return new Promise(resolve => {
    const req = httpRequest(`${url}/v1/version`, { agent: false }, res => {
      res.resume()
      resolve(false)
    })
    req.on('error', error => resolve((error as NodeJS.ErrnoException).code === 'ECONNREFUSED'))
    req.end()
  })
}

// ---- the probes ------------------------------------------------------------------------------

interface Probe {
  /** Why this probe cannot run here (a server it needs is absent); undefined when it can. */
  readonly skip?: () => Promise<string | undefined>
  run(s: FieldStack, t: Test): Promise<void>
}

const postgresAbsent = () => unreachable('Postgres', 5432)
const redisAbsent = () => unreachable('Redis', 6379)
/** A kv_postgres backend reached by `url`, which wins over host, port, db, user and password. */
const PG_URL = 'postgres://postgres@127.0.0.1:5432/test'
const PG_TABLE = 'troupe_kv_reload_fields'

let quotas = 0

/** Sets server.quota live, counting in a namespace of its own (so from nothing), with `fields` added. */
async function withQuota(s: FieldStack, t: Test, fields: Doc = {}): Promise<void> {
  const quota = { kvstore: { backend: 'kv', namespace: `quota-${++quotas}` }, anonymous_max_requests: 1000, ...fields }
  await s.change(t, 'a quota set', d => set(d, 'server.quota', quota), { live: true })
}

async function withoutQuota(s: FieldStack, t: Test): Promise<void> {
  await s.change(t, 'the quota removed', d => unset(d, 'server.quota'), { live: true })
}

const quotaLimit = (answer: { headers: Headers }): string | null => answer.headers.get('ratelimit-limit')

/** Adds the `pg` backend unless it runs already: the postgres fields' probes share it. */
async function withPostgres(s: FieldStack, t: Test): Promise<void> {
  if ('pg' in get<Doc>(s.doc, 'storage.backends')) return
  await s.change(
    t,
    'a kv_postgres backend added',
    d => set(d, 'storage.backends.pg', { type: 'kv_postgres', url: PG_URL, table_name: PG_TABLE, host: '127.0.0.1', port: 5432, db: 'test', user: 'postgres', pool_size: 2 }),
    { started: ['store:pg'] },
  )
}

/** Changes one field of the `pg` backend: only its actor restarts, and it still answers. */
function postgresField(field: string, value: unknown, why: string): Probe {
  return {
    skip: postgresAbsent,
    async run(s, t) {
      await withPostgres(s, t)
      await s.change(t, `pg.${field} changed (${why})`, d => set(d, `storage.backends.pg.${field}`, value), { restarted: ['store:pg'] })
      const pg = await s.ref<KvMessage>('store:pg')
      t.equal(await pg.ask({ type: 'get', namespace: 'reload-fields', key: 'absent' }), null, `storage.backends.<key>.${field}: the restarted backend answers`)
    },
  }
}

/** Moves a store's field to `value`: exactly the store's users restart, and `check` sees them work. */
function storeField(path: string, value: unknown, users: readonly string[], check?: (s: FieldStack, t: Test) => Promise<void>): Probe {
  return {
    async run(s, t) {
      await s.change(t, `${path} changed`, d => set(d, path, value), { restarted: users })
      await check?.(s, t)
    },
  }
}

/** Chat, then read the completion back: the inference store records and serves. */
async function recordsCompletions(s: FieldStack, t: Test, where: string): Promise<string> {
  const answer = await s.chat('gpt')
  t.equal(answer.status, 200, `${where}: a chat completion is answered`)
  const id = String(answer.body['id'])
  t.equal((await s.request(`/v1/chat/completions/${id}`)).status, 200, `${where}: and read back from the inference store`)
  return id
}

async function runsWorkflow(s: FieldStack, t: Test, where: string, name = 'steps'): Promise<Record<string, unknown>> {
  const run = await s.post(`/workflows/${name}/run`, { start_event: { n: 0 } })
  t.equal(run.status, 200, `${where}: a run of ${name} completes (${JSON.stringify(run.body).slice(0, 200)})`)
  return run.body
}

/**
 * Keyed by listFields' paths, run in this order. The crash of workflows[].resumable takes a
 * pool thread: the probes that must reach every thread (logging, ask timeout) run before it, and
 * troupe.workers, last, shrinks the pool once the thread's replacement is up.
 */
const PROBES: Record<string, Probe> = {
  version: {
    async run(s, t) {
      await s.change(t, 'version 2 → "2"', d => set(d, 'version', '2'))
    },
  },
  image_name: {
    async run(s, t) {
      await s.change(t, 'image_name renamed', d => set(d, 'image_name', 'fields-renamed'), { live: true })
      t.equal((await s.request('/v1/version')).body['image_name'], 'fields-renamed', 'image_name: /v1/version shows the new name')
      t.equal((await s.request('/deployments/fields-renamed/workflows')).status, 200, 'image_name: the deployment routes take the new name')
    },
  },
  apis: {
    async run(s, t) {
      await s.change(t, 'apis extended', d => set(d, 'apis', ['inference', 'models', 'conversations', 'workflows']))
    },
  },
  providers: {
    async run(s, t) {
      await s.change(t, 'a provider added', d => append(d, 'providers.inference', { provider_id: 'third', provider_type: 'remote::ollama', config: { url: s.ollama.url } }), { started: ['provider:third'] })
      t.equal((await s.chat('third/some-model')).status, 200, 'providers: the added provider serves provider_id/model')
      await s.change(t, 'the provider removed', d => unset(d, 'providers.inference.third'), { stopped: ['provider:third'] })
      t.equal((await s.chat('third/some-model')).status, 404, 'providers: nothing routes to the removed provider')
    },
  },
  'providers.<key>[].provider_id': {
    async run(s, t) {
      await s.change(t, 'a provider added', d => append(d, 'providers.inference', { provider_id: 'third', provider_type: 'remote::ollama', config: { url: s.ollama.url } }), { started: ['provider:third'] })
      // Items are known by provider_id: another id is another provider.
      await s.change(t, 'its provider_id changed', d => set(d, 'providers.inference.third.provider_id', 'fourth'), { started: ['provider:fourth'], stopped: ['provider:third'] })
      t.equal((await s.chat('fourth/some-model')).status, 200, 'provider_id: the new id serves')
      t.equal((await s.chat('third/some-model')).status, 404, 'provider_id: the old id routes nowhere')
      await s.change(t, 'the provider removed', d => unset(d, 'providers.inference.fourth'), { stopped: ['provider:fourth'] })
    },
  },
  'providers.<key>[].provider_type': {
    async run(s, t) {
      await s.change(t, 'fake-ollama served as remote::openai', d => set(d, 'providers.inference.fake-ollama.provider_type', 'remote::openai'), { replaced: ['provider:fake-ollama'] })
      const asked = s.openai.requests.length
      t.equal((await s.chat('llama')).status, 200, 'provider_type: its model is served')
      t.ok(s.openai.requests.length > asked && s.lastModel(s.openai) === 'llama-test:latest', 'provider_type: by the new implementation, which speaks OpenAI to base_url')
      await s.change(t, 'back to remote::ollama', d => set(d, 'providers.inference.fake-ollama.provider_type', 'remote::ollama'), { replaced: ['provider:fake-ollama'] })
    },
  },
  'providers.<key>[].config': {
    async run(s, t) {
      const second = await fakeOllama()
      t.teardown(() => second.close())
      await s.change(t, "fake-ollama's url changed", d => set(d, 'providers.inference.fake-ollama.config.url', second.url), { restarted: ['provider:fake-ollama'] })
      t.equal((await s.chat('llama')).status, 200, 'config: its model is served')
      t.equal(second.requests.filter(r => r.path === '/api/chat').length, 1, 'config: by the new upstream')
      await s.change(t, 'the url put back', d => set(d, 'providers.inference.fake-ollama.config.url', s.ollama.url), { restarted: ['provider:fake-ollama'] })
    },
  },
  'providers.<key>[].module': {
    async run(s, t) {
      await s.change(t, "fake-openai's module set", d => set(d, 'providers.inference.fake-openai.module', OPENAI_PROVIDER_MODULE), { replaced: ['provider:fake-openai'] })
      t.equal((await s.chat('gpt')).status, 200, 'module: the replaced provider serves')
      await s.change(t, 'the module unset', d => unset(d, 'providers.inference.fake-openai.module'), { replaced: ['provider:fake-openai'] })
      // The implementation comes from the module: one that is not there cannot be served.
      const missing = await s.attempt(d => set(d, 'providers.inference.fake-openai.module', join(s.dir, 'no-such-provider.js')))
      t.equal(missing.result, 'invalid', 'module: a module that does not exist is refused')
      t.match(missing.errors, [{ path: 'providers.inference[0].module', message: /cannot load .*no-such-provider\.js/ }])
      await s.rewrite(t)
    },
  },
  'storage.backends': {
    async run(s, t) {
      await s.change(t, 'a backend added', d => set(d, 'storage.backends.extra', { type: 'kv_memory' }), { started: ['store:extra'] })
      const extra = await s.ref<KvMessage>('store:extra')
      await extra.ask({ type: 'set', namespace: 'probe', key: 'k', value: 1 })
      t.equal(await extra.ask({ type: 'get', namespace: 'probe', key: 'k' }), 1, 'storage.backends: the added backend serves')
      await s.change(t, 'the backend removed', d => unset(d, 'storage.backends.extra'), { stopped: ['store:extra'] })
    },
  },
  'storage.backends.<key>.type': {
    async run(s, t) {
      await s.change(t, 'a kv_lmdb backend added', d => set(d, 'storage.backends.morph', { type: 'kv_lmdb', path: join(s.dir, 'morph') }), { started: ['store:morph'] })
      // Another family is another behaviour (kvStore, tableStore), as a provider_type is.
      await s.change(t, 'its type changed to sql_lmdb', d => set(d, 'storage.backends.morph.type', 'sql_lmdb'), { replaced: ['store:morph'] })
      const morph = await s.ref<TableMessage>('store:morph')
      const created = await morph.ask({ type: 'createTable', table: { name: 'probe', columns: { id: { type: 'text' } }, primaryKey: ['id'] } }).then(
        () => 'a table store',
        (error: unknown) => `refused: ${error instanceof ActorError ? error.code : ''} ${String(error)}`,
      )
      t.equal(created, 'a table store', 'type: the replaced backend serves as its new type')
      await s.change(t, 'the backend removed', d => unset(d, 'storage.backends.morph'), { stopped: ['store:morph'] })
    },
  },
  'storage.backends.<key>.path': {
    async run(s, t) {
      await s.change(t, "kv's path moved", d => set(d, 'storage.backends.kv.path', join(s.dir, 'kv-moved')), { restarted: [KV, ROUTING, ...WORKFLOW_ACTORS] })
      t.ok(existsSync(join(s.dir, 'kv-moved')), 'path: the backend opened its environment at the new path')
      t.equal((await s.request('/v1/models/gpt')).status, 200, 'path: the routing table, restarted on it, serves the declared models')
    },
  },
  'storage.backends.<key>.map_size_mb': {
    async run(s, t) {
      await s.change(t, "sql's map size changed", d => set(d, 'storage.backends.sql.map_size_mb', 512), { restarted: [SQL, INFERENCE, CONVERSATIONS, ...WORKFLOW_ACTORS] })
      await recordsCompletions(s, t, 'map_size_mb')
      await runsWorkflow(s, t, 'map_size_mb')
    },
  },
  'storage.backends.<key>.db_path': {
    async run(s, t) {
      await s.change(t, 'a kv_sqlite backend added', d => set(d, 'storage.backends.lite', { type: 'kv_sqlite', db_path: join(s.dir, 'lite.db') }), { started: ['store:lite'] })
      await s.change(t, 'its db_path moved', d => set(d, 'storage.backends.lite.db_path', join(s.dir, 'moved.db')), { restarted: ['store:lite'] })
      t.ok(existsSync(join(s.dir, 'moved.db.lmdb')), 'db_path: the backend opened its LMDB environment beside the new path')
      await s.change(t, 'the backend removed', d => unset(d, 'storage.backends.lite'), { stopped: ['store:lite'] })
    },
  },
  'storage.backends.<key>.url': {
    skip: redisAbsent,
    async run(s, t) {
      await s.change(t, 'a kv_redis backend added', d => set(d, 'storage.backends.cache', { type: 'kv_redis', url: `${REDIS_URL}/0` }), { started: ['store:cache'] })
      const namespace = `reload-fields-${process.pid}`
      const cache = await s.ref<KvMessage>('store:cache')
      await cache.ask({ type: 'set', namespace, key: 'k', value: 'in db 0', ttlMs: 60_000 })
      t.equal(await cache.ask({ type: 'get', namespace, key: 'k' }), 'in db 0', 'url: written to database 0')
      await s.change(t, 'its url moved to database 1', d => set(d, 'storage.backends.cache.url', `${REDIS_URL}/1`), { restarted: ['store:cache'] })
      t.equal(await cache.ask({ type: 'get', namespace, key: 'k' }), null, 'url: the restarted backend reads the new database')
      await s.change(t, 'the backend removed', d => unset(d, 'storage.backends.cache'), { stopped: ['store:cache'] })
    },
  },
  'storage.backends.<key>.host': postgresField('host', 'localhost', 'ignored while url is set'),
  'storage.backends.<key>.port': postgresField('port', 5433, 'ignored while url is set'),
  'storage.backends.<key>.db': postgresField('db', 'postgres', 'ignored while url is set'),
  'storage.backends.<key>.user': postgresField('user', 'troupe', 'ignored while url is set'),
  'storage.backends.<key>.password': postgresField('password', 'not-checked', 'ignored while url is set'),
  'storage.backends.<key>.pool_size': postgresField('pool_size', 3, 'fewer connections'),
  'storage.backends.<key>.table_name': {
    skip: postgresAbsent,
    async run(s, t) {
      await withPostgres(s, t)
      const pg = await s.ref<KvMessage>('store:pg')
      await pg.ask({ type: 'set', namespace: 'reload-fields', key: 'k', value: 'in the first table', ttlMs: 60_000 })
      t.equal(await pg.ask({ type: 'get', namespace: 'reload-fields', key: 'k' }), 'in the first table', 'table_name: written to the first table')
      await s.change(t, "pg's table changed", d => set(d, 'storage.backends.pg.table_name', `${PG_TABLE}_two`), { restarted: ['store:pg'] })
      t.equal(await pg.ask({ type: 'get', namespace: 'reload-fields', key: 'k' }), null, 'table_name: the restarted backend reads the new table')
      await s.change(t, 'the backend removed', d => unset(d, 'storage.backends.pg'), { stopped: ['store:pg'] })
    },
  },
  'storage.stores.metadata': {
    async run(s, t) {
      await s.change(t, 'the metadata store removed', d => unset(d, 'storage.stores.metadata'), { restarted: [ROUTING] })
      t.equal((await s.request('/v1/models/gpt')).status, 200, 'metadata: the routing table serves the declared models from memory')
      await s.change(t, 'the metadata store put back', d => set(d, 'storage.stores.metadata', { backend: 'kv', namespace: 'registry' }), { restarted: [ROUTING] })
    },
  },
  'storage.stores.metadata.backend': storeField('storage.stores.metadata.backend', 'spare_kv', [ROUTING], async (s, t) => {
    const page = await (await s.ref<KvMessage>('store:spare_kv')).ask<{ items: unknown[] }>({ type: 'scan', namespace: 'registry' })
    t.ok(page.items.length > 0, 'metadata.backend: the registry is written to the new backend')
  }),
  'storage.stores.metadata.namespace': storeField('storage.stores.metadata.namespace', 'registry_two', [ROUTING], async (s, t) => {
    const backend = get<string>(s.doc, 'storage.stores.metadata.backend')
    const page = await (await s.ref<KvMessage>(`store:${backend}`)).ask<{ items: unknown[] }>({ type: 'scan', namespace: 'registry_two' })
    t.ok(page.items.length > 0, 'metadata.namespace: the registry is written under the new namespace')
  }),
  'storage.stores.inference': {
    async run(s, t) {
      const stored = get<Doc>(s.doc, 'storage.stores.inference')
      await s.change(t, 'the inference store removed', d => unset(d, 'storage.stores.inference'), { stopped: [INFERENCE] })
      t.equal((await s.chat('gpt')).status, 200, 'inference: completions are still answered')
      t.equal((await s.request('/v1/chat/completions')).status, 404, 'inference: stored completions are not configured')
      await s.change(t, 'the inference store put back', d => set(d, 'storage.stores.inference', stored), { started: [INFERENCE] })
      await recordsCompletions(s, t, 'inference put back')
    },
  },
  'storage.stores.inference.backend': storeField('storage.stores.inference.backend', 'spare_sql', [INFERENCE], async (s, t) => {
    const id = await recordsCompletions(s, t, 'inference.backend')
    t.ok((await s.rows('spare_sql', get(s.doc, 'storage.stores.inference.table_name'))).some(row => row['id'] === id), 'inference.backend: recorded on the new backend')
  }),
  'storage.stores.inference.table_name': storeField('storage.stores.inference.table_name', 'inference_two', [INFERENCE], async (s, t) => {
    const id = await recordsCompletions(s, t, 'inference.table_name')
    t.ok((await s.rows(get(s.doc, 'storage.stores.inference.backend'), 'inference_two')).some(row => row['id'] === id), 'inference.table_name: recorded in the new table')
  }),
  'storage.stores.inference.max_write_queue_size': {
    async run(s, t) {
      await s.change(t, 'max_write_queue_size changed', d => set(d, 'storage.stores.inference.max_write_queue_size', 50), { live: true })
      t.match(await s.inferenceStats(), { maxQueue: 50 }, "max_write_queue_size: the inference store's stats show the new limit")
    },
  },
  'storage.stores.inference.num_writers': {
    async run(s, t) {
      await s.change(t, 'num_writers changed', d => set(d, 'storage.stores.inference.num_writers', 3), { live: true })
      t.match(await s.inferenceStats(), { writers: 3 }, "num_writers: the inference store's stats show the new count")
    },
  },
  'storage.stores.inference.write_mode': {
    async run(s, t) {
      await s.change(t, 'write_mode sync', d => set(d, 'storage.stores.inference.write_mode', 'sync'), { live: true })
      t.match(await s.inferenceStats(), { writeMode: 'sync' }, "write_mode: the inference store's stats show it")
      await recordsCompletions(s, t, 'write_mode sync')
    },
  },
  'storage.stores.inference.retention': {
    async run(s, t) {
      await recordsCompletions(s, t, 'before retention')
      await recordsCompletions(s, t, 'before retention')
      await s.change(t, 'retention set', d => set(d, 'storage.stores.inference.retention', { max_count: 1 }), { live: true })
      t.match(await s.inferenceStats(), { retention: { maxCount: 1 } }, "retention: the inference store's stats show it")
      t.equal(await s.trimmedTo(), 1, 'retention: a pass keeps max_count completions')
      await s.change(t, 'retention unset', d => unset(d, 'storage.stores.inference.retention'), { live: true })
      t.match(await s.inferenceStats(), { retention: null }, 'retention: unset, every completion is kept')
    },
  },
  'storage.stores.inference.retention.max_count': {
    async run(s, t) {
      await s.change(t, 'retention set', d => set(d, 'storage.stores.inference.retention', { max_count: 100 }), { live: true })
      await recordsCompletions(s, t, 'max_count')
      await recordsCompletions(s, t, 'max_count')
      await s.change(t, 'max_count lowered', d => set(d, 'storage.stores.inference.retention.max_count', 1), { live: true })
      t.match(await s.inferenceStats(), { retention: { maxCount: 1 } }, "max_count: the inference store's stats show it")
      t.equal(await s.trimmedTo(), 1, 'max_count: a pass keeps that many completions')
      await s.change(t, 'retention unset', d => unset(d, 'storage.stores.inference.retention'), { live: true })
    },
  },
  'storage.stores.inference.retention.max_age': {
    async run(s, t) {
      await s.change(t, 'retention set', d => set(d, 'storage.stores.inference.retention', { max_count: 100 }), { live: true })
      await recordsCompletions(s, t, 'max_age')
      await s.change(t, 'max_age set', d => set(d, 'storage.stores.inference.retention.max_age', 1), { live: true })
      t.match(await s.inferenceStats(), { retention: { maxAgeMs: 1 } }, "max_age: the inference store's stats show it")
      t.equal(await s.trimmedTo(), 0, 'max_age: a pass removes the completions recorded before it')
      await s.change(t, 'retention unset', d => unset(d, 'storage.stores.inference.retention'), { live: true })
    },
  },
  'storage.stores.conversations': {
    async run(s, t) {
      const stored = get<Doc>(s.doc, 'storage.stores.conversations')
      await s.change(t, 'the conversations store removed', d => unset(d, 'storage.stores.conversations'), { stopped: [CONVERSATIONS] })
      t.equal((await s.post('/v1/conversations', {})).status, 404, 'conversations: not configured')
      await s.change(t, 'the conversations store put back', d => set(d, 'storage.stores.conversations', stored), { started: [CONVERSATIONS] })
      t.equal((await s.post('/v1/conversations', {})).status, 200, 'conversations: served again')
    },
  },
  'storage.stores.conversations.backend': storeField('storage.stores.conversations.backend', 'spare_sql', [CONVERSATIONS], async (s, t) => {
    t.equal((await s.post('/v1/conversations', {})).status, 200, 'conversations.backend: served from the new backend')
  }),
  'storage.stores.conversations.table_name': storeField('storage.stores.conversations.table_name', 'conversations_two', [CONVERSATIONS], async (s, t) => {
    t.equal((await s.post('/v1/conversations', {})).status, 200, 'conversations.table_name: served from the new table')
  }),
  'storage.stores.conversations.write_mode': storeField('storage.stores.conversations.write_mode', 'async', [CONVERSATIONS], async (s, t) => {
    t.equal((await s.post('/v1/conversations', {})).status, 200, 'conversations.write_mode: served')
  }),
  'storage.stores.runs': {
    async run(s, t) {
      // Workflows need it: the one change of it as a whole is refused.
      const report = await s.change(t, 'the runs store removed', d => unset(d, 'storage.stores.runs'), { result: 'invalid' })
      t.ok(report.errors.some(e => e.path === 'storage.stores.runs'), 'runs: the refusal names storage.stores.runs')
      await s.rewrite(t)
    },
  },
  'storage.stores.runs.backend': storeField('storage.stores.runs.backend', 'spare_sql', WORKFLOW_ACTORS, async (s, t) => {
    const run = await runsWorkflow(s, t, 'runs.backend')
    t.ok(await s.runRow(String(run['handler_id'])), 'runs.backend: the run is journaled on the new backend')
  }),
  'storage.stores.runs.table_name': storeField('storage.stores.runs.table_name', 'runs_two', WORKFLOW_ACTORS, async (s, t) => {
    const run = await runsWorkflow(s, t, 'runs.table_name')
    t.ok(await s.runRow(String(run['handler_id'])), 'runs.table_name: the run is journaled in the new table')
  }),
  'storage.stores.sessions': {
    async run(s, t) {
      const stored = get<Doc>(s.doc, 'storage.stores.sessions')
      await s.change(t, 'the sessions store removed', d => unset(d, 'storage.stores.sessions'), { restarted: WORKFLOW_ACTORS })
      await runsWorkflow(s, t, 'sessions removed')
      await s.change(t, 'the sessions store put back', d => set(d, 'storage.stores.sessions', stored), { restarted: WORKFLOW_ACTORS })
    },
  },
  'storage.stores.sessions.backend': storeField('storage.stores.sessions.backend', 'spare_kv', WORKFLOW_ACTORS, (s, t) => runsWorkflow(s, t, 'sessions.backend').then(() => undefined)),
  'storage.stores.sessions.namespace': storeField('storage.stores.sessions.namespace', 'sessions_two', WORKFLOW_ACTORS, (s, t) => runsWorkflow(s, t, 'sessions.namespace').then(() => undefined)),
  'storage.stores.prompts': {
    async run(s, t) {
      const stored = get<Doc>(s.doc, 'storage.stores.prompts')
      await s.change(t, 'the prompts store removed', d => unset(d, 'storage.stores.prompts'))
      await s.change(t, 'the prompts store put back', d => set(d, 'storage.stores.prompts', stored))
    },
  },
  'storage.stores.prompts.backend': storeField('storage.stores.prompts.backend', 'spare_kv', []),
  'storage.stores.prompts.namespace': storeField('storage.stores.prompts.namespace', 'prompts_two', []),
  'registered_resources.models': {
    async run(s, t) {
      await s.change(t, 'a model added', d => append(d, 'registered_resources.models', { model_id: 'added', provider_id: 'fake-openai', provider_model_id: 'added-upstream' }), { live: true })
      t.equal((await s.request('/v1/models/added')).status, 200, 'models: the added model is registered')
      t.equal((await s.chat('added')).status, 200, 'models: and served')
      t.equal(s.lastModel(s.openai), 'added-upstream', 'models: by its provider, under its provider_model_id')
      await s.change(t, 'the model removed', d => unset(d, 'registered_resources.models.added'), { live: true })
      t.equal((await s.request('/v1/models/added')).status, 404, 'models: the removed model is unregistered')
    },
  },
  'registered_resources.models[].model_id': {
    async run(s, t) {
      await s.change(t, 'llama renamed', d => set(d, 'registered_resources.models.llama.model_id', 'llama-two'), { live: true })
      t.equal((await s.request('/v1/models/llama-two')).status, 200, 'model_id: the new id is registered')
      t.equal((await s.request('/v1/models/llama')).status, 404, 'model_id: the old one is not')
      await s.change(t, 'the name put back', d => set(d, 'registered_resources.models.llama-two.model_id', 'llama'), { live: true })
    },
  },
  'registered_resources.models[].provider_id': {
    async run(s, t) {
      await s.change(t, 'llama moved to fake-openai', d => set(d, 'registered_resources.models.llama.provider_id', 'fake-openai'), { live: true })
      t.equal((await s.chat('llama')).status, 200, 'provider_id: the model is served')
      t.equal(s.lastModel(s.openai), 'llama-test:latest', 'provider_id: by the new provider')
      await s.change(t, 'moved back', d => set(d, 'registered_resources.models.llama.provider_id', 'fake-ollama'), { live: true })
    },
  },
  'registered_resources.models[].provider_model_id': {
    async run(s, t) {
      await s.change(t, "gpt's upstream name changed", d => set(d, 'registered_resources.models.gpt.provider_model_id', 'gpt-other'), { live: true })
      t.equal((await s.chat('gpt')).status, 200, 'provider_model_id: the model is served')
      t.equal(s.lastModel(s.openai), 'gpt-other', 'provider_model_id: the upstream is asked for the new name')
      await s.change(t, 'put back', d => set(d, 'registered_resources.models.gpt.provider_model_id', 'gpt-test'), { live: true })
    },
  },
  'registered_resources.models[].model_type': {
    async run(s, t) {
      await s.change(t, 'llama made an embedding model', d => set(d, 'registered_resources.models.llama.model_type', 'embedding'), { live: true })
      t.equal((await s.request('/v1/models/llama')).body['model_type'], 'embedding', 'model_type: the registry has the new type')
      await s.change(t, 'put back', d => set(d, 'registered_resources.models.llama.model_type', 'llm'), { live: true })
    },
  },
  'registered_resources.models[].metadata': {
    async run(s, t) {
      await s.change(t, "llama's metadata set", d => set(d, 'registered_resources.models.llama.metadata', { family: 'llama' }), { live: true })
      t.same((await s.request('/v1/models/llama')).body['metadata'], { family: 'llama' }, 'metadata: the registry has it')
      await s.change(t, 'unset', d => unset(d, 'registered_resources.models.llama.metadata'), { live: true })
    },
  },
  'server.host': {
    async run(s, t) {
      const before = s.stack.url
      await s.change(t, 'host moved to 127.0.0.2', d => set(d, 'server.host', '127.0.0.2'), { live: true })
      t.match(s.stack.url, /^http:\/\/127\.0\.0\.2:\d+$/, 'host: the stack listens on the new host')
      t.equal((await s.request('/v1/version')).status, 200, 'host: and serves there')
      t.ok(await refused(before), 'host: the old address is closed')
      await s.change(t, 'host put back', d => set(d, 'server.host', '127.0.0.1'), { live: true })
    },
  },
  'server.port': {
    async run(s, t) {
      const before = s.stack.url
      const port = await freePort()
      await s.change(t, 'port moved', d => set(d, 'server.port', port), { live: true })
      t.equal(s.stack.url, `http://127.0.0.1:${port}`, 'port: the stack listens on the new port')
      t.equal((await s.request('/v1/version')).status, 200, 'port: and serves there')
      t.ok(await refused(before), 'port: the old port is closed')
    },
  },
  'server.max_body_bytes': {
    async run(s, t) {
      const padded = 'x'.repeat(4096)
      t.equal((await s.chat('gpt', padded)).status, 200, 'max_body_bytes: a 4 KiB body is taken under the default limit')
      await s.change(t, 'max_body_bytes lowered', d => set(d, 'server.max_body_bytes', 2048), { live: true })
      const tooLarge = await s.chat('gpt', padded)
      t.equal(tooLarge.status, 413, 'max_body_bytes: the same body now gets 413')
      t.match(tooLarge.body, { error: { code: 'body_too_large' } }, 'max_body_bytes: refused as body_too_large')
      await s.change(t, 'max_body_bytes unset', d => unset(d, 'server.max_body_bytes'), { live: true })
    },
  },
  'server.auth': {
    async run(s, t) {
      await s.change(t, 'auth on', d => set(d, 'server.auth', { provider_config: { type: 'upstream_header', principal_header: 'x-user' } }), { live: true })
      t.equal((await s.request('/v1/models')).status, 401, 'auth: live, a request without credentials is refused')
      t.equal((await s.request('/v1/models', { headers: { 'x-user': 'alice' } })).status, 200, 'auth: one with them is served')
      t.equal((await s.request('/v1/version')).status, 200, 'auth: version stays public')
      await s.change(t, 'auth off', d => unset(d, 'server.auth'), { live: true })
      t.equal((await s.request('/v1/models')).status, 200, 'auth: removed live, no credentials are needed')
    },
  },
  'server.auth.provider_config': {
    async run(s, t) {
      const key = 'tr-reload-fields-key'
      const hash = `sha256:${createHash('sha256').update(key).digest('hex')}`
      await s.change(t, 'api keys', d => set(d, 'server.auth', { provider_config: { type: 'api_keys', keys: [{ hash, principal: 'alice' }] } }), { live: true })
      t.equal((await s.request('/v1/models', { headers: { authorization: `Bearer ${key}` } })).status, 200, 'provider_config: the key admits')
      await s.change(t, 'another provider', d => set(d, 'server.auth.provider_config', { type: 'upstream_header', principal_header: 'x-user' }), { live: true })
      t.equal((await s.request('/v1/models', { headers: { authorization: `Bearer ${key}` } })).status, 401, 'provider_config: the key no longer does')
      t.equal((await s.request('/v1/models', { headers: { 'x-user': 'alice' } })).status, 200, 'provider_config: the new provider admits')
      const bad = await s.attempt(d => set(d, 'server.auth.provider_config', { type: 'api_keys', keys: [] }))
      t.equal(bad.result, 'invalid', 'provider_config: an invalid one is refused')
      t.ok(bad.errors.some(e => e.path === 'server.auth.provider_config.keys'), 'provider_config: the refusal names the field')
      await s.rewrite(t)
      await s.change(t, 'auth off', d => unset(d, 'server.auth'), { live: true })
    },
  },
  'server.auth.route_policy': {
    async run(s, t) {
      const rules = [{ permit: { paths: '/v1/version' } }, { permit: { paths: '/v1/models' } }]
      await s.change(t, 'route rules alone', d => set(d, 'server.auth', { route_policy: rules }), { live: true })
      t.equal((await s.request('/v1/models')).status, 200, 'route_policy: a permitted route is served, without credentials')
      t.equal((await s.request('/v1/inspect/routes')).status, 403, 'route_policy: any other is refused')
      await s.change(t, 'a rule less', d => set(d, 'server.auth.route_policy', [rules[0]]), { live: true })
      t.equal((await s.request('/v1/models')).status, 403, 'route_policy: the change holds at once')
      const bad = await s.attempt(d => set(d, 'server.auth.route_policy', [{ permit: { paths: 'v1/models' } }]))
      t.equal(bad.result, 'invalid', 'route_policy: an invalid rule is refused')
      t.ok(bad.errors.some(e => e.path === 'server.auth.route_policy[0].permit.paths'), 'route_policy: the refusal names the field')
      await s.rewrite(t)
      await s.change(t, 'auth off', d => unset(d, 'server.auth'), { live: true })
    },
  },
  'server.auth.access_policy': {
    async run(s, t) {
      const provider_config = { type: 'upstream_header', principal_header: 'x-user' }
      const ids = async (): Promise<string[]> => ((await s.request('/v1/models', { headers: { 'x-user': 'alice' } })).body['data'] as Array<{ id: string }>).map(m => m.id)
      await s.change(t, 'auth with the default policy', d => set(d, 'server.auth', { provider_config }), { live: true })
      const all = await ids()
      t.ok(all.length > 0, 'access_policy: by default the unowned models of the config are listed')
      await s.change(t, 'nothing readable', d => set(d, 'server.auth.access_policy', [{ forbid: { actions: ['read'] } }]), { live: true })
      t.same(await ids(), [], 'access_policy: the new rules hold at once')
      const bad = await s.attempt(d => set(d, 'server.auth.access_policy', [{ forbid: { actions: ['read'] }, when: 'user is boss' }]))
      t.equal(bad.result, 'invalid', 'access_policy: an invalid rule is refused')
      t.ok(bad.errors.some(e => e.path === 'server.auth.access_policy[0].when'), 'access_policy: the refusal names the field')
      await s.rewrite(t)
      await s.change(t, 'auth off', d => unset(d, 'server.auth'), { live: true })
    },
  },
  'server.quota': {
    async run(s, t) {
      t.equal(quotaLimit(await s.request('/v1/models')), null, 'quota: unset, nothing is counted')
      await withQuota(s, t)
      t.equal(quotaLimit(await s.request('/v1/models')), '1000', 'quota: set live, requests are counted')
      t.equal(quotaLimit(await s.request('/v1/version')), null, 'quota: public routes are not')
      await withoutQuota(s, t)
      t.equal(quotaLimit(await s.request('/v1/models')), null, 'quota: removed live')
    },
  },
  'server.quota.kvstore': {
    async run(s, t) {
      await withQuota(s, t)
      t.equal((await s.request('/v1/models')).headers.get('ratelimit-remaining'), '999')
      await s.change(t, 'counts kept elsewhere', d => set(d, 'server.quota.kvstore', { backend: 'spare_kv', namespace: 'moved' }), { live: true })
      t.equal((await s.request('/v1/models')).headers.get('ratelimit-remaining'), '999', 'kvstore: counted in the new place, from nothing')
      await withoutQuota(s, t)
    },
  },
  'server.quota.kvstore.backend': {
    async run(s, t) {
      await withQuota(s, t)
      await s.request('/v1/models')
      await s.change(t, 'counts kept in another backend', d => set(d, 'server.quota.kvstore.backend', 'spare_kv'), { live: true })
      t.equal((await s.request('/v1/models')).headers.get('ratelimit-remaining'), '999', 'kvstore.backend: counted there, from nothing')
      await withoutQuota(s, t)
    },
  },
  'server.quota.kvstore.namespace': {
    async run(s, t) {
      await withQuota(s, t)
      await s.request('/v1/models')
      await s.change(t, 'counts kept under another namespace', d => set(d, 'server.quota.kvstore.namespace', `quota-${++quotas}`), { live: true })
      t.equal((await s.request('/v1/models')).headers.get('ratelimit-remaining'), '999', 'kvstore.namespace: counted there, from nothing')
      await withoutQuota(s, t)
    },
  },
  'server.quota.anonymous_max_requests': {
    async run(s, t) {
      await withQuota(s, t)
      t.equal((await s.request('/v1/models')).status, 200)
      await s.change(t, 'one request a day', d => set(d, 'server.quota.anonymous_max_requests', 1), { live: true })
      t.match(await s.request('/v1/models'), { status: 429, body: { error: { code: 'quota_exceeded' } } }, 'anonymous_max_requests: the request made counts against the new limit')
      await withoutQuota(s, t)
    },
  },
  'server.quota.authenticated_max_requests': {
    async run(s, t) {
      const alice = { headers: { 'x-user': 'alice' } }
      await s.change(t, 'auth on', d => set(d, 'server.auth', { provider_config: { type: 'upstream_header', principal_header: 'x-user' } }), { live: true })
      await withQuota(s, t)
      t.equal(quotaLimit(await s.request('/v1/models', alice)), '1000', 'authenticated_max_requests: the default')
      await s.change(t, 'two requests a day', d => set(d, 'server.quota.authenticated_max_requests', 2), { live: true })
      t.equal((await s.request('/v1/models', alice)).status, 200)
      t.match(await s.request('/v1/models', alice), { status: 429, body: { error: { code: 'quota_exceeded', message: /principal 'alice'/ } } }, 'authenticated_max_requests: the new limit holds')
      await withoutQuota(s, t)
      await s.change(t, 'auth off', d => unset(d, 'server.auth'), { live: true })
    },
  },
  'server.quota.period': {
    async run(s, t) {
      await withQuota(s, t)
      await s.change(t, "the default period written out", d => set(d, 'server.quota.period', 'day'), { result: 'unchanged' })
      const bad = await s.attempt(d => set(d, 'server.quota.period', 'week'))
      t.equal(bad.result, 'invalid', "period: llama-stack's only period is day")
      t.ok(bad.errors.some(e => e.path === 'server.quota.period'), 'period: the refusal names the field')
      await s.rewrite(t)
      await withoutQuota(s, t)
    },
  },
  'server.quota.max_concurrent_streams': {
    async run(s, t) {
      await withQuota(s, t, { max_concurrent_streams: 1 })
      const streamed = { model: 'fake-openai/slow-stream', messages: [{ role: 'user', content: 'hi' }], stream: true }
      const controller = new AbortController()
      const open = await fetch(`${s.stack.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(streamed), signal: controller.signal })
      await open.body!.getReader().read()
      t.match(await s.post('/v1/chat/completions', streamed), { status: 429, body: { error: { code: 'concurrency_limit' } } }, 'max_concurrent_streams: a second stream is refused')
      await s.change(t, 'two streams', d => set(d, 'server.quota.max_concurrent_streams', 2), { live: true })
      t.equal((await s.post('/v1/chat/completions', { ...streamed, model: 'gpt' })).status, 200, 'max_concurrent_streams: raised live')
      controller.abort()
      await withoutQuota(s, t)
    },
  },
  'server.quota.max_concurrent_runs': {
    async run(s, t) {
      await withQuota(s, t, { max_concurrent_runs: 1 })
      const first = await s.post('/workflows/human/run-nowait', { start_event: {} })
      t.equal(first.status, 200)
      t.match(await s.post('/workflows/human/run-nowait', { start_event: {} }), { status: 429, body: { error: { code: 'concurrency_limit' } } }, 'max_concurrent_runs: a second run is refused while the first goes on')
      await s.change(t, 'two runs', d => set(d, 'server.quota.max_concurrent_runs', 2), { live: true })
      const second = await s.post('/workflows/human/run-nowait', { start_event: {} })
      t.equal(second.status, 200, 'max_concurrent_runs: raised live')
      await s.cancel([String(first.body['handler_id']), String(second.body['handler_id'])])
      await withoutQuota(s, t)
    },
  },
  'server.cors': {
    async run(s, t) {
      const origin = { origin: 'http://anywhere.test' }
      t.equal((await s.request('/v1/models', { headers: origin })).headers.get('access-control-allow-origin'), null, 'cors: off, no CORS header')
      await s.change(t, 'cors on', d => set(d, 'server.cors', true), { live: true })
      t.equal((await s.request('/v1/models', { headers: origin })).headers.get('access-control-allow-origin'), '*', 'cors: any origin is allowed')
      await s.change(t, 'cors off', d => unset(d, 'server.cors'), { live: true })
    },
  },
  'server.cors.allow_origins': {
    async run(s, t) {
      await s.change(t, 'one origin allowed', d => set(d, 'server.cors', { allow_origins: ['http://allowed.test'] }), { live: true })
      t.equal((await s.request('/v1/models', { headers: { origin: 'http://allowed.test' } })).headers.get('access-control-allow-origin'), 'http://allowed.test', 'allow_origins: the listed origin is allowed')
      t.equal((await s.request('/v1/models', { headers: { origin: 'http://other.test' } })).headers.get('access-control-allow-origin'), null, 'allow_origins: another is not')
      await s.change(t, 'cors off', d => unset(d, 'server.cors'), { live: true })
    },
  },
  'server.workflows_context_secret': {
    async run(s, t) {
      const secret = 'reload-fields-context-secret'
      const withContext = () => s.post('/workflows/steps/run-nowait', { start_event: { n: 0 }, context: sealContext(secret, { from: 'client' }) })
      t.match(await withContext(), { status: 400, body: { error: { code: 'bad_context' } } }, 'workflows_context_secret: unset, client contexts are refused')
      await s.change(t, 'the secret set', d => set(d, 'server.workflows_context_secret', secret), { live: true })
      t.equal((await withContext()).status, 200, 'workflows_context_secret: a context signed with it is taken')
      t.ok((await runsWorkflow(s, t, 'workflows_context_secret'))['context'], 'workflows_context_secret: a finished handler carries a signed context')
      await s.change(t, 'the secret unset', d => unset(d, 'server.workflows_context_secret'), { live: true })
    },
  },
  'server.tls': {
    async run(s, t) {
      const tls = { certfile: CERT, keyfile: KEY }
      const before = new URL(s.stack.url)
      await s.change(t, 'tls added in place', d => set(d, 'server.tls', tls), { live: true })
      t.equal(s.stack.url, `https://127.0.0.1:${before.port}`, 'tls: the same address serves HTTPS')
      t.match(await httpsGet(`${s.stack.url}/v1/version`, { ca: TRUSTED }), { status: 200 }, 'tls: switched in place')
      await s.change(t, 'tls removed in place', d => unset(d, 'server.tls'), { live: true })
      t.equal((await s.request('/v1/version')).status, 200, 'tls: removed in place, the same address serves HTTP again')
      const port = await freePort()
      await s.change(
        t,
        'tls added with a new port',
        d => {
          set(d, 'server.tls', tls)
          set(d, 'server.port', port)
        },
        { live: true },
      )
      t.equal(s.stack.url, `https://127.0.0.1:${port}`, 'tls: the stack serves HTTPS')
      t.match(await httpsGet(`${s.stack.url}/v1/version`, { ca: TRUSTED }), { status: 200, servedBy: 'localhost' }, 'tls: with the configured certificate')
      await httpOnNewPort(s, t)
    },
  },
  'server.tls.certfile': {
    async run(s, t) {
      await httpsOnNewPort(s, t, { certfile: CERT, keyfile: KEY })
      await s.change(t, 'the certificate rotated', d => set(d, 'server.tls.certfile', ROTATED), { live: true })
      t.match(await httpsGet(`${s.stack.url}/v1/version`, { ca: TRUSTED }), { status: 200, servedBy: 'localhost rotated' }, 'certfile: the new certificate is served')
      await httpOnNewPort(s, t)
    },
  },
  'server.tls.keyfile': {
    async run(s, t) {
      await httpsOnNewPort(s, t, { certfile: ROTATED, keyfile: KEY })
      // The certificate fixes the key: the new file holds the same key, encoded otherwise.
      await s.change(t, 'the key file changed', d => set(d, 'server.tls.keyfile', ROTATED), { live: true })
      t.match(await httpsGet(`${s.stack.url}/v1/version`, { ca: TRUSTED }), { status: 200, servedBy: 'localhost rotated' }, 'keyfile: HTTPS is served with the key read from the new file')
      await httpOnNewPort(s, t)
    },
  },
  'server.tls.cafile': {
    async run(s, t) {
      await httpsOnNewPort(s, t, { certfile: CERT, keyfile: KEY })
      await s.change(t, 'client certificates required in place', d => set(d, 'server.tls.cafile', CERT), { live: true })
      await t.rejects(httpsGet(`${s.stack.url}/v1/version`, { ca: TRUSTED }), 'cafile: set in place, a client without a certificate is refused')
      await s.change(t, 'client certificates no longer required, in place', d => unset(d, 'server.tls.cafile'), { live: true })
      t.equal((await httpsGet(`${s.stack.url}/v1/version`, { ca: TRUSTED })).status, 200, 'cafile: unset in place, a client without one is served again')
      const port = await freePort()
      await s.change(
        t,
        'client certificates required, on a new port',
        d => {
          set(d, 'server.tls.cafile', CERT)
          set(d, 'server.port', port)
        },
        { live: true },
      )
      t.equal((await httpsGet(`${s.stack.url}/v1/version`, { ca: TRUSTED, cert: readFileSync(CERT), key: readFileSync(KEY) })).status, 200, 'cafile: a client with a certificate it signed is served')
      await t.rejects(httpsGet(`${s.stack.url}/v1/version`, { ca: TRUSTED }), 'cafile: a client without one is refused')
      await httpOnNewPort(s, t)
    },
  },
  workflows: {
    async run(s, t) {
      await s.change(t, 'a workflow added', d => append(d, 'workflows', { name: 'extra', module: WORKFLOWS_MODULE, export: 'oneStep' }), { started: ['workflow:extra'] })
      t.match(await runsWorkflow(s, t, 'workflows', 'extra'), { result: { value: { ok: true } } }, 'workflows: the added workflow runs')
      await s.change(t, 'the workflow removed', d => unset(d, 'workflows.extra'), { stopped: ['workflow:extra'] })
      t.equal((await s.post('/workflows/extra/run', {})).status, 404, 'workflows: the removed one is not served')
    },
  },
  'workflows[].name': {
    async run(s, t) {
      // Items are known by name: another name is another workflow.
      await s.change(t, 'steps renamed', d => set(d, 'workflows.steps.name', 'steps-two'), { started: ['workflow:steps-two'], stopped: ['workflow:steps'] })
      await runsWorkflow(s, t, 'name', 'steps-two')
      t.equal((await s.post('/workflows/steps/run', {})).status, 404, 'name: the old name is not served')
      await s.change(t, 'the name put back', d => set(d, 'workflows.steps-two.name', 'steps'), { started: ['workflow:steps'], stopped: ['workflow:steps-two'] })
    },
  },
  'workflows[].module': {
    async run(s, t) {
      // The same file by another path: the module reference changes, its export stays.
      const respelled = WORKFLOWS_MODULE.replace('/fixtures/workflows.ts', '/fixtures/../fixtures/workflows.ts')
      await s.change(t, "steps' module respelled", d => set(d, 'workflows.steps.module', respelled), { restarted: ['workflow:steps'] })
      await runsWorkflow(s, t, 'module')
    },
  },
  'workflows[].export': {
    async run(s, t) {
      await s.change(t, "steps' export changed", d => set(d, 'workflows.steps.export', 'oneStep'), { restarted: ['workflow:steps'] })
      t.match(await runsWorkflow(s, t, 'export'), { result: { value: { ok: true } } }, 'export: the new export runs')
      await s.change(t, 'put back', d => set(d, 'workflows.steps.export', 'threeSteps'), { restarted: ['workflow:steps'] })
    },
  },
  'workflows[].max_concurrent_tasks': {
    async run(s, t) {
      await s.change(t, 'one run at a time', d => set(d, 'workflows.human.max_concurrent_tasks', 1), { live: true })
      const runs = [await s.parkedRun(), await s.parkedRun()]
      const human = await s.ref<WorkflowMessage>('workflow:human')
      t.match(await human.ask<WorkflowStats>({ type: 'stats' }), { running: 1, queued: 1 }, 'max_concurrent_tasks: the second run waits in the queue')
      await s.cancel(runs)
      await s.change(t, 'put back', d => unset(d, 'workflows.human.max_concurrent_tasks'), { live: true })
    },
  },
  'workflows[].queue_size': {
    async run(s, t) {
      await s.change(t, 'one run at a time', d => set(d, 'workflows.human.max_concurrent_tasks', 1), { live: true })
      await s.change(t, 'no queue', d => set(d, 'workflows.human.queue_size', 0), { live: true })
      const first = await s.parkedRun()
      const refused = await s.post('/workflows/human/run-nowait', {})
      t.equal(refused.status, 429, 'queue_size: with the slot taken and no queue, a run is refused')
      await s.cancel([first])
      await s.change(
        t,
        'put back',
        d => {
          unset(d, 'workflows.human.max_concurrent_tasks')
          unset(d, 'workflows.human.queue_size')
        },
        { live: true },
      )
    },
  },
  'workflows[].timeout_ms': {
    async run(s, t) {
      await s.change(t, 'runs time out after 200 ms', d => set(d, 'workflows.human.timeout_ms', 200), { live: true })
      const human = await s.ref<WorkflowMessage>('workflow:human')
      const done = await human.ask<RunInfo>({ type: 'wait', runId: await s.parkedRun() }, { timeoutMs: 10_000 })
      t.match(done, { status: 'failed', error: { code: 'timeout' } }, 'timeout_ms: a run waiting past it fails with timeout')
      await s.change(t, 'unset', d => unset(d, 'workflows.human.timeout_ms'), { live: true })
    },
  },
  'workflows[].retention': {
    async run(s, t) {
      // human keeps history 150 ms from the start, so its sweep runs that often: a longer
      // retention set live must keep a run it would have removed. Four sweeps are waited out.
      await s.change(t, "human's history kept an hour", d => set(d, 'workflows.human.retention', '1h'), { live: true })
      const kept = await s.finishedHumanRun()
      await new Promise(resolve => setTimeout(resolve, 600))
      t.notOk(await s.historyRemoved('human', kept), 'retention: a run finished under the longer retention keeps its history')
      await s.change(t, "human's back to 150 ms", d => set(d, 'workflows.human.retention', 150), { live: true })
      t.ok(await s.historyRemoved('human', kept, 5000), 'retention: under the shorter one, it goes')
      // steps had none at start: set live, it must be enforced as one set at start is.
      await s.change(t, 'steps given a retention', d => set(d, 'workflows.steps.retention', 150), { live: true })
      const runId = String((await runsWorkflow(s, t, 'retention'))['handler_id'])
      t.ok(await s.historyRemoved('steps', runId, 1500), "retention: set live where none was, a finished run's history goes once older than it")
      await s.change(t, 'unset', d => unset(d, 'workflows.steps.retention'), { live: true })
    },
  },
  'logging.level': {
    async run(s, t) {
      t.notOk(await s.logFromPool('debug', 'debug before'), 'level: at info, a worker thread drops debug lines')
      await s.change(t, 'debug logging', d => set(d, 'logging.level', 'debug'), { live: true })
      t.ok(await s.logFromPool('debug', 'debug after'), 'level: at debug, a worker thread writes them')
      t.equal(s.system.log.level, 'debug', 'level: and so does the main thread')
      await s.change(t, 'back to info', d => set(d, 'logging.level', 'info'), { live: true })
    },
  },
  'logging.redact': {
    async run(s, t) {
      t.match(await s.logFromPool('warn', 'visible'), { text: 'visible' }, 'redact: unlisted, a field is written')
      await s.change(t, 'text redacted', d => set(d, 'logging.redact', ['text']), { live: true })
      t.match(await s.logFromPool('warn', 'hidden'), { text: '[redacted]' }, 'redact: listed, it is written redacted, from a worker thread too')
      await s.change(t, 'unset', d => unset(d, 'logging.redact'), { live: true })
    },
  },
  'troupe.drain_timeout_ms': {
    async run(s, t) {
      await s.change(t, 'drain deadline changed', d => set(d, 'troupe.drain_timeout_ms', 4321), { live: true })
      const actors = stackActors(s.system)
      t.ok(actors.length > 0, 'drain_timeout_ms: the stack has actors')
      t.same(actors.filter(actor => actor.config.shutdownMs !== 4321).map(actor => actor.id), [], 'drain_timeout_ms: every actor of the stack stops within it next time, none restarted for it')
      await s.change(t, 'unset', d => unset(d, 'troupe.drain_timeout_ms'), { live: true })
    },
  },
  'troupe.ask_timeout_ms': {
    async run(s, t) {
      const runId = await s.parkedRun()
      const human = await s.ref<WorkflowMessage>('workflow:human')
      await s.change(t, 'asks time out after 250 ms', d => set(d, 'troupe.ask_timeout_ms', 250), { live: true })
      const started = performance.now()
      await t.rejects(human.ask({ type: 'wait', runId }), { code: 'timeout' }, 'ask_timeout_ms: an ask from the main thread times out')
      const elapsed = performance.now() - started
      t.ok(elapsed >= 200 && elapsed < 5000, `ask_timeout_ms: after about 250 ms (${Math.round(elapsed)} ms)`)
      const forwarded = s.logger.ask({ type: 'forward', to: human as unknown as ActorRef<LedgerMessage>, msg: { type: 'wait', runId } as unknown as LedgerMessage }, { timeoutMs: 10_000 })
      await t.rejects(forwarded, { code: 'timeout' }, 'ask_timeout_ms: so does one from a worker thread')
      await s.change(t, 'unset', d => unset(d, 'troupe.ask_timeout_ms'), { live: true })
      await s.cancel([runId])
    },
  },
  'workflows[].resumable': {
    async run(s, t) {
      await s.change(t, 'crashy not resumable', d => set(d, 'workflows.crashy.resumable', false), { live: true })
      // counterFile's worker thread exits mid-run: a run interrupted by a crash is what
      // resumable decides about. The stack's actors on that thread restart on the other one.
      const file = join(s.dir, 'counter')
      writeFileSync(file, '')
      const crashy = await s.ref<WorkflowMessage>('workflow:crashy')
      const { run } = await crashy.ask<StartReply>({ type: 'start', startEvent: { file, crashOnAttempt: 1 } })
      let done: RunInfo | null = null
      await eventually(
        async () => {
          done = await whenRunning(() => crashy.ask<RunInfo | null>({ type: 'get', runId: run.runId }), 30_000).catch(() => null)
          return done !== null && done.status !== 'running'
        },
        'the interrupted run to end',
        30_000,
      )
      t.match(done, { status: 'failed', error: { code: 'interrupted' } }, 'resumable: false, set live, fails a run interrupted by a crash')
    },
  },
  'troupe.node_id': {
    async run(s, t) {
      await s.change(t, 'node_id changed', d => set(d, 'troupe.node_id', 'fields-node-2'), { restarted: WORKFLOW_ACTORS })
      const runId = await s.parkedRun()
      t.match(await s.runRow(runId), { lease_owner: 'fields-node-2' }, 'node_id: runs are owned under the new id')
      await s.cancel([runId])
    },
  },
  'troupe.lease_ms': {
    async run(s, t) {
      await s.change(t, 'lease_ms changed', d => set(d, 'troupe.lease_ms', 40_000), { restarted: WORKFLOW_ACTORS })
      const runId = await s.parkedRun()
      const row = await s.runRow(runId)
      t.ok(Number(row?.['lease_expires']) - Date.now() > 30_000, 'lease_ms: a run is leased for the new length')
      await s.cancel([runId])
    },
  },
  ...Object.fromEntries(
    (
      [
        ['interval_ms', 45_000],
        ['timeout_ms', 4_000],
        ['cache_ttl_ms', 20_000],
        ['failure_threshold', 5],
        ['backoff_ms', 3_000],
        ['max_backoff_ms', 90_000],
      ] as const
    ).map(([field, value]): [string, Probe] => [
      `troupe.reconciler.${field}`,
      {
        async run(s, t) {
          // The section holds this field alone: one probe's value does not linger into the next.
          await s.change(t, `reconciler ${field} changed`, d => set(d, 'troupe.reconciler', { [field]: value }), { live: true })
          const settings = (await s.request('/v1/inspect/runtime')).body['settings'] as Record<string, unknown>
          t.equal(settings[field], value, `troupe.reconciler.${field}: the reconciler runs with the new value`)
        },
      },
    ]),
  ),
  'troupe.workers': {
    async run(s, t) {
      const poolThreads = async () => (await s.system.inspect()).threads.filter(thread => thread.kind === 'pool').map(thread => thread.thread)
      // The thread the crash of workflows[].resumable took is replaced in the background.
      await eventually(async () => (await poolThreads()).length === 2, 'two pool threads', 30_000)
      const before = await poolThreads()
      const placed = actorNodes((await s.system.inspect()).root)
      const identities = actorIdentities(s.system)
      // Not through change(): a shrink retires the least loaded thread, whichever that is, and
      // its actors, and only they, restart on the other.
      const report = await s.attempt(d => set(d, 'troupe.workers', 1))
      t.equal(report.result, 'applied', 'workers: the shrink applies')
      t.ok(report.appliedLive.includes('troupe.workers (pool resized)'), 'workers: the pool is resized live')
      const after = await poolThreads()
      t.equal(after.length, 1, 'workers: one pool thread is left')
      const retired = before.filter(thread => !after.includes(thread))
      const moved = placed.filter(actor => actor.thread !== undefined && retired.includes(actor.thread)).map(actor => actor.id)
      t.same(sorted(actorChanges(identities, actorIdentities(s.system)).restarted), sorted(moved), `workers: the actors of the retired thread moved (${moved.join(', ') || 'none'}), no other restarted`)
    },
  },
}

async function httpsOnNewPort(s: FieldStack, t: Test, tls: { certfile: string; keyfile: string }): Promise<void> {
  const port = await freePort()
  await s.change(
    t,
    'HTTPS on a new port',
    d => {
      set(d, 'server.tls', tls)
      set(d, 'server.port', port)
    },
    { live: true },
  )
}

async function httpOnNewPort(s: FieldStack, t: Test): Promise<void> {
  const port = await freePort()
  await s.change(
    t,
    'back to HTTP on a new port',
    d => {
      unset(d, 'server.tls')
      set(d, 'server.port', port)
    },
    { live: true },
  )
  t.equal((await s.request('/v1/version')).status, 200, 'HTTP is served again')
}

// ---- the tests -------------------------------------------------------------------------------

const fields: FieldInfo[] = [...new Map(listFields().map(field => [field.path, field])).values()]
const schemaPaths = new Set(fields.map(field => field.path))

/** An object with a default: always present, it changes only through its sub-fields. */
const isGrouping = (field: FieldInfo): boolean => field.type === 'object' && field.defaultValue !== undefined
const under = (path: string) => fields.filter(f => f.path !== path && (f.path.startsWith(`${path}.`) || f.path.startsWith(`${path}[]`)))

t.test('every field of the schema has a probe of its live effect', async t => {
  for (const field of fields) {
    if (PROBES[field.path] !== undefined) continue
    if (isGrouping(field)) {
      const unprobed = under(field.path).filter(f => PROBES[f.path] === undefined && !isGrouping(f))
      t.same(unprobed.map(f => f.path), [], `${field.path} groups fields: each of them has a probe`)
      continue
    }
    t.fail(`${field.path} (${field.reload}) has no probe in reload-fields.test.ts: change it in the running stack and observe what its reload class promises`)
  }
  for (const path of Object.keys(PROBES)) t.ok(schemaPaths.has(path) || PENDING.has(path), `the probe of ${path} names a field of the schema`)
})

t.test('each field changed in a running stack has the effect its reload class promises', async t => {
  const openai = await fakeOpenAI({ apiKey: 'sk-test' })
  const ollama = await fakeOllama()
  t.teardown(async () => {
    await openai.close()
    await ollama.close()
  })
  const dir = tempDir(t)
  const s = new FieldStack(dir, join(dir, 'stack.yaml'), openai, ollama, await freePort())
  await s.start(t)
  for (const [path, probe] of Object.entries(PROBES)) {
    const skip = !schemaPaths.has(path) ? `${path} is not in the schema yet` : await probe.skip?.()
    await t.test(path, { skip: skip ?? false }, t => probe.run(s, t))
  }
})
