import { randomFillSync } from 'node:crypto'

/**
 * A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits. Ids made later sort
 * after those made earlier (to the millisecond), so rows keyed by them, and by them and a
 * counter (a run's events and journal), are appended beside the newest: a commit touches a few
 * leaf pages instead of one per row scattered through the tree (measured in npm run bench:
 * wf_http_run_p50_ms). The random bits keep the ids unguessable.
 */
export function timeOrderedUuid(now: number = Date.now()): string {
  if (poolAt === POOL_BYTES) {
    randomFillSync(pool)
    poolAt = 0
  }
  const bytes = pool.subarray(poolAt, poolAt + 16)
  poolAt += 16
  bytes.writeUIntBE(now, 0, 6)
  bytes[6] = (bytes[6]! & 0x0f) | 0x70
  bytes[8] = (bytes[8]! & 0x3f) | 0x80
  const hex = bytes.toString('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

/** Random bytes drawn 256 ids at a time, as node's randomUUID draws its own. */
const POOL_BYTES = 16 * 256
const pool = Buffer.alloc(POOL_BYTES)
let poolAt = POOL_BYTES
