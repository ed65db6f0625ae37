import type { Owner } from '../../actors/stores/owner.js'

/**
 * A page of stored records that a caller may read, filled from a store that pages every
 * record with its owner. llama-stack's AuthorizedSqlStore filters each page it reads, so a
 * page there comes back short, or empty with more to come; this keeps reading until `limit`
 * readable records are found or the store has no more, so `limit`, `has_more` and
 * `first_id`/`last_id` mean what they mean without auth. Cursors are always ids the caller
 * may read: `after` must be one (else the store's own answer to a missing `after`), and
 * `last_id` is the last record returned, never one skipped.
 *
 * Bounded: one request reads at most MAX_SCANNED_ROWS records. A page cut short by that
 * answers what it found with `has_more` true, and the next page, after its `last_id`, reads on;
 * one that found nothing is empty with `has_more` true and no cursor to go on from, since the
 * ids it read are not the caller's to see.
 */

/** What one read of the store answers: a page of records, each record's owner, and the `after` record's owner when one was given. */
export interface OwnedRecords<T> {
  readonly data: readonly T[]
  readonly owners: ReadonlyArray<Owner | null>
  readonly has_more: boolean
  readonly after_owner?: Owner | null
}

export interface RecordList<T> {
  readonly object: 'list'
  readonly data: T[]
  readonly first_id: string | null
  readonly last_id: string | null
  readonly has_more: boolean
}

export interface ReadablePageQuery<T> {
  readonly after: string | undefined
  readonly limit: number
  /** The most records the store answers at once. */
  readonly maxBatch: number
  /** Reads `limit` records after the record `after` (from the start when undefined), with their owners. */
  readonly read: (after: string | undefined, limit: number) => Promise<OwnedRecords<T>>
  readonly idOf: (record: T) => string
  readonly mayRead: (id: string, owner: Owner | null) => boolean
  /** The store's answer to an `after` that does not exist, given for one the caller may not read. */
  readonly afterNotFound: (id: string) => Error
}

/** Records one request reads at most, readable or not. */
export const MAX_SCANNED_ROWS = 10_000

export async function readablePage<T>(query: ReadablePageQuery<T>): Promise<RecordList<T>> {
  const { limit, maxBatch, read, idOf, mayRead } = query
  const found: T[] = []
  let cursor = query.after
  // One more than the page: whether a readable record follows it is `has_more`.
  let batch = Math.min(limit + 1, maxBatch)
  let scanned = 0
  for (let first = true; ; first = false) {
    const page = await read(cursor, batch)
    if (first && cursor !== undefined && !mayRead(cursor, page.after_owner ?? null)) throw query.afterNotFound(cursor)
    for (let i = 0; i < page.data.length; i++) {
      const record = page.data[i]!
      if (!mayRead(idOf(record), page.owners[i] ?? null)) continue
      if (found.length === limit) return listOf(found, true, idOf)
      found.push(record)
    }
    scanned += page.data.length
    if (!page.has_more || page.data.length === 0) return listOf(found, false, idOf)
    if (scanned >= MAX_SCANNED_ROWS) return listOf(found, true, idOf)
    cursor = idOf(page.data[page.data.length - 1]!)
    // Most of what was read was not the caller's: read more at once.
    batch = Math.min(batch * 2, maxBatch)
  }
}

function listOf<T>(data: T[], hasMore: boolean, idOf: (record: T) => string): RecordList<T> {
  return { object: 'list', data, first_id: data.length === 0 ? null : idOf(data[0]!), last_id: data.length === 0 ? null : idOf(data[data.length - 1]!), has_more: hasMore }
}
