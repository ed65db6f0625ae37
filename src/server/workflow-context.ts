import { createHmac, timingSafeEqual } from 'node:crypto'
import { Packr } from 'msgpackr'
import { HttpError } from './http.js'

/**
 * A workflow session's state as a client may carry it between runs: the LlamaIndex Workflows
 * protocol hands the client a run's "context" and accepts it back to start another run from.
 * troupe only takes back what it signed: `{ state, signature }`, where `state` is the session
 * state as base64 msgpack (data only: never an executable format) and `signature` the hex
 * HMAC-SHA256 of a domain line and that base64 text under `server.workflows_context_secret`.
 * The state is decoded only after the signature checks out.
 */
export interface SealedContext {
  readonly state: string
  readonly signature: string
}

/** Keeps these signatures apart from any other HMAC made with the same secret, and versions the format. */
const DOMAIN = 'troupe-context-v1\n'
const SIGNATURE_BYTES = 32

// Plain msgpack maps and arrays (no records extension), so any msgpack reader can read a context.
const codec = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })

export function sealContext(secret: string, state: Record<string, unknown>): SealedContext {
  const encoded = codec.pack(state).toString('base64')
  return { state: encoded, signature: sign(secret, encoded).toString('hex') }
}

/**
 * The session state a sealed context carries. Refused with 400 `bad_context` when no secret is
 * configured, when the context is not `{ state, signature }`, or when the signature does not
 * match: nothing is decoded from a context that was not signed here.
 */
export function openContext(secret: string | undefined, context: unknown): Record<string, unknown> {
  if (secret === undefined) {
    throw badContext('client contexts are refused: this server has no server.workflows_context_secret to check their signature with; set one, or continue a session with handler_id')
  }
  if (typeof context !== 'object' || context === null || Array.isArray(context)) throw badContext('context must be the object a handler returned: { state, signature }')
  const { state, signature } = context as Record<string, unknown>
  if (typeof state !== 'string' || typeof signature !== 'string') throw badContext('context must carry the string fields state and signature a handler returned')
  const given = /^[0-9a-f]+$/i.test(signature) ? Buffer.from(signature, 'hex') : Buffer.alloc(0)
  if (given.length !== SIGNATURE_BYTES || !timingSafeEqual(given, sign(secret, state))) throw badContext('context signature does not match: it was altered, or signed with another secret')
  let decoded: unknown
  try {
    decoded = codec.unpack(Buffer.from(state, 'base64'))
  } catch (error) {
    // Signed here yet unreadable: the secret is shared with something writing another format.
    throw badContext(`context state is signed but is not msgpack: ${(error as Error).message}`)
  }
  if (typeof decoded !== 'object' || decoded === null || Array.isArray(decoded)) throw badContext('context state is signed but is not an object')
  return decoded as Record<string, unknown>
}

function sign(secret: string, state: string): Buffer {
  return createHmac('sha256', secret).update(DOMAIN).update(state).digest()
}

function badContext(message: string): HttpError {
  return new HttpError(400, 'bad_context', message, 'context')
}
