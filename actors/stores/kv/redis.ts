import { Redis } from 'ioredis'
import { ActorError } from '../../../src/index.js'
import type { KvBackend, Stored } from './backend.js'

const CONNECT_TIMEOUT_MS = 3000

/**
 * kv_redis: values under `troupe:<namespace>:<key>` with native expiry (PX); a sorted set per
 * namespace indexes the keys so a prefix scan is ordered (ZRANGEBYLEX) and paginated. Index
 * entries whose value has expired are skipped and removed as scans meet them.
 */
export async function openRedisKv(name: string, url: string): Promise<KvBackend> {
  const redis = new Redis(url, { lazyConnect: true, connectTimeout: CONNECT_TIMEOUT_MS, maxRetriesPerRequest: 2, enableOfflineQueue: false })
  redis.on('error', () => {}) // surfaced per command, and at connect below
  try {
    await redis.connect()
  } catch (error) {
    redis.disconnect()
    throw new ActorError('backend_unavailable', `kv_redis backend '${name}' cannot reach ${redactUrl(url)}: ${(error as Error).message}`)
  }
  const valueKey = (namespace: string, key: string): string => `troupe:${namespace}:${key}`
  const indexKey = (namespace: string): string => `troupe:index:${namespace}`
  const failed = (what: string) => (error: unknown): never => {
    throw new ActorError('backend_unavailable', `kv_redis backend '${name}': ${what} failed: ${(error as Error).message}`)
  }
  const stored = (bytes: Buffer | null): Stored | undefined => (bytes === null ? undefined : { bytes, expiresAt: 0 })
  return {
    get: (namespace, key) => redis.getBuffer(valueKey(namespace, key)).then(stored, failed('GET')),
    getMany: (namespace, keys) =>
      keys.length === 0 ? [] : redis.mgetBuffer(...keys.map(key => valueKey(namespace, key))).then(values => values.map(stored), failed('MGET')),
    set: async (namespace, key, bytes, expiresAt) => {
      const multi = redis.multi()
      if (expiresAt === 0) multi.set(valueKey(namespace, key), Buffer.from(bytes))
      else multi.set(valueKey(namespace, key), Buffer.from(bytes), 'PX', Math.max(1, expiresAt - Date.now()))
      multi.zadd(indexKey(namespace), 0, key)
      await multi.exec().then(checkExec, failed('SET'))
    },
    delete: async (namespace, key) => {
      const results = await redis.multi().del(valueKey(namespace, key)).zrem(indexKey(namespace), key).exec().then(checkExec, failed('DEL'))
      return results[0] === 1
    },
    scan: async (namespace, prefix, after, limit) => {
      const out: Array<{ key: string; stored: Stored }> = []
      let min = after === undefined ? `[${prefix}` : `(${after}`
      const max = Buffer.concat([Buffer.from(`[${prefix}`), Buffer.from([0xff])])
      while (out.length < limit) {
        const keys = await redis.zrangebylex(indexKey(namespace), min, max, 'LIMIT', 0, limit - out.length).catch(failed('ZRANGEBYLEX'))
        if (keys.length === 0) break
        const values = await redis.mgetBuffer(...keys.map(key => valueKey(namespace, key))).catch(failed('MGET'))
        const expired: string[] = []
        keys.forEach((key, i) => {
          const bytes = values[i]
          if (bytes === null || bytes === undefined) expired.push(key)
          else out.push({ key, stored: { bytes, expiresAt: 0 } })
        })
        if (expired.length > 0) await redis.zrem(indexKey(namespace), ...expired).catch(failed('ZREM'))
        min = `(${keys[keys.length - 1]!}`
      }
      return out
    },
    close: async () => {
      await redis.quit().catch(() => redis.disconnect())
    },
  }
}

function checkExec(results: Array<[Error | null, unknown]> | null): unknown[] {
  if (results === null) throw new Error('transaction aborted')
  return results.map(([error, value]) => {
    if (error !== null) throw error
    return value
  })
}

export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password !== '') parsed.password = '***'
    return parsed.toString()
  } catch {
    return '(unparseable url)' // never echo what might hold a secret
  }
}
