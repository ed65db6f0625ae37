import t from 'tap'
import { ModelCache, providerFingerprint } from '../../src/stack/model-cache.js'
import { maskSecrets, MASK, withoutSecrets } from '../../src/stack/provider-secrets.js'

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
  t.match(cache.stats(), { entries: 0, hits: 2, invalidations: { reload: 1, model_registered: 1, model_unregistered: 0, provider_restarted: 1 } })
})
