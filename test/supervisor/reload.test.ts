import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { loadConfigFile, sha256Of } from '../../src/config/index.js'
import type { ActorRef, ActorSystem } from '../../src/actor/index.js'
import { STACK_ACTOR, type StackMessage } from '../../src/supervisor/stack-actor.js'
import { ledger, type LedgerMessage } from '../fixtures/restart-behaviors.js'
import { startStack, type RunningStack } from '../../src/supervisor/stack.js'
import type { InferenceStoreMessage } from '../../actors/stores/inference-store.js'
import { fakeOllama, type FakeUpstream } from '../../bench/fixtures/upstreams.js'
import { quietLogger } from '../fixtures/logger.js'
import { freePort } from '../fixtures/cli-stack.js'
import { startFakeUpstreams, stackYaml, tempDir } from '../fixtures/stack.js'
import { startSystem } from '../fixtures/system.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** A stack started from a real file, as `npm start` starts one, so that a reload re-reads it. */
async function stackFromFile(t: Teardown, yaml: string): Promise<{ stack: RunningStack; file: string; system: ActorSystem }> {
  const file = join(tempDir(t), 'stack.yaml')
  writeFileSync(file, yaml)
  const system = await startSystem(t, { workers: 1 })
  const stack = await startStack(system, await loadConfigFile(file), quietLogger(), { port: 0, host: '127.0.0.1' })
  t.teardown(() => stack.stop())
  return { stack, file, system }
}

