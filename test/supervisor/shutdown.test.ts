import { writeFileSync } from 'node:fs'
import t from 'tap'
import { fakeOpenAI } from '../../bench/fixtures/upstreams.js'
import { hangingUpstream, startCli as start, startCliStack } from '../fixtures/cli-stack.js'

/**
 * The draining shutdown, as an operator meets it: the real CLI in a child process, signals,
 * and a restart on the same data.
 */

const chat = (url: string) =>
  fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content: 'hi' }] }) })

t.test('SIGTERM then SIGINT under load and with runs in flight: the drain completes, exit 0; every answered completion is stored; every run completed or resumes', async t => {
  const upstream = await fakeOpenAI({ apiKey: 'sk-test' })
  t.teardown(() => upstream.close())
  const { file, running: first } = await startCliStack(t, upstream.url, 10_000)
  const nowait = async (name: string, body: unknown) => {
    const res = await fetch(`${first.url}/workflows/${name}/run-nowait`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    return ((await res.json()) as { handler_id: string }).handler_id
  }

  const answered: string[] = []
  let refused = 0
  let running = true
  const clients = Array.from({ length: 6 }, async () => {
    while (running) {
      try {
        const res = await chat(first.url)
        if (res.status === 200) answered.push(((await res.json()) as { id: string }).id)
        else {
          await res.text()
          refused++
        }
      } catch {
        refused++
        await new Promise(resolve => setTimeout(resolve, 5))
      }
    }
  })
  await new Promise(resolve => setTimeout(resolve, 300))
  // One run executing its steps when the signal comes, one parked waiting for a human.
  const human = await nowait('human', { start_event: {} })
  const timed = await nowait('timed', { start_event: { ms: 150 } })
  // Back to back: the second arrives while the first one's drain is under way, however short.
  first.child.kill('SIGTERM')
  first.child.kill('SIGINT')
  const code = await first.exited
  running = false
  await Promise.all(clients)
  t.equal(code, 0, 'exits 0 after the drain')
  t.match(first.output(), /still draining/, 'the second signal is logged and does not cut the drain short')
  t.match(first.output(), /"runsFinished":1,"runsToResume":1/, 'the executing run finished in the drain; the waiting one was let go')
  t.ok(answered.length > 0, `${answered.length} answered before and during the drain, ${refused} refused or reset after intake stopped`)

  const second = await start(t, file)
  const missing: string[] = []
  for (const id of answered) {
    const res = await fetch(`${second.url}/v1/chat/completions/${id}`)
    await res.text()
    if (res.status !== 200) missing.push(id)
  }
  t.same(missing, [], 'every completion answered 200 is in the inference store after the restart')
  const done = (await (await fetch(`${second.url}/handlers/${timed}`)).json()) as { status: string }
  t.equal(done.status, 'completed', 'the run executing at SIGTERM completed, not cut off')
  const sent = await fetch(`${second.url}/events/${human}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ event: { type: 'HumanResponseEvent', value: { response: 'yes' } } }) })
  t.equal(sent.status, 200, await sent.text())
  let status = ''
  for (let i = 0; i < 100 && status !== 'completed'; i++) {
    status = ((await (await fetch(`${second.url}/handlers/${human}`)).json()) as { status: string }).status
    if (status !== 'completed') await new Promise(resolve => setTimeout(resolve, 50))
  }
  t.equal(status, 'completed', 'the run waiting at SIGTERM resumed after the restart and took the event')
  second.child.kill('SIGTERM')
  t.equal(await second.exited, 0)
})

t.test('the drain deadline bounds a request stuck on a silent upstream: it is cancelled, the process exits 0', async t => {
  const upstream = await hangingUpstream(t)
  const { running } = await startCliStack(t, upstream.url, 300)
  const stuck = chat(running.url).then(
    res => res.status,
    () => 'reset',
  )
  await new Promise(resolve => setTimeout(resolve, 200))
  running.child.kill('SIGTERM')
  t.equal(await running.exited, 0, 'exits once the deadline passed, without waiting for the upstream')
  t.ok([503, 'reset'].includes(await stuck), 'the stuck client is answered 503 or reset')
  t.equal(upstream.aborted('/v1/chat/completions'), 1, 'the upstream call was aborted')
  t.equal(upstream.aborted('/v1/models'), 1, "and so was the reconciler's model list, which it never answered")
})

t.test('a third signal forces exit with a non-zero code', async t => {
  const upstream = await hangingUpstream(t)
  const { running } = await startCliStack(t, upstream.url, 60_000)
  void chat(running.url).catch(() => undefined)
  await new Promise(resolve => setTimeout(resolve, 200))
  for (const signal of ['SIGTERM', 'SIGTERM', 'SIGINT'] as const) {
    running.child.kill(signal)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  const code = await running.exited
  t.not(code, 0)
  t.match(running.output(), /forced exit/)
})

t.test('a subtree that gives up restarting stops the stack in order, with exit code 1', async t => {
  const upstream = await fakeOpenAI({ apiKey: 'sk-test' })
  t.teardown(() => upstream.close())
  const { file, yaml, running } = await startCliStack(t, upstream.url, 2000)
  const broken = new URL('../fixtures/broken-in-workers.ts', import.meta.url).pathname
  writeFileSync(file, yaml.replace(/module: '[^']+', export: timedSteps/, `module: '${broken}', export: brokenInWorkers`))
  running.child.kill('SIGHUP')
  t.equal(await running.exited, 1, 'an orderly stop, then exit 1')
  t.match(running.output(), /a subtree gave up restarting; stopping the stack/)
  t.match(running.output(), /"msg":"stopped"/)
})
