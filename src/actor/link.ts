import type { MessagePort } from 'node:worker_threads'
import type { EnvelopeCodec } from './codec.js'
import { ActorError } from './errors.js'
import { FIELDS_PER_ENVELOPE, F_CORRELATION, F_KIND, F_TARGET } from './envelope.js'
import { SharedRing, VIA_PORT } from './ring.js'

/**
 * Flushing sooner than a tick's end keeps one batch small, so the receiver starts work while
 * the sender keeps packing. Pipelined asks want it small (the two threads overlap instead of
 * taking turns with whole windows); tells barely care: 128 measured best for both here.
 */
const MAX_ENVELOPES_PER_BATCH = 128
/**
 * How long a sender that expects an answer spins on its inbound ring before returning to its
 * event loop: under the 60–110 µs it costs to wake a halted vCPU, so a reply that comes within
 * it is caught at once, and bounded, so a slow reply costs little.
 */
const SPIN_MS = 0.05
/**
 * How long a reader woken by a prewake waits, spinning, for the batch it was woken ahead of.
 * The HTTP thread prewakes the thread of the provider when a request arrives and sends the ask
 * once it has read and validated the body: 150–300 µs later on these machines. Sequential chat
 * completions came back 0.2–0.34 ms sooner at p50 (1.55 ms against 1.89, 1.40 against 1.59
 * without the inference store; with and without taking turns in one process): the wake-up
 * overlaps the body, and a worker that waits awake runs its part faster than one that slept.
 * Bounded, because the ask may never come (the body was invalid), and it blocks only a reader
 * that was parked, so had nothing else to do.
 */
const PREWAKE_SPIN_MS = 0.4
/**
 * Spinning pays only while answers come back within it. A spin that catches one adds a point,
 * one that does not takes a point off; at zero the link stops spinning but for one probe every
 * SPIN_PROBE_EVERY flushes, which lets it learn when answers turn fast again. Under a load of
 * slow answers (every ask waits on an upstream HTTP call) the spins would otherwise burn the
 * CPU the peer and the network need: 15% of a busy HTTP thread, measured.
 */
const SPIN_SCORE_MAX = 16
const SPIN_PROBE_EVERY = 16
/**
 * When replies come slowly (under SLOW_BATCH envelopes queued after FLUSH_DUE_MS), an actor
 * draining its mailbox yields so they go out before it handles the next message: the peer then
 * works on them while this thread works on the rest. Without it a run of slow asks (a getMany of
 * a hundred keys) is answered all at once at the end and the two threads take turns instead of
 * overlapping. Fast replies are left to batch up: flushing them early costs more than it saves.
 */
const FLUSH_DUE_MS = 0.05
const SLOW_BATCH = 4
/**
 * This thread's outboxes, all links together: how many envelopes wait and when the first was
 * queued. Any link's flush resets both, so with several links busy the figure undercounts and
 * errs toward not yielding, which only costs overlap.
 */
let oldestUnflushed = 0
let unflushed = 0

/** Whether replies waiting on this thread came so slowly that work that can yield should let them go first. */
export function flushOverdue(): boolean {
  return unflushed !== 0 && unflushed <= SLOW_BATCH && performance.now() - oldestUnflushed > FLUSH_DUE_MS
}

/** Batches read from the ring in one turn of the event loop before it yields to timers and I/O. */
const STEPS_PER_TURN = 64
/** Bytes per direction per link. */
export const RING_BYTES = 1 << 20

/** A control message: anything on a link that is not an envelope batch (ports, handshakes, logs). */
export interface LinkControl {
  readonly ctl: string
  readonly [key: string]: unknown
}

export interface LinkEvents {
  batch(peer: number, fields: unknown[]): void
  control(peer: number, message: LinkControl): void
  /** Envelopes the codec could not encode, so the sender can fail them with `bad_message`. */
  unencodable(peer: number, kind: number, target: number, correlation: number, reason: string): void
  /** A batch from `peer` the codec refused (`bad_envelope`): dropped, for the receiver to log. */
  undecodable(peer: number, error: ActorError): void
  linkClosed(peer: number): void
  /** Whether it is worth spinning for inbound traffic from `peer` after sending to it. */
  expectsReply(peer: number): boolean
}

/** The shared memory of one link, as handed to each of its two ends (each end's inbound is the other's outbound). */
export interface LinkRings {
  readonly inbound: SharedArrayBuffer
  readonly outbound: SharedArrayBuffer
}