/** Sequential chat completions against `model` until stopped: how many were answered, and every failure. */
function steadyLoad(url: () => string, model: string): { stop(): Promise<{ ok: number; failures: string[] }> } {
  let running = true
  const failures: string[] = []
  let ok = 0
  const loop = (async () => {
    while (running) {
      try {
        const res = await fetch(`${url()}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }) })
        const body = await res.text()
        if (res.status === 200) ok++
        else failures.push(`${res.status} ${body.slice(0, 200)}`)
      } catch (error) {
        failures.push(String(error))
      }
    }
  })()
  return {
    async stop() {
      running = false
      await loop
      return { ok, failures }
    },
  }
}

const post = (url: string) => fetch(url, { method: 'POST' }).then(async res => ({ status: res.status, body: (await res.json()) as Record<string, unknown> }))
const get = (url: string) => fetch(url).then(res => res.json() as Promise<Record<string, unknown>>)

t.test('a hot edit applies live under load: no request fails, nothing restarts', async t => {
  const { openai, ollama } = await startFakeUpstreams(t)
  const yaml = stackYaml(openai, ollama, tempDir(t))
  const { stack, file, system } = await stackFromFile(t, yaml)
  const load = steadyLoad(() => stack.url, 'gpt')
  await new Promise(resolve => setTimeout(resolve, 100))
  writeFileSync(
    file,
    yaml
      .replace('image_name: test-stack', 'image_name: renamed-stack')
      .replace('    - { model_id: llama,', '    - { model_id: added, provider_id: fake-ollama, provider_model_id: other }\n    - { model_id: llama,')
      .replace('max_write_queue_size: 100, num_writers: 2', 'max_write_queue_size: 50, num_writers: 3')
      .concat('server: { cors: true }\nlogging: { level: warn }\n'),
  )
  const reload = await post(`${stack.url}/v1/admin/reload`)
  await new Promise(resolve => setTimeout(resolve, 100))
  const { ok, failures } = await load.stop()
  t.equal(reload.status, 200)
  t.equal(reload.body['result'], 'applied')
  t.same(reload.body['restarted'], [], 'a hot edit restarts nothing')
  t.same(
    [...(reload.body['appliedLive'] as string[])].sort(),
    ['image_name', 'logging.level', 'registered_resources.models[added]', 'server.cors', 'storage.stores.inference.max_write_queue_size', 'storage.stores.inference.num_writers'],
  )
  t.same(failures, [], `${ok} requests under load, none failed`)
  t.ok(ok > 0)

  t.equal((await get(`${stack.url}/v1/version`))['image_name'], 'renamed-stack')
  const models = (await get(`${stack.url}/v1/models`))['data'] as Array<{ id: string }>
  t.ok(models.some(m => m.id === 'added'), 'the added model is served')
  const cors = await fetch(`${stack.url}/v1/models`, { headers: { origin: 'http://example.test' } })
  t.ok(cors.headers.get('access-control-allow-origin'), 'CORS is on')
  const inferenceStore = (await system.lookup<InferenceStoreMessage>('inference-store'))!
  t.match(await inferenceStore.ask({ type: 'stats' }), { maxQueue: 50, writers: 3 }, "the inference store's queue settings changed live")
  const inspect = await get(`${stack.url}/v1/inspect/config`)
  t.equal(inspect['generation'], 2)
  t.equal(inspect['sha256'], sha256Of(readFileSync(file, 'utf8')))
})

t.test("a provider's restart-class edit restarts that provider alone; the other keeps serving", async t => {
  const { openai, ollama } = await startFakeUpstreams(t)
  const second: FakeUpstream = await fakeOllama()
  t.teardown(() => second.close())
  const yaml = stackYaml(openai, ollama, tempDir(t))
  const { stack, file } = await stackFromFile(t, yaml)
  const load = steadyLoad(() => stack.url, 'gpt')
  await new Promise(resolve => setTimeout(resolve, 100))
  writeFileSync(file, yaml.replace(`url: ${ollama.url}`, `url: ${second.url}`))
  const reload = await stack.reload()
  await new Promise(resolve => setTimeout(resolve, 100))
  const { ok, failures } = await load.stop()
  t.equal(reload.result, 'applied')
  t.same(reload.restarted, ['provider:fake-ollama'])
  t.same(failures, [], `${ok} requests to the other provider, none failed`)

  const before = second.requests.length
  const res = await fetch(`${stack.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'llama', messages: [{ role: 'user', content: 'hi' }] }) })
  t.equal(res.status, 200, await res.text())
  t.ok(second.requests.length > before, 'the restarted provider calls its new upstream')
})

t.test('an invalid edit changes nothing; its errors name their paths; inspect shows the attempt', async t => {
  const { openai, ollama } = await startFakeUpstreams(t)
  const yaml = stackYaml(openai, ollama, tempDir(t))
  const { stack, file } = await stackFromFile(t, yaml)
  const before = await get(`${stack.url}/v1/inspect/config`)
  writeFileSync(file, yaml.replace('provider_type: remote::ollama', 'provider_type: remote::nonsense').replace('image_name: test-stack', 'image_name: changed'))
  const reload = await post(`${stack.url}/v1/admin/reload`)
  t.equal(reload.status, 422)
  const message = (reload.body['error'] as { message: string }).message
  t.match(message, /providers\.inference\[1\]\.provider_type: unknown provider type 'remote::nonsense'/)

  const after = await get(`${stack.url}/v1/inspect/config`)
  t.equal(after['generation'], before['generation'], 'the generation stays')
  t.equal(after['sha256'], before['sha256'])
  const last = after['lastReload'] as { result: string; errors: Array<{ path: string }> }
  t.equal(last.result, 'invalid')
  t.same(last.errors.map(e => e.path), ['providers.inference[1].provider_type'])
  t.equal((await get(`${stack.url}/v1/version`))['image_name'], 'test-stack', 'nothing changed')
  const res = await fetch(`${stack.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'llama', messages: [{ role: 'user', content: 'hi' }] }) })
  t.equal(res.status, 200, 'the old provider still serves')
})

t.test('adding a provider starts it and routes to it; removing one stops it and routes away', async t => {
  const { openai, ollama } = await startFakeUpstreams(t)
  const yaml = stackYaml(openai, ollama, tempDir(t))
  const { stack, file } = await stackFromFile(t, yaml)
  const added = yaml.replace('storage:', `    - provider_id: third\n      provider_type: remote::ollama\n      config:\n        url: ${ollama.url}\nstorage:`)
  writeFileSync(file, added)
  const adding = await stack.reload()
  t.same([adding.result, adding.started, adding.restarted], ['applied', ['provider:third'], []])
  const res = await fetch(`${stack.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'third/some-model', messages: [{ role: 'user', content: 'hi' }] }) })
  t.equal(res.status, 200, 'the new provider serves provider_id/model at once')

  writeFileSync(file, yaml)
  const removing = await stack.reload()
  t.same([removing.result, removing.stopped], ['applied', ['provider:third']])
  const gone = await fetch(`${stack.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'third/some-model', messages: [{ role: 'user', content: 'hi' }] }) })
  t.equal(gone.status, 404, 'nothing routes to the removed provider')
  const providers = (await get(`${stack.url}/v1/providers`))['data'] as Array<{ provider_id: string }>
  t.notOk(providers.some(p => p.provider_id === 'third'))
})

t.test('an unchanged file reloads to no change, and adopts nothing else', async t => {
  const { openai, ollama } = await startFakeUpstreams(t)
  const yaml = stackYaml(openai, ollama, tempDir(t))
  const { stack, file } = await stackFromFile(t, yaml)
  writeFileSync(file, `# a comment\n${yaml}`)
  const report = await stack.reload()
  t.equal(report.result, 'unchanged')
  t.equal(stack.supervisor.inspect().generation, 1)
})

