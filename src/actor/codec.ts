import { Packr, Unpackr, addExtension } from 'msgpackr'
import { FIELDS_PER_ENVELOPE, F_PAYLOAD, malformedBatch } from './envelope.js'
import { ActorError, describeThrown } from './errors.js'
import { ActorRef } from './ref.js'

/** msgpack extension type for an ActorRef inside a message. */
const REF_EXTENSION_TYPE = 0x54

/** Whoever decodes a batch turns (slot, generation, name) back into a ref bound to its thread. */
export interface RefFactory {
  refFor(slot: number, generation: number, name: string | undefined): ActorRef
}

/**
 * msgpackr registers extensions for the whole process, not per decoder, so the decoder that is
 * running binds itself here for the duration of one synchronous unpack call. Unpacking never
 * yields, so no other decode can observe the binding: it is a dynamic scope, not shared state.
 */
let decodingFor: RefFactory | undefined

addExtension({
  Class: ActorRef,
  type: REF_EXTENSION_TYPE,
  write(ref: ActorRef): unknown {
    return [ref.slot, ref.generation, ref.name ?? null]
  },
  read(data: unknown): ActorRef {
    if (decodingFor === undefined) throw new Error('an ActorRef can only be decoded by an actor host')
    if (!isRefData(data)) throw new Error('an ActorRef extension must hold [slot, generation, name]')
    return decodingFor.refFor(data[0], data[1], data[2] ?? undefined)
  },
})

function isRefData(data: unknown): data is [number, number, string | null] {
  return Array.isArray(data) && data.length === 3 && Number.isInteger(data[0]) && Number.isInteger(data[1]) && (typeof data[2] === 'string' || data[2] === null)
}

export interface EncodedBatch {
  /** An exact-size copy of the packed bytes, safe to transfer. */
  bytes: Uint8Array | undefined
  /** Envelope indexes that could not be encoded; they are not in `bytes`. */
  rejected: Array<{ index: number; reason: string }>
}

/**
 * A record's shape is written and read once per batch, which pays only once shapes repeat: a
 * pack and unpack of 1–4 chat requests or replies took 0.55–0.9 the time as plain maps, of 8
 * about the same, of 16 and 32 1.15–1.45 times as long. So a batch packs records from this many
 * envelopes, or when a payload carries a list at least this long (a transaction of 45 rows
 * took 8.6 µs a row as records, 15.7 as maps); otherwise maps.
 */
const RECORDS_FROM = 8

/** Whether a small batch repeats shapes all the same: a payload is, or holds, a long list. */
function carriesLongList(fields: readonly unknown[]): boolean {
  for (let at = F_PAYLOAD; at < fields.length; at += FIELDS_PER_ENVELOPE) {
    const payload = fields[at]
    if (typeof payload !== 'object' || payload === null) continue
    if (Array.isArray(payload)) {
      if (payload.length >= RECORDS_FROM) return true
      continue
    }
    // Plain objects only: a for-in over a typed array walks every byte.
    if ((payload as object).constructor !== Object) continue
    for (const key in payload) {
      const value = (payload as Record<string, unknown>)[key]
      if (Array.isArray(value) && value.length >= RECORDS_FROM) return true
    }
  }
  return false
}

/**
 * Packs batches of flat envelope fields. Where shapes repeat, records (msgpackr's shared
 * structures) are defined inline once per batch, so a batch of similar messages pays for each
 * shape once and no structure table needs to be kept in sync between threads; elsewhere it
 * packs plain maps. The decoder reads either.
 */
export class EnvelopeCodec {
  private readonly recordPackr = new Packr({ useRecords: true })
  private readonly mapPackr = new Packr({ useRecords: false })
  private readonly unpackr = new Unpackr({ useRecords: true, mapsAsObjects: true })

  constructor(private readonly refs: RefFactory) {}

  encode(fields: unknown[]): EncodedBatch {
    const packr = fields.length >= RECORDS_FROM * FIELDS_PER_ENVELOPE || carriesLongList(fields) ? this.recordPackr : this.mapPackr
    try {
      return { bytes: copyOut(packr.pack(fields)), rejected: [] }
    } catch {
      // Some payload in the batch is not encodable. Find which envelopes, drop only those, and
      // report them so asks reject with bad_message instead of the whole batch being lost.
      return this.encodeSkippingBad(packr, fields)
    }
  }

  /**
   * The fields of a batch another thread encoded. Bytes that are not msgpack, or not a batch of
   * envelopes this thread can route (envelope.ts, malformedBatch), are refused with
   * `bad_envelope`, whatever the decoder threw: the link drops the batch and says so, where an
   * error escaping here would end the thread.
   */
  decode(bytes: Uint8Array): unknown[] {
    let fields: unknown
    decodingFor = this.refs
    try {
      fields = this.unpackr.unpack(bytes)
    } catch (error) {
      throw new ActorError('bad_envelope', `a batch of ${bytes.byteLength} bytes is not valid msgpack: ${describeThrown(error)}`, undefined, { cause: error })
    } finally {
      decodingFor = undefined
    }
    const wrong = malformedBatch(fields)
    if (wrong !== undefined) throw new ActorError('bad_envelope', `a batch of ${bytes.byteLength} bytes is not a batch of envelopes: ${wrong}`)
    return fields as unknown[]
  }

  private encodeSkippingBad(packr: Packr, fields: unknown[]): EncodedBatch {
    const kept: unknown[] = []
    const rejected: EncodedBatch['rejected'] = []
    for (let i = 0; i < fields.length; i += FIELDS_PER_ENVELOPE) {
      const envelope = fields.slice(i, i + FIELDS_PER_ENVELOPE)
      try {
        packr.pack(envelope)
        kept.push(...envelope)
      } catch (error) {
        rejected.push({ index: i / FIELDS_PER_ENVELOPE, reason: error instanceof Error ? error.message : String(error) })
      }
    }
    return { bytes: kept.length > 0 ? copyOut(packr.pack(kept)) : undefined, rejected }
  }
}

/**
 * pack() returns a view into msgpackr's reusable scratch buffer. Transferring that view would
 * detach the scratch buffer, and posting it without transfer copies all of it; copy exactly the
 * packed bytes instead.
 */
function copyOut(view: Uint8Array): Uint8Array {
  return Uint8Array.prototype.slice.call(view)
}