export function createLinkRings(): { a: LinkRings; b: LinkRings } {
  const ab = new SharedArrayBuffer(64 + RING_BYTES)
  const ba = new SharedArrayBuffer(64 + RING_BYTES)
  return { a: { inbound: ba, outbound: ab }, b: { inbound: ab, outbound: ba } }
}

/**
 * One link between this thread and one peer thread. Envelopes queued in one tick go out
 * together as one msgpack batch: through the shared ring when the link has one, or as a
 * transferred buffer on the MessagePort. The port always carries control messages, and batches
 * too large for the ring, announced in the ring by a VIA_PORT marker so order is kept.
 */
export class Link {
  private outbox: unknown[] = []
  private flushScheduled = false
  private open = true
  private readonly inbound: SharedRing | undefined
  private readonly outbound: SharedRing | undefined
  /** Batches the outbound ring had no room for, sent in order once it has. */
  private readonly overflow: Uint8Array[] = []
  private overflowTimer: NodeJS.Timeout | undefined
  /** Port batches that arrived before the ring marker announcing them was read. */
  private readonly portBatches: Uint8Array[] = []
  private blockedOnPort = false
  private parked = false
  private stepping = false
  private stepsThisTurn = 0
  private spinScore = SPIN_SCORE_MAX
  private flushesSinceProbe = 0

  constructor(
    readonly peer: number,
    private readonly port: MessagePort,
    private readonly codec: EnvelopeCodec,
    private readonly events: LinkEvents,
    rings?: LinkRings,
  ) {
    this.inbound = rings && new SharedRing(rings.inbound)
    this.outbound = rings && new SharedRing(rings.outbound)
    port.on('message', (data: unknown) => {
      if (data instanceof Uint8Array) this.portBatch(data)
      else this.events.control(this.peer, data as LinkControl)
    })
    port.on('close', () => {
      // The peer wrote its last batches to the ring before it closed the port, but the close can
      // be seen before the wake for them: a worker that answers its shutdown and closes at once
      // had its answer dropped here, and the ask waited out its timeout. Read what is left first.
      if (this.open && this.inbound !== undefined) while (this.readOne());
      this.open = false
      this.events.linkClosed(this.peer)
    })
    if (this.inbound !== undefined) this.kick()
  }

  get isOpen(): boolean {
    return this.open
  }

  send(kind: number, target: number, generation: number, correlation: number, deadline: number, payload: unknown): void {
    const outbox = this.outbox
    if (unflushed++ === 0) oldestUnflushed = performance.now()
    outbox.push(kind, target, generation, correlation, deadline, payload)
    if (outbox.length >= MAX_ENVELOPES_PER_BATCH * FIELDS_PER_ENVELOPE) this.flush()
    else if (!this.flushScheduled) {
      this.flushScheduled = true
      queueMicrotask(this.flush)
    }
  }

  /** Wakes the peer now if it is parked, because a batch for it follows shortly (see PREWAKE_SPIN_MS). */
  prewake(): void {
    if (this.open) this.outbound?.prewake()
  }

  sendControl(message: LinkControl, transfer: readonly (MessagePort | ArrayBuffer)[] = []): void {
    this.flush()
    if (this.open) this.port.postMessage(message, transfer as (MessagePort | ArrayBuffer)[])
  }

  readonly flush = (): void => {
    this.flushScheduled = false
    unflushed = 0
    const fields = this.outbox
    if (fields.length === 0) return
    this.outbox = []
    if (!this.open) return
    const { bytes, rejected } = this.codec.encode(fields)
    if (bytes !== undefined) this.transmit(bytes)
    for (const { index, reason } of rejected) {
      const at = index * FIELDS_PER_ENVELOPE
      this.events.unencodable(this.peer, fields[at + F_KIND] as number, fields[at + F_TARGET] as number, fields[at + F_CORRELATION] as number, reason)
    }
    if (bytes !== undefined && this.inbound !== undefined && this.events.expectsReply(this.peer) && this.spinPays()) {
      this.spinScore = this.spinForInbound() ? Math.min(SPIN_SCORE_MAX, this.spinScore + 1) : this.spinScore - 1
    }
  }

  close(): void {
    this.flush()
    this.open = false
    clearTimeout(this.overflowTimer)
    this.inbound?.wake() // let a parked reader see that the link is closed
    this.port.close()
  }

  // ---- sending -------------------------------------------------------------------------

