import { readFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { parseConfig } from '../../src/config/index.js'
import { checkStack } from '../../src/supervisor/stack.js'
import { stackYaml, startFakeUpstreams, startTestStack, tempDir } from '../fixtures/stack.js'

// A self-signed certificate for localhost and 127.0.0.1, valid until 2126, made for these tests
// with openssl; the key protects nothing.
const certfile = fileURLToPath(new URL('../fixtures/tls/cert.pem', import.meta.url))
const keyfile = fileURLToPath(new URL('../fixtures/tls/key.pem', import.meta.url))

const { openai, ollama } = await startFakeUpstreams(t)

function get(url: string, ca: Buffer | undefined, client: { cert: Buffer; key: Buffer } | undefined = undefined): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, ...client }, res => {
      let body = ''
      res.on('data', chunk => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('server.tls serves the API over HTTPS with the configured certificate', async t => {
  const yaml = `${stackYaml(openai, ollama, tempDir(t))}server:\n  tls: { certfile: ${certfile}, keyfile: ${keyfile} }\n`
  const stack = await startTestStack(t, yaml)
  t.match(stack.url, /^https:\/\/127\.0\.0\.1:\d+$/)
  const version = await get(`${stack.url}/v1/version`, readFileSync(certfile))
  t.equal(version.status, 200)
  t.match(JSON.parse(version.body), { image_name: 'test-stack' })
  await t.rejects(get(`${stack.url}/v1/version`, undefined), /self[- ]signed/i, 'a client that does not trust the certificate is refused')
})

t.test('server.tls.cafile makes clients present a certificate it signed', async t => {
  const yaml = `${stackYaml(openai, ollama, tempDir(t))}server:\n  tls: { certfile: ${certfile}, keyfile: ${keyfile}, cafile: ${certfile} }\n`
  const stack = await startTestStack(t, yaml)
  const ca = readFileSync(certfile)
  t.equal((await get(`${stack.url}/v1/version`, ca, { cert: readFileSync(certfile), key: readFileSync(keyfile) })).status, 200, 'a client with a signed certificate is served')
  await t.rejects(get(`${stack.url}/v1/version`, ca), 'a client without one is refused')
})

t.test('server.tls files that cannot be read are config errors naming the field', async t => {
  const yaml = `${stackYaml(openai, ollama, tempDir(t))}server:\n  tls: { certfile: /nonexistent/cert.pem, keyfile: ${keyfile} }\n`
  t.throws(() => checkStack(parseConfig(yaml, {}, 'tls.yaml')), { message: /server\.tls\.certfile: cannot read \/nonexistent\/cert\.pem: ENOENT/ })
})

t.test('an incomplete server.auth is refused: troupe never serves unauthenticated a config that asks for authentication', async t => {
  const yaml = `${stackYaml(openai, ollama, tempDir(t))}server:\n  auth: { provider_config: { type: oauth2_token } }\n`
  t.throws(() => checkStack(parseConfig(yaml, {}, 'auth.yaml')), { message: /server\.auth\.provider_config\.jwks: set one of jwks or introspection/ })
})
