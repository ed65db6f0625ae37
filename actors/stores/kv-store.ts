import { pack, unpack } from 'msgpackr'
import { ActorError, defineBehavior } from '../../src/index.js'
import type { BackendConfig } from '../../src/config/index.js'
import type { KvBackend, Stored } from './kv/backend.js'
import { PackedArray } from './kv/packed.js'
import { checkKey, checkNamespace, kvProtocol, MAX_PAGE, MAX_VALUE_BYTES, type KvMessage, type KvPage } from './protocol.js'

export interface KvStoreArgs {
  /** The backend's name under storage.backends, for errors and logs. */
  readonly name: string
  readonly config: Extract<BackendConfig, { type: 'kv_lmdb' | 'kv_redis' | 'kv_postgres' | 'kv_memory' }>
}

interface KvStoreState {
  readonly name: string
  readonly backend: KvBackend
}

const DEFAULT_PAGE = 100

/**
 * One key-value backend as an actor: every kv store that references the backend sends it
 * messages with its own namespace. Reads may reply synchronously; a write is acknowledged only
 * once the backend has it durably (LMDB committed, the server answered), so a stop after the
 * reply loses nothing. Once stopping, the kernel refuses new messages with `stopped`; the stop
 * hook waits for acknowledged writes to flush, then closes the backend.
 */
export const kvStore = defineBehavior(import.meta.url, 'kvStore', {
  protocol: kvProtocol,
  // Writes are acknowledged only when durable, so many must be in flight for LMDB to batch them.
  maxConcurrent: 1024,
  async init(args: KvStoreArgs): Promise<KvStoreState> {
    return { name: args.name, backend: await openBackend(args) }
  },
  receive(state, msg: KvMessage) {
    checkNamespace(msg.namespace)
    switch (msg.type) {
      case 'get':
        checkKey(msg.namespace, msg.key)
        return then(state.backend.get(msg.namespace, msg.key), msg.packed === true ? packedOrNull : decodeOrNull)
      case 'getMany': {
        msg.keys.forEach(key => checkKey(msg.namespace, key))
        if (msg.packed !== true) return then(state.backend.getMany(msg.namespace, msg.keys), values => values.map(decodeOrNull))
        return state.backend.getManyPacked?.(msg.namespace, msg.keys) ?? then(state.backend.getMany(msg.namespace, msg.keys), packArray)
      }
      case 'set': {
        checkKey(msg.namespace, msg.key)
        const bytes = encode(state.name, msg.value)
        return state.backend.set(msg.namespace, msg.key, bytes, expiryOf(msg.ttlMs)).then(() => null)
      }
      case 'setMany': {
        const checked = msg.entries.map(({ key, value, ttlMs }) => {
          checkKey(msg.namespace, key)
          return { key, bytes: encode(state.name, value), expiresAt: expiryOf(ttlMs) }
        })
        // Issued together, LMDB commits them in one transaction and the servers pipeline them.
        return Promise.all(checked.map(({ key, bytes, expiresAt }) => state.backend.set(msg.namespace, key, bytes, expiresAt))).then(() => null)
      }
      case 'setManyPacked': {
        const { namespace, keys, bytes, ends, ttlMs } = msg
        if (ends.length !== keys.length || (ttlMs !== undefined && ttlMs.length !== keys.length)) {
          throw new ActorError('bad_message', `setManyPacked: ${keys.length} keys, ${ends.length} ends and ${ttlMs?.length ?? 'no'} TTLs do not line up`)
        }
        const values = keys.map((key, i) => {
          checkKey(namespace, key)
          const start = i === 0 ? 0 : ends[i - 1]!
          const end = ends[i]!
          if (end <= start || end > bytes.byteLength) throw new ActorError('bad_message', `setManyPacked: value ${i} ends at ${end}, not within ${start + 1}..${bytes.byteLength}`)
          if (end - start > MAX_VALUE_BYTES) throw new ActorError('value_too_large', `backend '${state.name}': value is ${end - start} bytes, more than ${MAX_VALUE_BYTES}`)
          return bytes.subarray(start, end)
        })
        return Promise.all(keys.map((key, i) => state.backend.set(namespace, key, values[i]!, expiryOf(ttlMs?.[i] || undefined)))).then(() => null)
      }
      case 'delete':
        checkKey(msg.namespace, msg.key)
        return state.backend.delete(msg.namespace, msg.key)
      case 'scan':
        return scan(state, msg)
    }
  },
  async stop(state) {
    await state.backend.close()
  },
})

