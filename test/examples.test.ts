import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import t from 'tap'

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
