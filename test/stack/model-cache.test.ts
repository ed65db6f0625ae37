import t from 'tap'
import { ModelCache, providerFingerprint } from '../../src/stack/model-cache.js'
import { isSecretKey, maskSecrets, MASK, providerRevision, withoutSecrets } from '../../src/stack/provider-secrets.js'

const config = { base_url: 'http://a/v1', api_key: 'sk-secret-1', timeout_ms: 1000, network: { tls: { verify: true }, api_token: 'tok-secret' } }

t.test("a provider's fingerprint leaves its secrets out, and changes with anything else", async t => {
  const a = providerFingerprint('p', 'remote::openai', config)
  t.equal(providerFingerprint('p', 'remote::openai', { ...config, api_key: 'sk-secret-2' }), a, 'another key is the same entry')
  t.equal(providerFingerprint('p', 'remote::openai', { timeout_ms: 1000, network: { api_token: 'x', tls: { verify: true } }, base_url: 'http://a/v1' }), a, 'key order does not matter')
  t.not(providerFingerprint('p', 'remote::openai', { ...config, base_url: 'http://b/v1' }), a, 'another URL is another entry')
  t.not(providerFingerprint('q', 'remote::openai', config), a, 'another provider is another entry')
  t.not(providerFingerprint('p', 'remote::vllm', config), a, 'another type is another entry')
  const stripped = JSON.stringify(withoutSecrets(config))
  t.notMatch(stripped, /secret/, 'nothing secret is hashed')
  t.same(withoutSecrets(config), { base_url: 'http://a/v1', network: { tls: { verify: true } }, timeout_ms: 1000 })
})

t.test('secrets are masked for display, unset ones shown as unset', async t => {
  t.same(maskSecrets({ ...config, password: '', token: null }), { base_url: 'http://a/v1', api_key: MASK, timeout_ms: 1000, network: { tls: { verify: true }, api_token: MASK }, password: '', token: null })
})

t.test('a secret is found by its words, in headers, and in URLs, whatever its spelling', async t => {
  for (const key of ['api_key', 'X-Api-Key', 'api-key', 'apiKey', 'apiToken', 'accessToken', 'clientSecret', 'Proxy-Authorization', 'x-auth-token', 'passphrase', 'aws_access_key_id', 'private_key', 'password']) {
    t.ok(isSecretKey(key), `${key} is a secret`)
  }
  for (const key of ['max_tokens', 'base_url', 'keyfile', 'timeout_ms', 'refresh_models', 'models', 'keep_alive']) t.notOk(isSecretKey(key), `${key} is not`)
  const shown = maskSecrets({
    base_url: 'https://user:pw@api.example.com/v1?api_key=sk-1&region=eu',
    network: { headers: { 'X-Custom': 'sk-in-a-header', Accept: 'application/json' } },
    clientSecret: 's3',
  })
  t.same(shown, {
    base_url: `https://${encodeURIComponent(MASK)}@api.example.com/v1?api_key=${encodeURIComponent(MASK)}&region=eu`,
    network: { headers: { 'X-Custom': MASK, Accept: MASK } },
    clientSecret: MASK,
  })
  const hashed = JSON.stringify(withoutSecrets({ base_url: 'https://user:pw@api.example.com/v1?api_key=sk-1&region=eu', network: { headers: { 'X-Custom': 'sk-in-a-header' } } }))
  t.notMatch(hashed, /pw|sk-1|sk-in-a-header|user/, 'the fingerprint is taken without any of them')
  t.match(hashed, /api\.example\.com\/v1\?region=eu/)
})

t.test("a revision changes with any change of the config, a key's included, and shows none of it", async t => {
  t.equal(providerRevision({ a: 1, api_key: 'k1' }), providerRevision({ api_key: 'k1', a: 1 }))
  t.not(providerRevision({ a: 1, api_key: 'k1' }), providerRevision({ a: 1, api_key: 'k2' }))
  t.notMatch(providerRevision({ api_key: 'k1' }), /k1/)
})

t.test('entries live for their TTL, and are dropped per provider or all, each drop counted by reason', async t => {
  const cache = new ModelCache()
  const listing = { models: [{ id: 'm', model_type: 'llm' as const }], listedAt: 1000, latencyMs: 3 }
  cache.set('fa', 'a', listing)
  cache.set('fb', 'b', { ...listing, listedAt: 1500 })
  t.same(cache.get('fa', 1999, 1000), listing, 'younger than the TTL: served')
  t.equal(cache.get('fa', 2000, 1000), undefined, 'at the TTL: gone')
  cache.invalidate('model_registered', 'a')
  t.equal(cache.get('fa', 1000, 1000), undefined, "a's entry is dropped")
  t.ok(cache.get('fb', 1500, 1000), "b's is kept")
  cache.invalidate('provider_restarted', 'b')
  cache.set('fa', 'a', listing)
  cache.invalidate('reload')
  t.equal(cache.get('fa', 1000, 1000), undefined, 'a reload drops everything')
  t.same(cache.stats(), { entries: 0, invalidations: { reload: 1, model_registered: 1, model_unregistered: 0, provider_restarted: 1 } })
})