async function openBackend({ name, config }: KvStoreArgs): Promise<KvBackend> {
  switch (config.type) {
    case 'kv_memory':
      return (await import('./kv/memory.js')).openMemoryKv()
    case 'kv_lmdb':
      return (await import('./kv/lmdb.js')).openLmdbKv(config.path, config.map_size_mb)
    case 'kv_redis':
      return (await import('./kv/redis.js')).openRedisKv(name, config.url)
    case 'kv_postgres':
      return (await import('./kv/postgres.js')).openPostgresKv(name, config)
  }
}

async function scan(state: KvStoreState, msg: Extract<KvMessage, { type: 'scan' }>): Promise<KvPage> {
  const prefix = msg.prefix ?? ''
  const limit = Math.min(msg.limit ?? DEFAULT_PAGE, MAX_PAGE)
  let after: string | undefined
  if (msg.cursor !== undefined) {
    after = Buffer.from(msg.cursor, 'base64url').toString('utf8')
    if (!after.startsWith(prefix)) throw new ActorError('bad_cursor', `cursor does not belong to a scan of prefix '${prefix}'`)
  }
  // One extra entry tells whether another page exists.
  const entries = await state.backend.scan(msg.namespace, prefix, after, limit + 1)
  const page = entries.slice(0, limit)
  return {
    items: page.map(({ key, stored }) => ({ key, value: decode(stored) })),
    cursor: entries.length > limit ? Buffer.from(page[page.length - 1]!.key).toString('base64url') : null,
  }
}

function encode(backend: string, value: unknown): Uint8Array {
  let bytes: Uint8Array
  try {
    // A copy: pack() returns a view of msgpackr's scratch buffer, and the write is async.
    bytes = Uint8Array.prototype.slice.call(pack(value))
  } catch (error) {
    throw new ActorError('unencodable_value', `backend '${backend}': value cannot be encoded: ${(error as Error).message}`)
  }
  if (bytes.byteLength > MAX_VALUE_BYTES) {
    throw new ActorError('value_too_large', `backend '${backend}': value is ${bytes.byteLength} bytes, more than ${MAX_VALUE_BYTES}`)
  }
  return bytes
}

function expiryOf(ttlMs: number | undefined): number {
  return ttlMs === undefined ? 0 : Date.now() + ttlMs
}

function decode(stored: Stored): unknown {
  return stored.offset === undefined ? unpack(stored.bytes) : unpack(stored.bytes, { start: stored.offset, end: stored.bytes.byteLength })
}

/** The value's msgpack bytes, without copying them. */
function packedOrNull(stored: Stored | undefined): Uint8Array | null {
  if (stored === undefined) return null
  const { bytes, offset = 0 } = stored
  return offset === 0 ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset + offset, bytes.byteLength - offset)
}

/** Stored values as one msgpack array, nil for missing ones. */
function packArray(values: Array<Stored | undefined>): Uint8Array {
  const out = new PackedArray(values.length)
  for (const stored of values) {
    if (stored === undefined) out.nil()
    else out.value(stored.bytes, stored.offset ?? 0)
  }
  return out.bytes()
}

function decodeOrNull(stored: Stored | undefined): unknown {
  return stored === undefined ? null : decode(stored)
}

/** Applies `f` without a promise when the backend answered synchronously. */
function then<T, R>(value: T | Promise<T>, f: (value: T) => R): R | Promise<R> {
  return value instanceof Promise ? value.then(f) : f(value)
}
