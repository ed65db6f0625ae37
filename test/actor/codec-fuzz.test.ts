import { MessageChannel } from 'node:worker_threads'
import fc from 'fast-check'
import { pack } from 'msgpackr'
import t from 'tap'
import { EnvelopeCodec } from '../../src/actor/codec.js'
import { FIELDS_PER_ENVELOPE, Kind, malformedBatch } from '../../src/actor/envelope.js'
import { ActorError } from '../../src/actor/errors.js'
import { Link, type LinkEvents } from '../../src/actor/link.js'
import { ActorRef, type MessageRouter } from '../../src/actor/ref.js'

const factory = { refFor: (slot: number, generation: number, name: string | undefined) => new ActorRef(slot, generation, name, {} as MessageRouter) }
const codec = new EnvelopeCodec(factory)

/** A batch known to be good: decoded after each hostile one, it shows the decoder kept no bad state. */
const good = [Kind.ask, 3, 1, 9, 0, { type: 'ping', ref: new ActorRef(4, 2, 'peer', {} as MessageRouter), list: Array.from({ length: 20 }, (_, i) => ({ i })) }]
const goodBytes = codec.encode(good).bytes!

/**
 * What decoding `bytes` may do: return a batch of well-formed envelopes, or throw an ActorError
 * `bad_envelope`. Anything else thrown fails the property; a good batch still decodes after.
 */
function decodesOrRefuses(bytes: Uint8Array): void {
  try {
    const fields = codec.decode(bytes)
    const wrong = malformedBatch(fields)
    if (wrong !== undefined) throw new Error(`decode returned a malformed batch: ${wrong}`)
  } catch (error) {
    if (!(error instanceof ActorError) || error.code !== 'bad_envelope') throw error
  }
  const again = codec.decode(goodBytes)
  if (again.length !== FIELDS_PER_ENVELOPE || !((again[5] as { ref: unknown }).ref instanceof ActorRef)) throw new Error('a good batch no longer decodes')
}

/** A field an envelope may hold, mostly of the right type, sometimes not. */
const field = fc.oneof(fc.nat({ max: 20 }), fc.integer({ min: -5, max: 5 }), fc.double(), fc.constant(null), fc.string({ maxLength: 4 }))
const payload = fc.oneof(
  fc.anything({ maxDepth: 3 }),
  fc.tuple(fc.nat({ max: 12 }), fc.anything({ maxDepth: 2 })),
  fc.record({ code: fc.oneof(fc.string(), fc.nat()), message: fc.string() }, { requiredKeys: [] }),
  fc.record({ op: fc.oneof(fc.string(), fc.constant(null)) }, { requiredKeys: [] }),
)
const envelopes = fc
  .array(fc.tuple(fc.nat({ max: 12 }), field, field, field, field, payload), { maxLength: 8 })
  .chain(list => fc.tuple(fc.constant(list.flat()), fc.integer({ min: -1, max: 1 })))
  .map(([fields, trim]) => (trim === 0 ? fields : trim < 0 ? fields.slice(0, -1) : [...fields, 'extra']))

t.test('random bytes decode to a well-formed batch or are refused with bad_envelope', async t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), decodesOrRefuses), { numRuns: 2_000 })
  t.pass()
})

t.test('random msgpack values, and envelopes with fields of any type, decode or are refused with bad_envelope', async t => {
  fc.assert(fc.property(fc.anything(), value => decodesOrRefuses(pack(value))), { numRuns: 500 })
  fc.assert(fc.property(envelopes, fields => decodesOrRefuses(pack(fields))), { numRuns: 1_000 })
  t.pass()
})

t.test('bytes mutated from a real batch decode or are refused with bad_envelope', async t => {
  const mutation = fc.array(fc.tuple(fc.nat({ max: goodBytes.length - 1 }), fc.nat({ max: 255 })), { minLength: 1, maxLength: 6 })
  const cut = fc.nat({ max: goodBytes.length })
  fc.assert(
    fc.property(mutation, cut, (changes, end) => {
      // A copy: encode hands out a Buffer, whose slice() shares its memory.
      const bytes = Uint8Array.from(goodBytes.subarray(0, Math.max(end, 1)))
      for (const [at, byte] of changes) if (at < bytes.length) bytes[at] = byte
      decodesOrRefuses(bytes)
    }),
    { numRuns: 2_000 },
  )
  t.pass()
})

t.test('an ActorRef extension holding anything but [slot, generation, name] is refused', async t => {
  // fixarray of 6: a tell to 1/1 whose payload is the ActorRef extension as msgpackr writes it
  // (fixext 1 of type 0x54, a filler byte, then the value it holds), holding anything.
  const refEnvelope = (held: Uint8Array) => Uint8Array.from([0x96, 1, 1, 1, 0, 0, 0xd4, 0x54, 0x00, ...held])
  fc.assert(fc.property(fc.anything({ maxDepth: 2 }), value => decodesOrRefuses(refEnvelope(pack(value)))), { numRuns: 500 })
  fc.assert(fc.property(fc.uint8Array({ maxLength: 40 }), bytes => decodesOrRefuses(refEnvelope(bytes))), { numRuns: 500 })
  t.throws(() => codec.decode(refEnvelope(pack([null, null, null]))), { code: 'bad_envelope', message: /must hold \[slot, generation, name\]/ })
  const [, , , , , ref] = codec.decode(refEnvelope(pack([7, 2, 'seven'])))
  t.ok(ref instanceof ActorRef && ref.slot === 7 && ref.name === 'seven', 'a well-formed one decodes')
})

