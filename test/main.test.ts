import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { createServer as createHttpServer, type ServerResponse } from 'node:http'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { mainModule, runCli } from './fixtures/cli.js'
import { startCliStack } from './fixtures/cli-stack.js'
import { workerExecArgv } from './fixtures/system.js'
import { eventually } from './fixtures/eventually.js'

t.test('the CLI starts a system, prints its tree and exits 0 on SIGINT with nothing left running', async t => {
  const child = spawn(process.execPath, [...workerExecArgv(), mainModule, '--workers', '2'], {
    env: { ...process.env, TROUPE_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  child.stdout.setEncoding('utf8')
  const printed = new Promise<void>(resolve => {
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk
      if (stdout.includes('"deadLetters"')) resolve()
    })
  })
  const deadline = setTimeout(() => child.kill('SIGKILL'), 30_000)
  await printed
  child.kill('SIGINT')
  const [code] = (await once(child, 'exit')) as [number | null]
  clearTimeout(deadline)
  t.equal(code, 0, 'exits on its own, 0: shutdown left no handle open')
  t.match(stdout, /"kind": "pool"/)
  t.match(stdout, /"msg":"stopped"/)
})

t.test('bad flags are reported and exit non-zero', async t => {
  const child = spawn(process.execPath, [...workerExecArgv(), mainModule, '--workers', 'many'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const [code] = (await once(child, 'exit')) as [number | null]
  t.equal(code, 2)
  t.match(stderr, /--workers: expected a non-negative integer/)
})

t.test('validate prints a one-line summary for a valid config and exits 0', async t => {
  const stack = fileURLToPath(new URL('../stack.yaml', import.meta.url))
  const { code, stdout } = await runCli(['validate', '--config', stack], { OPENAI_API_KEY: '' })
  t.equal(code, 0)
  t.match(stdout, /stack\.yaml: valid \(1 provider, 2 backends, 5 stores, 0 models, 1 workflow\)/)
})

t.test('validate prints every error with its path and exits 1', async t => {
  const dir = t.testdir({
    'bad.yaml': 'providers:\n  inference:\n    - provider_id: a\n      provider_type: nope\nserver:\n  port: 70000\nstorage:\n  stores:\n    metadata: { backend: none, namespace: r }\n',
    'broken.yaml': 'server:\n  port: [1\n',
  })
  const bad = await runCli(['validate', '--config', `${dir}/bad.yaml`])
  t.equal(bad.code, 1)
  t.match(bad.stderr, /providers\.inference\[0\]\.provider_type: must look like/)
  t.match(bad.stderr, /server\.port: Too big/)
  t.match(bad.stderr, /storage\.stores\.metadata\.backend: no backend named 'none'/)
  t.match(bad.stderr, /bad\.yaml: 3 errors/)
  const broken = await runCli(['validate', '--config', `${dir}/broken.yaml`])
  t.equal(broken.code, 1)
  t.match(broken.stderr, /broken\.yaml:\d+:\d+: /, 'syntax errors carry line and column')
})

t.test('npm start serves the default stack even with no upstream reachable, and stops cleanly on SIGINT', async t => {
  const dir = t.testdir({})
  const stack = fileURLToPath(new URL('../stack.yaml', import.meta.url))
  const port = await freePort()
  const child = spawn(process.execPath, [...workerExecArgv(), mainModule, '--config', stack, '--workers', '1'], {
    env: { ...process.env, TROUPE_DATA_DIR: dir, TROUPE_PORT: String(port), TROUPE_LOG_LEVEL: 'info', OPENAI_API_KEY: '', OLLAMA_URL: 'http://127.0.0.1:1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  child.stdout.setEncoding('utf8')
  await new Promise<void>(resolve => {
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk
      if (stdout.includes('listening on')) resolve()
    })
  })
  const base = `http://127.0.0.1:${port}`
  let health = { status: 'OK', unreachable_providers: [] as Array<{ provider_id: string }> }
  // The reconciler's first cycle runs in the background from start: health shows it once done.
  await eventually(async () => {
    health = (await (await fetch(`${base}/v1/health`)).json()) as typeof health
    return health.status !== 'OK'
  }, 'the first cycle to find ollama down')
  t.equal(health.status, 'Degraded')
  t.same(
    health.unreachable_providers.map(p => p.provider_id),
    ['ollama'],
    'health names the provider it cannot reach',
  )
  t.same(await (await fetch(`${base}/v1/models`)).json(), { object: 'list', data: [] })
  child.kill('SIGINT')
  const [code] = (await once(child, 'exit')) as [number | null]
  t.equal(code, 0)
  const started = stdout
    .split('\n')
    .filter(line => line.includes('"actor started"'))
    .map(line => (JSON.parse(line) as { actor: string }).actor)
  t.same(started, ['store:kv_default', 'store:sql_default', 'provider:ollama', 'routing:models', 'inference-store', 'conversations', 'reconciler', 'workflow:approve', 'stack'], 'one log line per actor, in start order')
  t.match(stdout, new RegExp(`"msg":"listening on http://0\\.0\\.0\\.0:${port}"`))
})

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise(resolve => server.close(resolve))
  return port
}

t.test('keys new prints a new API key and the api_keys entry (its sha256) that admits it', async t => {
  const { code, stdout } = await runCli(['keys', 'new', '--principal', 'bob'])
  t.equal(code, 0)
  const key = /^key: (tr-\S+)$/m.exec(stdout)?.[1]
  t.ok(key, 'the key is printed')
  const { createHash } = await import('node:crypto')
  t.match(stdout, `{ hash: 'sha256:${createHash('sha256').update(key!).digest('hex')}', principal: "bob" }`)
  const again = await runCli(['keys', 'new'])
  t.not(/^key: (\S+)$/m.exec(again.stdout)?.[1], key, 'each key is new')
})

/**
 * An OpenAI-compatible upstream whose chat completions wait until `release()`: a request the
 * test knows to be in flight for as long as it needs. Its model list answers at once.
 */
async function heldUpstream(t: Test): Promise<{ url: string; received: () => number; aborted: () => number; release: () => void }> {
  const held: ServerResponse[] = []
  let received = 0
  let aborted = 0
  let released = false
  const answer = (res: ServerResponse): void => {
    const completion = { id: 'chatcmpl-held', object: 'chat.completion', created: 0, model: 'gpt-test', choices: [{ index: 0, message: { role: 'assistant', content: 'released' }, finish_reason: 'stop' }] }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(completion))
  }
  const server = createHttpServer((req, res) => {
    req.resume()
    if (req.url === '/v1/models') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', data: [{ id: 'gpt-test', object: 'model' }] }))
    received++
    res.on('close', () => {
      if (!res.writableFinished) aborted++
    })
    if (released) answer(res)
    else held.push(res)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    received: () => received,
    aborted: () => aborted,
    release: () => {
      released = true
      for (const res of held.splice(0)) answer(res)
    },
  }
}

const heldChat = (url: string) =>
  fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content: 'hi' }] }) }).then(
    async res => ({ status: res.status, body: (await res.json()) as { choices?: Array<{ message: { content: string } }> } }),
    (error: Error) => error,
  )

