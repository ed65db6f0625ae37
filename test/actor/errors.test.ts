import { readFileSync, readdirSync } from 'node:fs'
import t from 'tap'
import { ActorError, KERNEL_ERROR_CODES } from '../../src/index.js'
import { STORE_ERROR_CODES } from '../../actors/stores/protocol.js'
import { INFERENCE_ERROR_CODES } from '../../actors/providers/inference/protocol.js'
import { WORKFLOW_ERROR_CODES } from '../../actors/workflows/protocol.js'

const documented = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8')

t.test('every kernel error code is documented in docs/errors.md', async t => {
  for (const code of Object.keys(KERNEL_ERROR_CODES)) t.match(documented, `| \`${code}\` |`, code)
})

t.test('every store error code is documented, and every code the stores raise is listed', async t => {
  for (const code of Object.keys(STORE_ERROR_CODES)) t.match(documented, `| \`${code}\` |`, code)
  for (const code of codesRaisedIn(new URL('../../actors/stores/', import.meta.url))) {
    t.ok(code in STORE_ERROR_CODES || code in KERNEL_ERROR_CODES, `${code} is a store or kernel code`)
  }
})

t.test('every inference and HTTP error code is documented, with its status', async t => {
  for (const code of [...Object.keys(INFERENCE_ERROR_CODES), 'unknown_provider', 'conflict', 'provider_unavailable', 'unauthorized', 'auth_unavailable', 'quota_exceeded', 'concurrency_limit', 'quota_unavailable', 'method_not_allowed', 'body_too_large', 'not_configured']) t.match(documented, `| \`${code}\` | `, code)
  for (const code of codesRaisedIn(new URL('../../actors/providers/', import.meta.url))) {
    t.ok(code in INFERENCE_ERROR_CODES || code in KERNEL_ERROR_CODES, `${code} is an inference or kernel code`)
  }
})

t.test('every workflow error code is documented with its status, and every code the workflow runtime raises is listed', async t => {
  const section = documented.slice(documented.indexOf('## Workflows'))
  for (const code of [...Object.keys(WORKFLOW_ERROR_CODES), 'invalid_request', 'backpressure', 'timeout', 'cancelled', 'not_found']) t.match(section, `| \`${code}\` | `, code)
  t.match(section, '| `backpressure` | 429 |', 'a full workflow is 429 on the workflow routes')
  const known = { ...WORKFLOW_ERROR_CODES, ...STORE_ERROR_CODES, ...INFERENCE_ERROR_CODES, ...KERNEL_ERROR_CODES }
  for (const code of codesRaisedIn(new URL('../../actors/workflows/', import.meta.url))) t.ok(code in known, `${code} is a workflow, store, inference or kernel code`)
})

t.test('every code the kernel source raises is a kernel code', async t => {
  const dir = new URL('../../src/actor/', import.meta.url)
  const raised = new Set<string>()
  for (const file of readdirSync(dir)) {
    if (!file.endsWith('.ts')) continue
    const source = readFileSync(new URL(file, dir), 'utf8')
    for (const match of source.matchAll(/new ActorError\('([a-z_]+)'|code: '([a-z_]+)'/g)) raised.add(match[1] ?? match[2]!)
  }
  t.ok(raised.size >= 8, `found ${raised.size} codes in the source`)
  for (const code of raised) t.ok(code in KERNEL_ERROR_CODES, `${code} is listed in KERNEL_ERROR_CODES`)
})

t.test('an ActorError travels as data and comes back with its code', async t => {
  const original = new ActorError('rate_limit', 'slow down', { retryAfterMs: 1000 })
  const wire = JSON.parse(JSON.stringify(original)) as unknown
  t.same(wire, { code: 'rate_limit', message: 'slow down', data: { retryAfterMs: 1000 } })
  const back = ActorError.fromData(wire as never)
  t.equal(back.code, 'rate_limit')
  t.same(back.data, { retryAfterMs: 1000 })
})

function codesRaisedIn(dir: URL): Set<string> {
  const raised = new Set<string>()
  for (const entry of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    if (!entry.endsWith('.ts')) continue
    const source = readFileSync(new URL(entry, dir), 'utf8')
    for (const match of source.matchAll(/new ActorError\('([a-z_]+)'/g)) raised.add(match[1]!)
  }
  return raised
}
