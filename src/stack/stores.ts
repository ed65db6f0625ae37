import type { ActorChildSpec } from '../actor/index.js'
import { backendFamily, type BackendConfig } from '../config/index.js'
import { kvStore, type KvStoreArgs } from '../../actors/stores/kv-store.js'
import { tableStore, type TableStoreArgs } from '../../actors/stores/table-store.js'

/** The name a backend's store actor is registered under, for lookup. */
export const storeActorName = (backend: string): string => `store:${backend}`

/**
 * One store actor per configured backend (one LMDB environment, one connection pool), shared
 * by every store that references it. They start first and stop last; each is restarted on its
 * own if it fails, after it has had drain_timeout_ms to finish acknowledged writes on a stop.
 */
/** The store actor of one backend: kv or table by the backend's family. */
export function storeChildSpec(name: string, backend: BackendConfig, drainMs: number): ActorChildSpec {
  const common = { id: storeActorName(name), name: storeActorName(name), placement: 'pool' as const, restart: 'permanent' as const, shutdownMs: drainMs }
  return backendFamily(backend.type) === 'kv'
    ? { ...common, behavior: kvStore, args: { name, config: backend } as KvStoreArgs }
    : { ...common, behavior: tableStore, args: { name, config: backend } as TableStoreArgs }
}
