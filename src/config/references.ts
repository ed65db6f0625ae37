import { isPlainObject } from './fields.js'
import type { ConfigIssue } from './load.js'
import { backendFamily, STORE_FAMILIES } from './schema.js'

/**
 * Checks that span sections: every store names a backend that exists and is of the family it
 * needs, and provider ids are unique within each API. They run on the substituted input whether or not the
 * field checks passed (zod skips refinements after a field fails), so that one run reports
 * every error.
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
      const known = Object.keys(backends)
      issues.push({ path, message: `no backend named '${ref['backend']}' (storage.backends has ${known.length ? known.join(', ') : 'none'})` })
      continue
    }
    const needed = STORE_FAMILIES[name as keyof typeof STORE_FAMILIES]
    const type = String(backend['type'])
    const family = backendFamily(type)
    if (needed !== undefined && family !== undefined && family !== needed) {
      issues.push({ path, message: `store '${name}' needs a ${needed}_* backend, but '${ref['backend']}' is ${type}` })
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
