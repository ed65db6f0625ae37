import { mkdirSync } from 'node:fs'
import { open } from 'lmdb'
import type { KvBackend, Stored } from './backend.js'
import { PackedArray } from './packed.js'

/**
 * kv_lmdb: one LMDB environment per backend. A key is `namespace NUL key` as one string, so
 * entries sort by namespace, then by key in UTF-8 byte order (namespaces hold no NUL); one
 * string key costs half what an array key does. A value is an 8-byte expiry followed by the
 * msgpack bytes. Writes are lmdb-js's batched async puts: a put resolves once its transaction
 * has committed, which is when the actor acknowledges it.
 */
export function openLmdbKv(path: string, mapSizeMb: number): KvBackend {
  mkdirSync(path, { recursive: true })
  // Always a directory, as the config documents it: lmdb-js would take a path with a dot (data/kv.lmdb) for a file.
  const db = open<Buffer, string>({ path, noSubdir: false, mapSize: mapSizeMb * 1024 * 1024, encoding: 'binary', compression: false })
  const decode = (record: Buffer | undefined): Stored | undefined => {
    if (record === undefined || expired(record, Date.now())) return undefined
    return { bytes: record, offset: 8, expiresAt: record.readDoubleLE(0) }
  }
  const read = (namespace: string, key: string): Stored | undefined => decode(db.get(keyOf(namespace, key)))
  return {
    get: read,
    getMany: (namespace, keys) => keys.map(key => read(namespace, key)),
    // getBinaryFast hands back LMDB's bytes in a buffer reused by the next read: each value is
    // copied once, straight into the reply, and no read allocates.
    getManyPacked: (namespace, keys) => {
      const out = new PackedArray(keys.length)
      const now = Date.now()
      for (const key of keys) {
        const record = db.getBinaryFast(keyOf(namespace, key))
        if (record === undefined || expired(record, now)) out.nil()
        else out.value(record, 8, record.length) // length, not byteLength: the buffer is LMDB's whole read area
      }
      return out.bytes()
    },
    set: async (namespace, key, bytes, expiresAt) => {
      const record = Buffer.allocUnsafe(8 + bytes.byteLength)
      record.writeDoubleLE(expiresAt, 0)
      record.set(bytes, 8)
      await db.put(keyOf(namespace, key), record)
    },
    // lmdb-js's remove() resolves true even for a missing key: check and delete in one write
    // transaction, so the answer is exact even with deletes racing.
    delete: (namespace, key) =>
      db.transaction(() => {
        const full = keyOf(namespace, key)
        const existed = db.doesExist(full)
        if (existed) void db.remove(full)
        return existed
      }),
    scan: async (namespace, prefix, after, limit) => {
      const out: Array<{ key: string; stored: Stored }> = []
      const from = keyOf(namespace, prefix)
      for (const { key, value } of db.getRange({ start: keyOf(namespace, after ?? prefix) })) {
        if (!key.startsWith(from)) break
        const name = key.slice(namespace.length + 1)
        if (name === after) continue
        const stored = decode(value)
        if (stored === undefined) continue
        out.push({ key: name, stored })
        if (out.length === limit) break
      }
      return out
    },
    close: async () => {
      await db.flushed
      await db.close()
    },
  }
}

/** Whether a stored record's 8-byte expiry (0: never) has passed at `now`. */
function expired(record: Buffer, now: number): boolean {
  const expiresAt = record.readDoubleLE(0)
  return expiresAt !== 0 && expiresAt <= now
}

function keyOf(namespace: string, key: string): string {
  return `${namespace}\u0000${key}`
}
