import { isPlainObject } from './fields.js'
import type { ConfigIssue } from './load.js'
import { backendFamily, STORE_FAMILIES } from './schema.js'

/**
 * Checks that span sections: every store (server.quota's counts too) names a backend that
 * exists and is of the family it needs, and provider ids are unique within each API. They run
 * on the substituted input whether or not the field checks passed (zod skips refinements after
 * a field fails), so that one run reports every error.
 */
export function checkReferences(input: Record<string, unknown>, providerIndexes: ReadonlyMap<string, readonly number[]>): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  const storage = isPlainObject(input['storage']) ? input['storage'] : {}
  const backends = isPlainObject(storage['backends']) ? storage['backends'] : {}
  const stores = isPlainObject(storage['stores']) ? storage['stores'] : {}
  for (const [name, ref] of Object.entries(stores)) {
    if (!isPlainObject(ref) || typeof ref['backend'] !== 'string') continue
    const path = `storage.stores.${name}.backend`
    const backend = backends[ref['backend']]
    if (!isPlainObject(backend)) {
      issues.push({ path, message: noBackend(ref['backend'], backends) })
      continue
    }
    const needed = STORE_FAMILIES[name as keyof typeof STORE_FAMILIES]
    const type = String(backend['type'])
    const family = backendFamily(type)
    if (needed !== undefined && family !== undefined && family !== needed) {
      issues.push({ path, message: `store '${name}' needs a ${needed}_* backend, but '${ref['backend']}' is ${type}` })
    }
  }
  const server = isPlainObject(input['server']) ? input['server'] : {}
  const quotaStore = isPlainObject(server['quota']) ? server['quota']['kvstore'] : undefined
  if (isPlainObject(quotaStore) && typeof quotaStore['backend'] === 'string') {
    const path = 'server.quota.kvstore.backend'
    const backend = backends[quotaStore['backend']]
    if (!isPlainObject(backend)) issues.push({ path, message: noBackend(quotaStore['backend'], backends) })
    else if (backendFamily(String(backend['type'])) === 'sql') {
      issues.push({ path, message: `server.quota counts in a kv_* backend, but '${quotaStore['backend']}' is ${String(backend['type'])}` })
    }
  }
  const providers = isPlainObject(input['providers']) ? input['providers'] : {}
  for (const [api, list] of Object.entries(providers)) {
    if (!Array.isArray(list)) continue
    // llama-stack scopes provider ids per API (its starter names `builtin` under several).
    const seen = new Map<string, string>()
    list.forEach((provider: unknown, index) => {
      if (!isPlainObject(provider) || typeof provider['provider_id'] !== 'string') return
      const at = `providers.${api}[${providerIndexes.get(api)?.[index] ?? index}]`
      const other = seen.get(provider['provider_id'])
      if (other !== undefined) issues.push({ path: `${at}.provider_id`, message: `provider_id '${provider['provider_id']}' is already used by ${other}.provider_id (ids are unique within an API)` })
      seen.set(provider['provider_id'], at)
    })
  }
  return issues
}

function noBackend(name: string, backends: Record<string, unknown>): string {
  const known = Object.keys(backends)
  return `no backend named '${name}' (storage.backends has ${known.length ? known.join(', ') : 'none'})`
}
