import { createHmac } from 'node:crypto'
import { pack, unpack } from 'msgpackr'
import t from 'tap'
import { HttpError } from '../../src/server/http.js'
import { openContext, sealContext } from '../../src/server/workflow-context.js'

const SECRET = 'a-secret-of-sixteen-or-more'

/** The code and param of what `fn` throws. */
function refusal(fn: () => unknown): { code: string; status: number; param: string | null; message: string } {
  try {
    fn()
  } catch (error) {
    if (!(error instanceof HttpError)) throw error
    return { code: error.code, status: error.status, param: error.param, message: error.message }
  }
  throw new Error('expected a refusal')
}

const hmac = (secret: string, state: string): string => createHmac('sha256', secret).update('troupe-context-v1\n').update(state).digest('hex')

t.test('a sealed context opens to the state it sealed', async t => {
  const state = { count: 3, nested: { list: [1, 'two', null], flag: true }, text: 'héllo' }
  const sealed = sealContext(SECRET, state)
  t.same(Object.keys(sealed), ['state', 'signature'])
  t.same(unpack(Buffer.from(sealed.state, 'base64')), state, 'the state is plain msgpack, readable by any msgpack reader')
  t.equal(sealed.signature, hmac(SECRET, sealed.state), 'hex HMAC-SHA256 of the domain line and the base64 state')
  t.same(openContext(SECRET, sealed), state)
  t.same(openContext(SECRET, JSON.parse(JSON.stringify(sealed))), state, 'it survives a trip through JSON')
  t.same(openContext(SECRET, sealContext(SECRET, {})), {})
})

t.test('a context altered, signed with another secret, or unsigned is refused with bad_context', async t => {
  const sealed = sealContext(SECRET, { count: 1 })
  const forgedState = Buffer.from(pack({ count: 1_000 })).toString('base64')
  const cases: Array<[string, unknown]> = [
    ['the state replaced', { ...sealed, state: forgedState }],
    ['the signature altered', { ...sealed, signature: sealed.signature.replace(/.$/, c => (c === '0' ? '1' : '0')) }],
    ['signed with another secret', sealContext('another-secret-of-length', { count: 1 })],
    ['no signature', { state: sealed.state }],
    ['a short signature', { ...sealed, signature: sealed.signature.slice(0, 10) }],
    ['a signature that is not hex', { ...sealed, signature: 'z'.repeat(64) }],
    ['a number for state', { state: 5, signature: sealed.signature }],
    ['not an object', 'context'],
    ['an array', [sealed]],
    ['null', null],
  ]
  for (const [what, context] of cases) t.match(refusal(() => openContext(SECRET, context)), { code: 'bad_context', status: 400, param: 'context' }, what)
})

t.test('nothing is decoded before the signature checks out', async t => {
  const garbage = Buffer.from([0xc1, 0xc1, 0xc1]).toString('base64') // 0xc1 is never valid msgpack
  t.match(refusal(() => openContext(SECRET, { state: garbage, signature: '00'.repeat(32) })).message, /signature does not match/)
  // Signed here, yet not msgpack: only a writer sharing the secret could make one.
  t.match(refusal(() => openContext(SECRET, { state: garbage, signature: hmac(SECRET, garbage) })), { code: 'bad_context', message: /not msgpack/ })
  const array = Buffer.from(pack([1, 2])).toString('base64')
  t.match(refusal(() => openContext(SECRET, { state: array, signature: hmac(SECRET, array) })), { code: 'bad_context', message: /not an object/ })
})

t.test('without a secret every context is refused, and the message says which setting to add', async t => {
  const sealed = sealContext(SECRET, { count: 1 })
  t.match(refusal(() => openContext(undefined, sealed)), { code: 'bad_context', status: 400, message: /server\.workflows_context_secret/ })
})
