import type { MessagePort } from 'node:worker_threads'
import type { EnvelopeCodec } from './codec.js'
import { FIELDS_PER_ENVELOPE, F_CORRELATION, F_KIND, F_TARGET } from './envelope.js'

/**
 * Flushing sooner than a tick's end keeps one post's buffer small, so the receiver starts work
 * while the sender keeps packing; past a few hundred envelopes larger batches gain nothing.
 */
const MAX_ENVELOPES_PER_POST = 512

/** A control message: anything on a link that is not an envelope batch (ports, handshakes). */
export interface LinkControl {
  readonly ctl: string
  readonly [key: string]: unknown
}

export interface LinkEvents {
  batch(peer: number, fields: unknown[]): void
  control(peer: number, message: LinkControl): void
  /** Envelopes the codec could not encode, so the sender can fail them with `bad_message`. */
  unencodable(peer: number, kind: number, target: number, correlation: number, reason: string): void
  linkClosed(peer: number): void
}

/**
 * One MessagePort between this thread and one peer thread. Envelopes queued in one tick go out
 * together as one msgpack buffer that is transferred, not copied.
 */
export class Link {
  private outbox: unknown[] = []
  private flushScheduled = false
  private open = true

  constructor(
    readonly peer: number,
    private readonly port: MessagePort,
    private readonly codec: EnvelopeCodec,
    private readonly events: LinkEvents,
  ) {
    port.on('message', (data: unknown) => {
      if (data instanceof Uint8Array) this.events.batch(this.peer, this.codec.decode(data))
      else this.events.control(this.peer, data as LinkControl)
    })
    port.on('close', () => {
      this.open = false
      this.events.linkClosed(this.peer)
    })
  }

  get isOpen(): boolean {
    return this.open
  }

  send(kind: number, target: number, generation: number, correlation: number, deadline: number, payload: unknown): void {
    const outbox = this.outbox
    outbox.push(kind, target, generation, correlation, deadline, payload)
    if (outbox.length >= MAX_ENVELOPES_PER_POST * FIELDS_PER_ENVELOPE) this.flush()
    else if (!this.flushScheduled) {
      this.flushScheduled = true
      queueMicrotask(this.flush)
    }
  }

  sendControl(message: LinkControl, transfer: readonly (MessagePort | ArrayBuffer)[] = []): void {
    this.flush() // keep order with envelopes already queued
    if (this.open) this.port.postMessage(message, transfer as (MessagePort | ArrayBuffer)[])
  }

  readonly flush = (): void => {
    this.flushScheduled = false
    const fields = this.outbox
    if (fields.length === 0) return
    this.outbox = []
    if (!this.open) return
    const { bytes, rejected } = this.codec.encode(fields)
    if (bytes !== undefined) this.port.postMessage(bytes, [bytes.buffer as ArrayBuffer])
    for (const { index, reason } of rejected) {
      const at = index * FIELDS_PER_ENVELOPE
      this.events.unencodable(
        this.peer,
        fields[at + F_KIND] as number,
        fields[at + F_TARGET] as number,
        fields[at + F_CORRELATION] as number,
        reason,
      )
    }
  }

  close(): void {
    this.flush()
    this.open = false
    this.port.close()
  }
}
