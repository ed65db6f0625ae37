import type { ActorChildSpec, ActorRef, ActorSystem, Supervisor, SupervisorSpec } from '../actor/index.js'
import { backendFamily, type BackendConfig, type StackConfig } from '../config/index.js'
import { kvStore, type KvStoreArgs } from '../../actors/stores/kv-store.js'
import { tableStore, type TableStoreArgs } from '../../actors/stores/table-store.js'

/** The name a backend's store actor is registered under, for lookup. */
export const storeActorName = (backend: string): string => `store:${backend}`

/**
 * One store actor per configured backend (one LMDB environment, one connection pool), shared
 * by every store that references it. They start first and stop last; each is restarted on its
 * own if it fails, after it has had drain_timeout_ms to finish acknowledged writes on a stop.
 */
export function storesSupervisorSpec(config: StackConfig): SupervisorSpec {
  return {
    strategy: 'one_for_one',
    intensity: 5,
    periodMs: 10_000,
    backoff: { minMs: 100, maxMs: 5000, randomFactor: 0.2 },
    children: Object.entries(config.storage.backends).map(([name, backend]) => storeChildSpec(name, backend, config.troupe.drain_timeout_ms)),
  }
}

/** The store actor of one backend: kv or table by the backend's family. */
export function storeChildSpec(name: string, backend: BackendConfig, drainMs: number): ActorChildSpec {
  const common = { id: storeActorName(name), name: storeActorName(name), placement: 'pool' as const, restart: 'permanent' as const, shutdownMs: drainMs }
  return backendFamily(backend.type) === 'kv'
    ? { ...common, behavior: kvStore, args: { name, config: backend } as KvStoreArgs }
    : { ...common, behavior: tableStore, args: { name, config: backend } as TableStoreArgs }
}

/** The store actor of `backend`, started by startStores; throws if it is not there. */
export async function storeRef<M>(system: ActorSystem, backend: string): Promise<ActorRef<M>> {
  const ref = await system.lookup<M>(storeActorName(backend))
  if (ref === undefined) throw new Error(`actor '${storeActorName(backend)}' did not start`)
  return ref
}

export function startStores(system: ActorSystem, config: StackConfig): Promise<Supervisor> {
  return system.supervise(storesSupervisorSpec(config), { id: 'stores' })
}
