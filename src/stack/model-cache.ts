import { createHash } from 'node:crypto'
import type { UpstreamModel } from '../../actors/providers/inference/protocol.js'
import { withoutSecrets } from './provider-secrets.js'

/**
 * What each provider listed at its last answer, served for a TTL: /v1/models lists it (with
 * refresh_models) and registered models are checked against it while it is younger than
 * `cache_ttl_ms`; a provider that has not answered for longer shows no models rather than
 * stale ones.
 *
 * Entries are keyed by the provider's fingerprint: a hash of its id, type and config with the
 * secrets left out, so that a changed config is a different entry, and no key, token or
 * password is ever held here: not in the key (the fingerprint is taken without them), not in
 * the value (model lists only).
 *
 * Every path that may change what a provider serves drops its entry, and the provider is asked
 * again: a config reload (everything), a model registered or unregistered over HTTP (that
 * model's provider), a provider's crash restart (that one).
 */

/** A model a provider says it serves, with what it reports of it: the provider protocol's own shape. */
export type ServedModel = UpstreamModel

export interface CachedListing {
  readonly models: readonly ServedModel[]
  /** ms since the epoch. */
  readonly listedAt: number
  readonly latencyMs: number
}

/** Why an entry was dropped: the counts are shown in /v1/inspect/runtime. */
export type InvalidationReason = 'reload' | 'model_registered' | 'model_unregistered' | 'provider_restarted'

export interface ModelCacheStats {
  readonly entries: number
  /** Entries dropped, by the path that dropped them. */
  readonly invalidations: Readonly<Record<InvalidationReason, number>>
}

/** The cache key of a provider: sha256 over its id, type and config, secrets left out, keys sorted. */
export function providerFingerprint(providerId: string, providerType: string, config: unknown): string {
  return createHash('sha256').update(JSON.stringify([providerId, providerType, withoutSecrets(config)])).digest('hex')
}

export class ModelCache {
  readonly #entries = new Map<string, { readonly providerId: string; readonly listing: CachedListing }>()
  readonly #invalidations: Record<InvalidationReason, number> = { reload: 0, model_registered: 0, model_unregistered: 0, provider_restarted: 0 }

  /** The listing under `fingerprint` if it is younger than `ttlMs` at `now`. */
  get(fingerprint: string, now: number, ttlMs: number): CachedListing | undefined {
    const entry = this.#entries.get(fingerprint)
    return entry !== undefined && now - entry.listing.listedAt < ttlMs ? entry.listing : undefined
  }

  set(fingerprint: string, providerId: string, listing: CachedListing): void {
    this.#entries.set(fingerprint, { providerId, listing })
  }

  /** Drops the entries of one provider, or of all, counting the event under `reason`. */
  invalidate(reason: InvalidationReason, providerId?: string): void {
    for (const [key, entry] of this.#entries) if (providerId === undefined || entry.providerId === providerId) this.#entries.delete(key)
    this.#invalidations[reason]++
  }

  stats(): ModelCacheStats {
    return { entries: this.#entries.size, invalidations: { ...this.#invalidations } }
  }
}
