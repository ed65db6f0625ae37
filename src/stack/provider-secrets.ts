import { createHmac, randomBytes } from 'node:crypto'

/**
 * Which fields of a provider's config are secrets, and the config without them: what the model
 * cache keys on and what /v1/providers shows. One rule for both, so that nothing hidden from
 * one is shown by the other.
 *
 * A key is a secret when one of its words (split at `_`, `-`, `.` and camelCase) is one of
 * SECRET_WORDS, or it is a pair such as `access key`: `api_key`, `X-Api-Key`, `apiToken`,
 * `clientSecret`, `Proxy-Authorization`, `aws_access_key_id`. Every value under `headers` is
 * a secret (a header may carry any credential), and in a URL its user info and the query
 * parameters with a secret name are.
 */

/** What a masked secret shows. */
export const MASK = '********'

const SECRET_WORDS = new Set(['key', 'apikey', 'token', 'apitoken', 'secret', 'password', 'passwd', 'passphrase', 'authorization', 'auth', 'credential', 'credentials', 'cookie', 'bearer', 'signature'])
/** Words that are secrets only together: `access key`, `private key`, `session id`. */
const SECRET_PAIRS = [['access', 'key'], ['private', 'key'], ['session', 'id']]

/** A key's words, lower-cased: `X-Api-Key` is x, api, key; `apiToken` is api, token. */
const wordsOf = (key: string): string[] => key.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase().split(/[\s_.-]+/).filter(Boolean)

export function isSecretKey(key: string): boolean {
  const words = wordsOf(key)
  if (words.some(word => SECRET_WORDS.has(word))) return true
  const joined = ` ${words.join(' ')} `
  return SECRET_PAIRS.some(pair => joined.includes(` ${pair.join(' ')} `))
}

/** The value with every secret removed and object keys sorted, so that equal configs hash alike. */
export function withoutSecrets(value: unknown): unknown {
  return rewrite(value, () => undefined, true)
}

/** The value with every secret that is set replaced by MASK: a config as /v1/providers shows it. */
export function maskSecrets(value: unknown): unknown {
  return rewrite(value, secret => (secret === undefined || secret === null || secret === '' ? secret : MASK), false)
}

/** A per-process key: a revision says whether a config changed, and nothing about the secrets in it. */
const REVISION_KEY = randomBytes(32)

/**
 * A digest of the whole config, secrets included, keyed by a secret of this process alone: two
 * configs that differ only in a key have different revisions, and no revision says anything
 * about the key to anyone who sees it (none should).
 */
export function providerRevision(config: unknown): string {
  return createHmac('sha256', REVISION_KEY).update(JSON.stringify(sorted(config))).digest('hex')
}

function sorted(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sorted)
  if (typeof value !== 'object' || value === null) return value
  return Object.fromEntries(Object.keys(value).sort().map(key => [key, sorted((value as Record<string, unknown>)[key])]))
}

/** Rewrites every secret with `replace` (undefined drops the key); `sort` orders object keys. */
function rewrite(value: unknown, replace: (secret: unknown) => unknown, sort: boolean, underHeaders = false): unknown {
  if (typeof value === 'string') return underHeaders ? replace(value) : withoutUrlSecrets(value, replace)
  if (Array.isArray(value)) return value.map(item => rewrite(item, replace, sort, underHeaders))
  if (typeof value !== 'object' || value === null) return underHeaders ? replace(value) : value
  const keys = Object.keys(value)
  const out: Record<string, unknown> = {}
  for (const key of sort ? keys.sort() : keys) {
    const v = (value as Record<string, unknown>)[key]
    const next = underHeaders || isSecretKey(key) ? replace(v) : rewrite(v, replace, sort, wordsOf(key).includes('headers'))
    if (next !== undefined || !(underHeaders || isSecretKey(key))) out[key] = next
  }
  return out
}

/** A URL's user info and secret-named query parameters rewritten; any other string as it is. */
function withoutUrlSecrets(text: string, replace: (secret: unknown) => unknown): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) return text
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return text
  }
  const masked = replace('x')
  const shown = typeof masked === 'string' ? masked : ''
  let changed = false
  if (url.username !== '' || url.password !== '') {
    url.username = shown
    url.password = ''
    changed = true
  }
  for (const name of [...url.searchParams.keys()]) {
    if (!isSecretKey(name)) continue
    if (shown === '') url.searchParams.delete(name)
    else url.searchParams.set(name, shown)
    changed = true
  }
  return changed ? url.toString() : text
}