  private transmit(bytes: Uint8Array): void {
    if (this.overflow.length === 0 && this.tryTransmit(bytes)) return
    this.overflow.push(bytes)
    this.retryOverflow()
  }

  private tryTransmit(bytes: Uint8Array): boolean {
    const ring = this.outbound
    if (ring === undefined) {
      this.port.postMessage(bytes, [bytes.buffer as ArrayBuffer])
      return true
    }
    if (bytes.byteLength <= ring.maxRecord) return ring.tryWrite(bytes)
    if (!ring.tryWriteMarker(VIA_PORT)) return false
    this.port.postMessage(bytes, [bytes.buffer as ArrayBuffer])
    return true
  }

  /** The peer is behind: offer the held batches again, in order, until the ring takes them all. */
  private retryOverflow(): void {
    if (this.overflowTimer !== undefined) return
    this.overflowTimer = setTimeout(() => {
      this.overflowTimer = undefined
      if (!this.open) return
      while (this.overflow.length > 0 && this.tryTransmit(this.overflow[0]!)) this.overflow.shift()
      if (this.overflow.length > 0) this.retryOverflow()
    }, 1)
  }

  // ---- receiving -----------------------------------------------------------------------

  private deliver(bytes: Uint8Array): void {
    let fields: unknown[]
    try {
      fields = this.codec.decode(bytes)
    } catch (error) {
      // Only bad_envelope is thrown; anything else is a bug to surface, not a batch to drop.
      if (!(error instanceof ActorError) || error.code !== 'bad_envelope') throw error
      this.events.undecodable(this.peer, error)
      return
    }
    this.events.batch(this.peer, fields)
  }

  private portBatch(bytes: Uint8Array): void {
    if (this.inbound === undefined) {
      this.deliver(bytes)
      return
    }
    if (!this.blockedOnPort) {
      this.portBatches.push(bytes) // it raced ahead of its marker; the reader takes it there
      return
    }
    // The reader already consumed the marker and is waiting for exactly this batch.
    this.blockedOnPort = false
    this.deliver(bytes)
    this.kick()
  }

  /** Starts the reader stepping through the ring, unless it already is. */
  private kick(): void {
    if (this.stepping || !this.open) return
    this.stepping = true
    queueMicrotask(this.step)
  }

  /**
   * Delivers one batch per microtask, so the actors it fed drain their mailboxes before the
   * next batch arrives (their drains were queued first), and yields to the event loop every
   * STEPS_PER_TURN batches so a busy link cannot starve timers and I/O. An empty ring parks the
   * reader until the sender writes again; exactly one park is ever pending.
   */
  private readonly step = (): void => {
    if (!this.open) {
      this.stepping = false
      return
    }
    if (this.readOne()) {
      if (++this.stepsThisTurn < STEPS_PER_TURN) queueMicrotask(this.step)
      else {
        this.stepsThisTurn = 0
        setImmediate(this.step)
      }
      return
    }
    this.stepping = false
    this.stepsThisTurn = 0
    if (this.blockedOnPort || this.parked) return
    const woken = this.inbound!.park()
    if (woken === undefined) {
      this.kick() // data landed while parking
      return
    }
    this.parked = true
    void woken.then(() => {
      this.parked = false
      const ring = this.inbound!
      ring.unpark()
      // Woken ahead of a record: wait for it awake rather than park and pay the wake-up again.
      if (ring.takePrewake() && this.open) ring.spinUntilNotEmpty(PREWAKE_SPIN_MS)
      this.kick()
    })
  }

  /** Reads and delivers the next batch; false when there is none (or it waits on the port). */
  private readOne(): boolean {
    if (this.blockedOnPort) return false
    const record = this.inbound!.read()
    if (record === undefined) return false
    if (record !== VIA_PORT) {
      this.deliver(record)
      return true
    }
    const held = this.portBatches.shift()
    if (held === undefined) {
      this.blockedOnPort = true
      return false
    }
    this.deliver(held)
    return true
  }

  private spinPays(): boolean {
    if (this.spinScore > 0) return true
    if (++this.flushesSinceProbe < SPIN_PROBE_EVERY) return false
    this.flushesSinceProbe = 0
    return true
  }

  /** Spins up to SPIN_MS for inbound traffic; whether it came. */
  private spinForInbound(): boolean {
    if (!this.inbound!.spinUntilNotEmpty(SPIN_MS)) return false
    // The answer we spun for goes straight in; anything behind it follows step by step.
    this.readOne()
    this.kick()
    return true
  }
}