t.test("a workflow's limits change live; a change of its export restarts that workflow alone", async t => {
  const { openai, ollama } = await startFakeUpstreams(t)
  const dir = tempDir(t)
  const workflows = new URL('../fixtures/workflows.ts', import.meta.url).pathname
  const yaml = `${stackYaml(openai, ollama, dir).replace(
    '    conversations: { backend: sql, table_name: conversations }\n',
    '    conversations: { backend: sql, table_name: conversations }\n    runs: { backend: sql, table_name: runs }\n',
  )}workflows:\n  - { name: human, module: '${workflows}', export: waitsForHuman }\n  - { name: steps, module: '${workflows}', export: threeSteps }\n`
  const { stack, file } = await stackFromFile(t, yaml)
  const start = (name: string, body: unknown = { start_event: {} }) => fetch(`${stack.url}/workflows/${name}/run-nowait`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

  writeFileSync(file, readFileSync(file, 'utf8').replace('export: waitsForHuman }', 'export: waitsForHuman, max_concurrent_tasks: 1, queue_size: 0 }'))
  const limits = await stack.reload()
  t.same([limits.result, limits.restarted, limits.appliedLive], ['applied', [], ['workflows[human].max_concurrent_tasks', 'workflows[human].queue_size']])
  t.equal((await start('human')).status, 200, 'the first run takes the one slot')
  const refused = await start('human')
  t.equal(refused.status, 429, 'the second finds no slot and no queue: the new limits hold')

  writeFileSync(file, readFileSync(file, 'utf8').replace('export: threeSteps }', 'export: oneStep }'))
  const restarted = await stack.reload()
  t.same([restarted.result, restarted.restarted], ['applied', ['workflow:steps']])
  const run = await fetch(`${stack.url}/workflows/steps/run`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ start_event: {} }) })
  t.match(await run.json(), { status: 'completed', result: { value: { ok: true } } }, 'the workflow runs its new export')
})

t.test('moving a store to a new backend and dropping the old one, under load: new backend first, its user restarted, the old one stopped last', async t => {
  const { openai, ollama } = await startFakeUpstreams(t)
  const dir = tempDir(t)
  const yaml = stackYaml(openai, ollama, dir)
  const { stack, file } = await stackFromFile(t, yaml)
  const load = steadyLoad(() => stack.url, 'gpt')
  await new Promise(resolve => setTimeout(resolve, 100))
  writeFileSync(
    file,
    yaml
      .replace(`    sql: { type: sql_lmdb, path: ${dir}/sql }`, `    sql2: { type: sql_lmdb, path: ${dir}/sql2 }`)
      .replace('inference: { backend: sql,', 'inference: { backend: sql2,')
      .replace('conversations: { backend: sql,', 'conversations: { backend: sql2,'),
  )
  const report = await stack.reload()
  await new Promise(resolve => setTimeout(resolve, 100))
  const { ok, failures } = await load.stop()
  t.equal(report.result, 'applied', JSON.stringify(report.errors))
  t.same([report.started, report.stopped], [['store:sql2'], ['store:sql']])
  t.same([...report.restarted].sort(), ['conversations', 'inference-store'])
  t.same(failures, [], `${ok} completions under load, none failed`)
  const res = await chatAndGet(stack.url)
  t.equal(res, 200, 'a completion recorded after the move is read back from the new backend')
})

t.test('a reload racing a stop either applies or is refused; the stop completes', async t => {
  const { openai, ollama } = await startFakeUpstreams(t)
  const yaml = stackYaml(openai, ollama, tempDir(t))
  const { stack, file } = await stackFromFile(t, yaml)
  writeFileSync(file, yaml.replace(`url: ${ollama.url}`, `url: ${openai.url.replace('/v1', '')}`))
  const reloading = stack.reload()
  const stopping = stack.stop()
  const [report] = await Promise.all([reloading, stopping])
  t.ok(['applied', 'refused'].includes(report.result), `the reload: ${report.result}`)
  const after = await stack.reload()
  t.equal(after.result, 'refused', 'a reload after the stop began is refused')
})

