import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { workerExecArgv } from './fixtures/system.js'

const mainModule = fileURLToPath(new URL('../src/main.ts', import.meta.url))

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
