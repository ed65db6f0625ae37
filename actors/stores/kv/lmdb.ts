import { mkdirSync } from 'node:fs'
import { open } from 'lmdb'
import type { KvBackend, Stored } from './backend.js'

/**
 * kv_lmdb: one LMDB environment per backend. Keys are [namespace, key] in ordered-binary
 * (UTF-8 byte order); a value is an 8-byte expiry followed by the msgpack bytes. Writes are
 * lmdb-js's batched async puts: a put resolves once its transaction has committed, which is
 * when the actor acknowledges it.
 */
export function openLmdbKv(path: string, mapSizeMb: number): KvBackend {
  mkdirSync(path, { recursive: true })
  const db = open<Buffer, [string, string]>({ path, mapSize: mapSizeMb * 1024 * 1024, encoding: 'binary', compression: false })
  const decode = (record: Buffer | undefined): Stored | undefined => {
    if (record === undefined) return undefined
    const expiresAt = record.readDoubleLE(0)
    if (expiresAt !== 0 && expiresAt <= Date.now()) return undefined
    return { bytes: record.subarray(8), expiresAt }
  }
  return {
    get: (namespace, key) => decode(db.get([namespace, key])),
    getMany: (namespace, keys) => keys.map(key => decode(db.get([namespace, key]))),
    set: async (namespace, key, bytes, expiresAt) => {
      const record = Buffer.allocUnsafe(8 + bytes.byteLength)
      record.writeDoubleLE(expiresAt, 0)
      record.set(bytes, 8)
      await db.put([namespace, key], record)
    },
    // lmdb-js's remove() resolves true even for a missing key: check and delete in one write
    // transaction, so the answer is exact even with deletes racing.
    delete: (namespace, key) =>
      db.transaction(() => {
        const existed = db.doesExist([namespace, key])
        if (existed) void db.remove([namespace, key])
        return existed
      }),
    scan: async (namespace, prefix, after, limit) => {
      const out: Array<{ key: string; stored: Stored }> = []
      for (const { key, value } of db.getRange({ start: [namespace, after ?? prefix] })) {
        const [space, name] = key
        if (space !== namespace || !name.startsWith(prefix)) break
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
