/**
 * Which fields of a provider's config are secrets, and the config without them: what the model
 * cache keys on and what /v1/providers shows. One pattern for both, so that nothing hidden from
 * one is shown by the other.
 */

/** Config keys that hold secrets, at any depth: api_key, api_token, token, password, secret, … */
const SECRET_KEY = /(^|_)(api_?key|key|token|api_token|secret|password|passwd|authorization|credentials?)$/i

/** What a masked secret shows. */
export const MASK = '********'

export const isSecretKey = (key: string): boolean => SECRET_KEY.test(key)

/** The value with every secret-named key removed and object keys sorted, so that equal configs hash alike. */
export function withoutSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutSecrets)
  if (typeof value !== 'object' || value === null) return value
  return Object.fromEntries(
    Object.keys(value)
      .filter(key => !isSecretKey(key))
      .sort()
      .map(key => [key, withoutSecrets((value as Record<string, unknown>)[key])]),
  )
}

/** The value with every secret that is set replaced by MASK: a config as /v1/providers shows it. */
export function maskSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(maskSecrets)
  if (typeof value !== 'object' || value === null) return value
  return Object.fromEntries(
    Object.entries(value).map(([key, v]) => [key, isSecretKey(key) && v !== undefined && v !== null && v !== '' ? MASK : maskSecrets(v)]),
  )
}
