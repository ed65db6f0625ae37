import t from 'tap'
import { EnvelopeCodec } from '../../src/actor/codec.js'
import { FIELDS_PER_ENVELOPE, Kind } from '../../src/actor/envelope.js'
import { ActorRef, type MessageRouter } from '../../src/actor/ref.js'

const router = {} as MessageRouter
const factory = { refFor: (slot: number, generation: number, name: string | undefined) => new ActorRef(slot, generation, name, router) }

t.test('a batch round-trips: many envelopes, one exact-size buffer', async t => {
  const codec = new EnvelopeCodec(factory)
  const fields: unknown[] = []
  for (let i = 0; i < 100; i++) fields.push(Kind.tell, 7, 1, 0, 0, { type: 'add', n: i })
  const { bytes, rejected } = codec.encode(fields)
  t.same(rejected, [])
  t.ok(bytes && bytes.byteLength === bytes.buffer.byteLength, 'the buffer is exactly the packed bytes, not the 8 KB scratch')
  t.same(codec.decode(bytes!), fields)
  t.ok(bytes!.byteLength < 100 * 12, `records keep it small: ${bytes!.byteLength} bytes for 100 envelopes`)
})

t.test('refs inside payloads come back bound to the decoding side', async t => {
  const codec = new EnvelopeCodec(factory)
  const ref = new ActorRef(5, 2, 'worker', router)
  const { bytes } = codec.encode([Kind.ask, 1, 1, 9, 0, { type: 'forward', to: ref, list: [ref] }])
  const [, , , , , payload] = codec.decode(bytes!) as [number, number, number, number, number, { to: ActorRef; list: ActorRef[] }]
  t.ok(payload.to instanceof ActorRef)
  t.ok(payload.to.equals(ref))
  t.equal(payload.to.name, 'worker')
  t.ok(payload.list[0]?.equals(ref))
})

t.test('an unencodable envelope is set aside; the rest of the batch still goes', async t => {
  const codec = new EnvelopeCodec(factory)
  const fields = [Kind.tell, 1, 1, 0, 0, 'ok', Kind.ask, 2, 1, 5, 0, { bad: Symbol('x') }, Kind.tell, 3, 1, 0, 0, 'also ok']
  const { bytes, rejected } = codec.encode(fields)
  t.equal(rejected.length, 1)
  t.equal(rejected[0]?.index, 1)
  const decoded = codec.decode(bytes!)
  t.equal(decoded.length, 2 * FIELDS_PER_ENVELOPE)
  t.same([decoded[5], decoded[11]], ['ok', 'also ok'])
})

t.test('batches of every size round-trip, packed as maps when small and as records when large', async t => {
  const codec = new EnvelopeCodec(factory)
  const reply = (i: number) => ({ id: `c-${i}`, choices: [{ index: 0, message: { role: 'assistant', content: `n${i}` } }], usage: null })
  for (const count of [1, 2, 15, 16, 17, 128]) {
    const fields: unknown[] = []
    for (let i = 0; i < count; i++) fields.push(Kind.reply, 3, 1, i, 0, i % 2 ? reply(i) : { type: 'add', n: i, nested: { deep: [i, 'x'] } })
    const { bytes, rejected } = codec.encode(fields)
    t.same(rejected, [])
    t.same(codec.decode(bytes!), fields, `${count} envelopes`)
  }
  // Bad envelopes are set aside on both paths.
  for (const count of [3, 40]) {
    const fields: unknown[] = []
    for (let i = 0; i < count; i++) fields.push(Kind.tell, 1, 1, 0, 0, i === 1 ? { bad: Symbol('x') } : { n: i })
    const { bytes, rejected } = codec.encode(fields)
    t.same(rejected.map(r => r.index), [1], `${count} envelopes, one bad`)
    t.equal(codec.decode(bytes!).length, (count - 1) * FIELDS_PER_ENVELOPE)
  }
})

t.test('a small batch whose payload carries a long list packs records', async t => {
  const codec = new EnvelopeCodec(factory)
  const rows = Array.from({ length: 40 }, (_, i) => ({ id: `row-${i}`, recorded: i, model: 'm', completion: { choices: [{ index: 0 }] } }))
  for (const payload of [{ type: 'transaction', ops: rows }, rows]) {
    const fields = [Kind.ask, 2, 1, 1, 0, payload]
    const { bytes } = codec.encode(fields)
    t.same(codec.decode(bytes!), fields)
    t.ok(bytes!.byteLength < 40 * 40, `each row's keys are written once: ${bytes!.byteLength} bytes for 40 rows`)
  }
})
