import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { mainModule, runCli } from './fixtures/cli.js'
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
