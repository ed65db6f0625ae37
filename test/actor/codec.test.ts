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