/** The CLI with a chat held at its upstream and the first signal's drain under way (60 s deadline). */
async function drainingWithChatInFlight(t: Test) {
  const upstream = await heldUpstream(t)
  const { running } = await startCliStack(t, upstream.url, 60_000)
  const chat = heldChat(running.url)
  await eventually(() => upstream.received() === 1, 'the chat to reach the upstream')
  running.child.kill('SIGTERM')
  await eventually(() => running.output().includes('shutting down: refusing new work'), 'the first signal to start the drain')
  return { upstream, running, chat }
}

t.test('a second signal is logged and does not cut the drain short: the request in flight is answered, exit 0', async t => {
  const { upstream, running, chat } = await drainingWithChatInFlight(t)
  running.child.kill('SIGINT')
  await eventually(() => running.output().includes('still draining'), 'the second signal to be logged')
  t.equal(running.child.exitCode, null, 'still running after the second signal')
  upstream.release()
  const answered = await chat
  t.notOk(answered instanceof Error, 'the client was not cut off')
  t.match(answered, { status: 200, body: { choices: [{ message: { content: 'released' } }] } }, 'the in-flight request got its answer')
  t.equal(await running.exited, 0, 'exit 0 once the drain is done')
  t.equal(upstream.aborted(), 0, 'nothing upstream was aborted')
})