/** A chat completion, then the stored completion read back by its id: the read's status. */
async function chatAndGet(url: string): Promise<number> {
  const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content: 'hi' }] }) })
  const { id } = (await res.json()) as { id: string }
  return (await fetch(`${url}/v1/chat/completions/${id}`)).status
}

t.test('troupe.workers resizes the pool under load: grown, then shrunk with its actors moved, no request failing', async t => {
  const { openai, ollama } = await startFakeUpstreams(t)
  const yaml = stackYaml(openai, ollama, tempDir(t))
  const { stack, file, system } = await stackFromFile(t, yaml)
  const poolThreads = async () => (await system.inspect()).threads.filter(thread => thread.kind === 'pool')
  t.equal((await poolThreads()).length, 1)
  const load = steadyLoad(() => stack.url, 'gpt')
  await new Promise(resolve => setTimeout(resolve, 100))

  writeFileSync(file, `${yaml}troupe: { workers: 3 }\n`)
  const grown = await stack.reload()
  t.same([grown.result, grown.restarted, grown.appliedLive], ['applied', [], ['troupe.workers (pool resized)']])
  t.equal((await poolThreads()).length, 3, 'three pool threads')

  writeFileSync(file, `${yaml}troupe: { workers: 1 }\n`)
  const shrunk = await stack.reload()
  t.equal(shrunk.result, 'applied')
  const threads = await poolThreads()
  t.equal(threads.length, 1, 'one pool thread again')
  await new Promise(resolve => setTimeout(resolve, 100))
  const { ok, failures } = await load.stop()
  t.same(failures, [], `${ok} completions while the pool grew and shrank, none failed`)
  t.equal(await chatAndGet(stack.url), 200, 'the stores moved with their data: a recorded completion reads back')
})

t.test('the stack supervisor is an actor: any thread reloads or inspects the config by asking `stack`', async t => {
  const { openai, ollama } = await startFakeUpstreams(t)
  const yaml = stackYaml(openai, ollama, tempDir(t))
  const { stack, file, system } = await stackFromFile(t, yaml)
  const ref = (await system.lookup<StackMessage>(STACK_ACTOR))!
  t.match(await ref.ask({ type: 'inspect' }), { generation: 1, sha256: stack.supervisor.inspect().sha256 })
  writeFileSync(file, yaml.replace('image_name: test-stack', 'image_name: by-actor'))
  const onPool: ActorRef<LedgerMessage> = await system.spawn(ledger, { placement: 'pool' })
  const report = await onPool.ask<{ result: string; appliedLive: string[] }>({ type: 'forward', to: ref as unknown as ActorRef<LedgerMessage>, msg: { type: 'reload' } as unknown as LedgerMessage })
  t.match(report, { result: 'applied', appliedLive: ['image_name'] }, 'a pool actor reloaded the stack through the actor system')
  t.equal((await get(`${stack.url}/v1/version`))['image_name'], 'by-actor')
})

t.test('a server.port edit binds the new listener before the old one closes', async t => {
  const { openai, ollama } = await startFakeUpstreams(t)
  const [first, second] = [await freePort(), await freePort()]
  const yaml = `${stackYaml(openai, ollama, tempDir(t))}server: { host: 127.0.0.1, port: ${first} }\n`
  const file = join(tempDir(t), 'stack.yaml')
  writeFileSync(file, yaml)
  const system = await startSystem(t, { workers: 1 })
  const stack = await startStack(system, await loadConfigFile(file), quietLogger())
  t.teardown(() => stack.stop())
  t.equal(stack.url, `http://127.0.0.1:${first}`)
  writeFileSync(file, yaml.replace(`port: ${first}`, `port: ${second}`))
  const report = await stack.reload()
  t.same([report.result, report.restarted], ['applied', []])
  t.equal(stack.url, `http://127.0.0.1:${second}`, 'the stack says where it listens now')
  t.equal((await fetch(`http://127.0.0.1:${second}/v1/version`)).status, 200, 'the new port serves')
  await t.rejects(fetch(`http://127.0.0.1:${first}/v1/version`), 'the old port is closed')
})
