import { MessageChannel } from 'node:worker_threads'
import t from 'tap'
import { EnvelopeCodec } from '../../src/actor/codec.js'
import { FIELDS_PER_ENVELOPE, Kind } from '../../src/actor/envelope.js'
import { Link, type LinkEvents, type LinkRings } from '../../src/actor/link.js'
import { ActorRef, type MessageRouter } from '../../src/actor/ref.js'

const factory = { refFor: (slot: number, generation: number, name: string | undefined) => new ActorRef(slot, generation, name, {} as MessageRouter) }

/**
 * Two ends of one link in this thread, with rings of `ringBytes` per direction. `received`: the
 * payloads b was handed, and 'closed' when b saw the link close.
 */
function linkPair(ringBytes: number) {
  const { port1, port2 } = new MessageChannel()
  const ab = new SharedArrayBuffer(64 + ringBytes)
  const ba = new SharedArrayBuffer(64 + ringBytes)
  const received: unknown[] = []
  const sink: LinkEvents = {
    batch: (_peer, fields) => {
      for (let i = 0; i < fields.length; i += FIELDS_PER_ENVELOPE) received.push(fields[i + 5])
    },
    control: () => {},
    unencodable: () => {},
    undecodable: () => {},
    linkClosed: () => received.push('closed'),
    expectsReply: () => false,
  }
  const quiet: LinkEvents = { ...sink, batch: () => {}, linkClosed: () => {} }
  const a = new Link(1, port1, new EnvelopeCodec(factory), quiet, { inbound: ba, outbound: ab } satisfies LinkRings)
  const b = new Link(0, port2, new EnvelopeCodec(factory), sink, { inbound: ab, outbound: ba })
  return { a, b, received, toB: ab, close: () => (a.close(), b.close()) }
}

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out')
    await new Promise(resolve => setImmediate(resolve))
  }
}

t.test('batches too large for the ring go over the port, in order with the rest', async t => {
  const { a, received, close } = linkPair(4096)
  t.teardown(close)
  const big = 'x'.repeat(10_000) // larger than a quarter of the ring
  a.send(Kind.tell, 1, 1, 0, 0, 'first')
  a.flush()
  a.send(Kind.tell, 1, 1, 0, 0, big)
  a.flush()
  a.send(Kind.tell, 1, 1, 0, 0, 'last')
  a.flush()
  await until(() => received.length === 3)
  t.same(received, ['first', big, 'last'])
})

t.test('when the ring is full, batches wait in order and nothing is lost', async t => {
  const { a, received, close } = linkPair(1024)
  t.teardown(close)
  const expected: number[] = []
  for (let i = 0; i < 2000; i++) {
    a.send(Kind.tell, 1, 1, 0, 0, { i, pad: 'y'.repeat(40) })
    expected.push(i)
    if (i % 10 === 9) a.flush() // many small batches, far more than a 1 KiB ring holds at once
  }
  a.flush()
  await until(() => received.length === 2000)
  t.same(
    received.map(r => (r as { i: number }).i),
    expected,
  )
})

t.test('a closed link wakes its parked reader and stops', async t => {
  const { a, b } = linkPair(1024)
  a.close()
  b.close()
  t.equal(a.isOpen, false)
  t.equal(b.isOpen, false)
})

t.test('what the peer wrote to the ring before it closed is delivered, even when the close is seen first', async t => {
  const { a, received, toB, close } = linkPair(4096)
  t.teardown(close)
  const header = new Int32Array(toB, 0, 16)
  await until(() => Atomics.load(header, 2) === 1) // b's reader is parked on the ring
  // The race, made certain: the wake for this write reaches b only after the close does (here
  // it never does), as when a worker answers its shutdown and closes its port at once.
  Atomics.store(header, 2, 0)
  a.send(Kind.reply, 1, 1, 7, 0, 'the last answer')
  a.flush()
  a.close()
  await until(() => received.includes('closed'))
  t.same(received, ['the last answer', 'closed'])
})
