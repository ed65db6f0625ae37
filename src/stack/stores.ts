import type { ActorChildSpec } from '../actor/index.js'
import { backendFamily, sqliteLmdbPath, type BackendConfig } from '../config/index.js'
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
  const served = servedBackend(backend)
  return isKv(served)
    ? { ...common, behavior: kvStore, args: { name, config: served } satisfies KvStoreArgs }
    : { ...common, behavior: tableStore, args: { name, config: served } satisfies TableStoreArgs }
}

/**
 * The backend as a store actor serves it: llama-stack's SQLite backends become LMDB ones beside
 * their file (the config keeps its type, so that what is shown is what was written).
 */
export function servedBackend(backend: BackendConfig): Exclude<BackendConfig, { type: 'kv_sqlite' | 'sql_sqlite' }> {
  if (backend.type !== 'kv_sqlite' && backend.type !== 'sql_sqlite') return backend
  return { type: backend.type === 'kv_sqlite' ? 'kv_lmdb' : 'sql_lmdb', path: sqliteLmdbPath(backend.db_path), map_size_mb: backend.map_size_mb }
}

type ServedBackend = ReturnType<typeof servedBackend>
const isKv = (backend: ServedBackend): backend is KvStoreArgs['config'] => backendFamily(backend.type) === 'kv'
