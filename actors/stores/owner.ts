import { z } from 'zod'
import type { ColumnSpec } from './protocol.js'

/**
 * Who created a stored record (a chat completion, a conversation, an item): the authenticated
 * caller as they were then, kept in two columns beside the record, as llama-stack's
 * AuthorizedSqlStore keeps them (`owner_principal`, `access_attributes`). A record written
 * without authentication, or before a table had these columns, is unowned. The store keeps
 * and answers the owner; the server decides with its access policy who may see the record.
 */

export const ownerSchema = z.object({ principal: z.string(), attributes: z.record(z.string(), z.array(z.string())) })
export type Owner = z.infer<typeof ownerSchema>

/**
 * The owner's columns, nullable: a table made before them gains them (TableSpec migration on
 * both backends) with every existing row unowned.
 */
export const OWNER_COLUMNS: Readonly<Record<'owner_principal' | 'access_attributes', ColumnSpec>> = {
  owner_principal: { type: 'text', nullable: true },
  access_attributes: { type: 'json', nullable: true },
}

/** The owner's column values for a row. Both are always set (null when unowned), so putOp encodes the row without a copy. */
export function ownerColumns(owner: Owner | undefined): { owner_principal: string | null; access_attributes: Owner['attributes'] | null } {
  return owner === undefined ? { owner_principal: null, access_attributes: null } : { owner_principal: owner.principal, access_attributes: owner.attributes }
}

/** The owner a stored row records; null for an unowned one (no principal, or a row older than the columns). */
export function ownerOfRow(row: Record<string, unknown>): Owner | null {
  const principal = row['owner_principal']
  if (typeof principal !== 'string' || principal === '') return null
  const attributes = row['access_attributes']
  return { principal, attributes: typeof attributes === 'object' && attributes !== null ? (attributes as Owner['attributes']) : {} }
}