t.test('msgpack nested past the stack is refused, not a RangeError', async t => {
  const deep = new Uint8Array(200_000).fill(0x91) // a list holding a list holding …
  t.throws(() => codec.decode(deep), { code: 'bad_envelope', message: /not valid msgpack/ })
  t.same(codec.decode(goodBytes), good)
})

t.test('envelopes that routing cannot take apart are refused, naming what is wrong', async t => {
  const refused = (fields: unknown): string => {
    try {
      codec.decode(pack(fields))
    } catch (error) {
      if (error instanceof ActorError && error.code === 'bad_envelope') return error.message
      throw error
    }
    return 'decoded'
  }
  t.match(refused({ not: 'a batch' }), /is an array of fields, not object/)
  t.match(refused([Kind.tell, 1, 1, 0, 0]), /not a multiple/)
  t.match(refused([99, 1, 1, 0, 0, null]), /kind 99/)
  t.match(refused([Kind.tell, -1, 1, 0, 0, null]), /target, generation and correlation/)
  t.match(refused([Kind.ask, 1, 1, 1, 'soon', null]), /deadline/)
  t.match(refused([Kind.error, 0, 0, 1, 0, null]), /error payload/)
  t.match(refused([Kind.stream, 1, 1, 1, 0, 'no window']), /stream payload/)
  t.match(refused([Kind.system, 0, 0, 1, 0, { slot: 1 }]), /kernel op/)
  t.match(refused([Kind.returned, 1, 1, 1, 0, [Kind.reply, null]]), /returned payload/)
  t.match(refused([Kind.credit, 1, 1, 1, 0, -2]), /credit payload/)
  t.equal(refused([Kind.tell, 1, 1, 0, 0, null, Kind.error, 0, 0, 3, 0, { code: 'x', message: 'y' }]), 'decoded')
})

/** A link end `b` that reports what it was handed, and a way to put raw bytes on its inbound side. */
function receiver(rings: boolean) {
  const { port1, port2 } = new MessageChannel()
  const ab = new SharedArrayBuffer(64 + 64 * 1024)
  const ba = new SharedArrayBuffer(64 + 64 * 1024)
  const batches: unknown[][] = []
  const refused: ActorError[] = []
  const events: LinkEvents = {
    batch: (_peer, fields) => batches.push(fields),
    control: () => {},
    unencodable: () => {},
    undecodable: (_peer, error) => refused.push(error),
    linkClosed: () => {},
    expectsReply: () => false,
  }
  let next: Uint8Array | undefined
  // The sending end's codec hands over whatever bytes the test chose: they travel as a real batch would.
  const rawCodec = { encode: () => ({ bytes: next, rejected: [] }), decode: () => [] } as unknown as EnvelopeCodec
  const a = new Link(1, port1, rawCodec, { ...events, batch: () => {}, undecodable: () => {} }, rings ? { inbound: ba, outbound: ab } : undefined)
  const b = new Link(0, port2, new EnvelopeCodec(factory), events, rings ? { inbound: ab, outbound: ba } : undefined)
  const sendRaw = (bytes: Uint8Array): void => {
    next = bytes
    a.send(Kind.tell, 0, 0, 0, 0, null)
    a.flush()
  }
  return { sendRaw, batches, refused, close: () => (a.close(), b.close()) }
}

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out')
    await new Promise(resolve => setImmediate(resolve))
  }
}

for (const rings of [true, false]) {
  t.test(`a link ${rings ? 'on shared rings' : 'on a port'} drops undecodable batches with bad_envelope and keeps delivering`, async t => {
    const { sendRaw, batches, refused, close } = receiver(rings)
    t.teardown(close)
    const garbage = fc.sample(fc.uint8Array({ minLength: 1, maxLength: 256 }), { numRuns: 200, seed: 7 })
    const rejectable = garbage.filter(bytes => {
      try {
        codec.decode(bytes)
        return false
      } catch {
        return true
      }
    })
    for (const bytes of rejectable) sendRaw(Uint8Array.from(bytes))
    sendRaw(codec.encode([Kind.tell, 5, 1, 0, 0, 'after the garbage']).bytes!)
    await until(() => batches.length === 1)
    t.equal(refused.length, rejectable.length, `${rejectable.length} garbage batches dropped`)
    t.ok(refused.every(error => error.code === 'bad_envelope'))
    t.same(batches, [[Kind.tell, 5, 1, 0, 0, 'after the garbage']])
  })
}
