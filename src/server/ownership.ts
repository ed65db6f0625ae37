import type { ModelOwner } from '../../actors/routing/models.js'
import type { Owner } from '../../actors/stores/owner.js'
import { AccessPolicy, type Action, type ProtectedResource, type SqlRecordTable } from './access-policy.js'
import type { Principal } from './auth.js'
import { HttpError } from './http.js'
import type { ServedRequest } from './served-request.js'

/**
 * Resource ownership, as llama-stack records it: a resource made by an authenticated caller
 * keeps that caller (principal and attributes, as they were then) as its owner; one made
 * without authentication (the models of the config) is unowned. The access policy decides
 * from the owner who may do what with it. A store keeps `owner` beside the resource; a route
 * uses these to answer only with what its caller may see.
 *
 * A resource the caller may not read is answered as one that does not exist (404), so that
 * ids do not leak; one they may read but not update or delete is 403, since its existence
 * is no secret to them (llama-stack answers the same: not found, or AccessDeniedError).
 */

/** The access policy `request` is held to: its snapshot's, or llama-stack's default, which holds only authenticated callers (so without authentication it allows all). */
export function accessPolicyOf(request: ServedRequest): AccessPolicy {
  return request.auth?.accessPolicy ?? AccessPolicy.DEFAULT
}

/** Who owns what `user` makes now: a copy of the caller, to be stored with it; undefined (unowned) without authentication. */
export function ownerOf(user: Principal | undefined): ModelOwner | undefined {
  if (user === undefined) return undefined
  return { principal: user.principal, attributes: Object.fromEntries(Object.entries(user.attributes).map(([name, values]) => [name, [...values]])) }
}

/** A stored record as the policy sees it: `sql_record::<table>::<id>`, with its owner (null: unowned). */
export function storedRecord(table: SqlRecordTable, id: string, owner: Owner | null): ProtectedResource {
  return { type: `sql_record::${table}`, identifier: id, owner: owner ?? undefined }
}

/** The items of `items` that `user` may read, in order; all of them without authentication. */
export function readableBy<T>(policy: AccessPolicy, user: Principal | undefined, items: readonly T[], resourceOf: (item: T) => ProtectedResource): T[] {
  if (user === undefined) return [...items]
  return items.filter(item => policy.allows('read', resourceOf(item), user))
}

/**
 * Throws unless `user` may `action` the existing `resource`: `notFound` when they may not read
 * it (the same error a missing id gets), 403 `forbidden` when they may read it but not this.
 */
export function authorizeAction(policy: AccessPolicy, action: Exclude<Action, 'create'>, resource: ProtectedResource, user: Principal | undefined, notFound: () => Error): void {
  if (user === undefined) return
  if (!policy.allows('read', resource, user)) throw notFound()
  if (action !== 'read' && !policy.allows(action, resource, user)) throw forbidden(action, resource, user)
}

/** Throws 403 `forbidden` unless `user` may create `resource` (unowned until it exists, as llama-stack checks it). */
export function authorizeCreate(policy: AccessPolicy, resource: ProtectedResource, user: Principal | undefined): void {
  if (user !== undefined && !policy.allows('create', { type: resource.type, identifier: resource.identifier }, user)) throw forbidden('create', resource, user)
}

function forbidden(action: Action, resource: ProtectedResource, user: Principal): HttpError {
  return new HttpError(403, 'forbidden', `'${user.principal}' may not ${action} ${resource.type}::${resource.identifier}`)
}
