import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { fakeOpenAI } from '../../bench/fixtures/upstreams.js'
import { cliStackConfig, freePort, startCli, type Running } from '../fixtures/cli-stack.js'
import { tempDir } from '../fixtures/stack.js'

/**
 * What an answered chat completion survives with `storage.stores.inference.write_mode: sync`:
 * the real CLI in a child process under load, `kill -9`, then a restart on the same data that
 * lists the store. (`async` promises every record through a drain: shutdown.test.ts shows it
 * under SIGTERM and SIGINT with the default mode; what `kill -9` may cost it, the README says.)
 */

const INFERENCE = 'inference: { backend: sql, table_name: completions }'

/** cliStackConfig with the inference store's write mode set, written to a new temp directory. */
async function writeStack(t: Parameters<typeof tempDir>[0], upstream: string, writeMode: 'async' | 'sync' | undefined): Promise<{ file: string; dir: string }> {
  const dir = tempDir(t)
  const base = cliStackConfig(dir, upstream, 10_000, await freePort())
  if (!base.includes(INFERENCE)) throw new Error(`cliStackConfig no longer holds '${INFERENCE}'`)
  const file = join(dir, 'stack.yaml')
  writeFileSync(file, writeMode === undefined ? base : base.replace(INFERENCE, `inference: { backend: sql, table_name: completions, write_mode: ${writeMode} }`))
  return { file, dir }
}

const chat = (url: string): Promise<Response> =>
  fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content: 'hi' }] }) })

/** Clients sending completions back to back until stopped; `answered` holds the id of each answered 200. */
function load(url: string, clients = 6): { answered: string[]; stop: () => Promise<void> } {
  const answered: string[] = []
  let running = true
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      try {
        const res = await chat(url)
        if (res.status === 200) answered.push(((await res.json()) as { id: string }).id)
        else await res.text()
      } catch {
        // The process went away mid-request: that request was not answered.
        await new Promise(resolve => setTimeout(resolve, 5))
      }
    }
  })
  return {
    answered,
    stop: async () => {
      running = false
      await Promise.all(loops)
    },
  }
}

/** Waits until `count` completions were answered, within a bounded deadline. */
async function answeredAtLeast(answered: readonly string[], count: number): Promise<void> {
  const until = Date.now() + 10_000
  while (answered.length < count) {
    if (Date.now() > until) throw new Error(`only ${answered.length} completions answered in 10 s`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/** Every stored completion's id, through the list endpoint, 100 a page. */
async function storedIds(url: string): Promise<Set<string>> {
  const ids = new Set<string>()
  let after: string | null = null
  for (;;) {
    const res = await fetch(`${url}/v1/chat/completions?order=asc&limit=100${after === null ? '' : `&after=${after}`}`)
    if (res.status !== 200) throw new Error(`listing answered ${res.status}: ${await res.text()}`)
    const page = (await res.json()) as { data: Array<{ id: string }>; last_id: string | null; has_more: boolean }
    for (const { id } of page.data) ids.add(id)
    if (!page.has_more || page.last_id === null) return ids
    after = page.last_id
  }
}

/** Loads `first`, signals it once `count` were answered, and returns the answered ids and the exit code. */
async function signalUnderLoad(first: Running, signal: NodeJS.Signals, count: number): Promise<{ answered: string[]; code: number | null }> {
  const clients = load(first.url)
  await answeredAtLeast(clients.answered, count)
  first.child.kill(signal)
  const code = await first.exited
  await clients.stop()
  return { answered: clients.answered, code }
}

/** The restarted stack's stored ids, and the answered ones among them that are missing. */
async function afterRestart(t: Parameters<typeof startCli>[0], file: string, answered: readonly string[]): Promise<{ stored: Set<string>; missing: string[] }> {
  const second = await startCli(t, file)
  const stored = await storedIds(second.url)
  const missing = answered.filter(id => !stored.has(id))
  second.child.kill('SIGTERM')
  if ((await second.exited) !== 0) throw new Error(`the restarted stack exited non-zero:\n${second.output()}`)
  return { stored, missing }
}

const upstream = await fakeOpenAI({ apiKey: 'sk-test' })
t.teardown(() => upstream.close())

t.test('write_mode sync, kill -9 under load: every completion answered 200 is stored after a restart', async t => {
  const { file } = await writeStack(t, upstream.url, 'sync')
  const { answered, code } = await signalUnderLoad(await startCli(t, file), 'SIGKILL', 200)
  t.equal(code, null, 'killed, no exit code')
  const { stored, missing } = await afterRestart(t, file, answered)
  t.same(missing, [], `all ${answered.length} answered are among the ${stored.size} stored`)
})