t.test('a third signal exits at once with 130: the request in flight is cut, its upstream call goes away with the process', async t => {
  const { upstream, running, chat } = await drainingWithChatInFlight(t)
  running.child.kill('SIGTERM')
  await eventually(() => running.output().includes('still draining'), 'the second signal to be logged')
  running.child.kill('SIGTERM')
  t.equal(await running.exited, 130, 'exit 130 without waiting for the 60 s drain')
  t.match(running.output(), /"msg":"forced exit"/)
  const cut = await chat
  t.type(cut, Error, 'the client sees its connection closed without an answer')
  await eventually(() => upstream.aborted() === 1, 'the upstream to see its caller gone')
})

/** The CLI on `yaml` until it listens, then SIGTERM: its exit code and everything it printed. */
async function serveOnce(t: Test, yaml: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const dir = t.testdir({ 'stack.yaml': yaml })
  const child = spawn(process.execPath, [...workerExecArgv(), mainModule, '--config', `${dir}/stack.yaml`, '--no-watch'], { env: { ...process.env, TROUPE_LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  let signalled = false
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk
    // Once: a third signal would force exit.
    if (!signalled && stdout.includes('listening on')) signalled = child.kill('SIGTERM')
  })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const deadline = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const [code] = (await once(child, 'exit')) as [number | null]
  clearTimeout(deadline)
  return { code, stdout, stderr }
}

t.test('logs are pretty with TROUPE_LOG_FORMAT=pretty, JSON into a pipe without it; the config secrets show in neither', async t => {
  const secrets = ['sk-cli-secret-4242', 'ctx-cli-secret-abcdefgh']
  const yaml = `
version: 2
image_name: formats
providers:
  inference:
    - { provider_id: up, provider_type: remote::openai, config: { base_url: 'http://127.0.0.1:1/v1', api_key: '${secrets[0]}' } }
storage:
  backends: { kv: { type: kv_memory } }
  stores: { metadata: { backend: kv, namespace: registry } }
server: { host: 127.0.0.1, port: ${await freePort()}, workflows_context_secret: '${secrets[1]}' }
troupe: { workers: 1 }
`
  const pretty = await serveOnce(t, yaml, { TROUPE_LOG_FORMAT: 'pretty' })
  t.equal(pretty.code, 0)
  const prettyLines = pretty.stdout.split('\n').filter(line => line.trim() !== '')
  t.ok(prettyLines.length > 3, 'it logged')
  t.notOk(prettyLines.some(line => line.trimStart().startsWith('{')), 'no line is a JSON object')
  t.match(pretty.stdout, /INFO \(troupe\): listening on http:\/\/127\.0\.0\.1:\d+/, 'level, name and message, for a person')

  const json = await serveOnce(t, yaml, { TROUPE_LOG_FORMAT: '' })
  t.equal(json.code, 0)
  const records = json.stdout.split('\n').filter(line => line !== '').map(line => JSON.parse(line) as { msg: string })
  t.ok(records.some(record => record.msg.startsWith('listening on')), 'stdout is a pipe: one JSON object a line')

  for (const secret of secrets) t.notOk(pretty.stdout.includes(secret) || json.stdout.includes(secret), `${secret.slice(0, 8)}… is in neither output`)

  const refused = await serveOnce(t, yaml, { TROUPE_LOG_FORMAT: 'yaml' })
  t.equal(refused.code, 2)
  t.match(refused.stderr, /TROUPE_LOG_FORMAT: expected json or pretty, got "yaml"/)
})
