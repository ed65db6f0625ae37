import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { isWorkflow, type Workflow } from '../src/index.js'

const run = promisify(execFile)
const example = fileURLToPath(new URL('../dist/examples/supervised-counters.js', import.meta.url))

// The examples import 'troupe' the way a user does, which resolves to the built package: npm
// test builds first, so this runs the compiled example against the compiled library.
t.test('the supervised-counters example runs and exits', { skip: !existsSync(example) && 'dist/ is not built: run npm run build' }, async t => {
  const { stdout } = await run(process.execPath, [example], { timeout: 60_000, env: { ...process.env, TROUPE_LOG_LEVEL: 'warn' } })
  t.match(stdout, /counter = 1/)
  t.match(stdout, /left \+ right = 30/)
  t.match(stdout, /"strategy": "one_for_all"/)
})

const approveModule = fileURLToPath(new URL('../dist/examples/workflows/approve.js', import.meta.url))

t.test('the approve example workflow that stack.yaml serves is a workflow, its model defaulted', { skip: !existsSync(approveModule) && 'dist/ is not built: run npm run build' }, async t => {
  const { approve } = (await import(approveModule)) as { approve: unknown }
  t.ok(isWorkflow(approve))
  const { definition } = approve as Workflow
  t.same(definition.start.parse({ topic: 'actors' }), { topic: 'actors', model: 'ollama/llama3.2:3b' })
  t.notOk(definition.start.safeParse({}).success, 'a start event without a topic is refused')
})
