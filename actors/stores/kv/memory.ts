import { compareUtf8 } from '../byte-order.js'
import type { KvBackend, Stored } from './backend.js'

/** kv_memory: a Map per namespace, for tests; everything is lost with the actor. */
export function openMemoryKv(): KvBackend {
  const namespaces = new Map<string, Map<string, Stored>>()
  const space = (namespace: string): Map<string, Stored> => {
    let map = namespaces.get(namespace)
    if (map === undefined) namespaces.set(namespace, (map = new Map()))
    return map
  }
  const live = (stored: Stored | undefined): Stored | undefined => (stored === undefined || (stored.expiresAt !== 0 && stored.expiresAt <= Date.now()) ? undefined : stored)
  return {
    get: (namespace, key) => live(namespaces.get(namespace)?.get(key)),
    getMany: (namespace, keys) => keys.map(key => live(namespaces.get(namespace)?.get(key))),
    set: async (namespace, key, bytes, expiresAt) => void space(namespace).set(key, { bytes, expiresAt }),
    delete: async (namespace, key) => namespaces.get(namespace)?.delete(key) ?? false,
    scan: async (namespace, prefix, after, limit) => {
      const entries = [...(namespaces.get(namespace) ?? new Map<string, Stored>())]
        .filter(([key, stored]) => key.startsWith(prefix) && (after === undefined || compareUtf8(key, after) > 0) && live(stored) !== undefined)
        .sort(([a], [b]) => compareUtf8(a, b))
      return entries.slice(0, limit).map(([key, stored]) => ({ key, stored }))
    },
    close: async () => namespaces.clear(),
  }
}
