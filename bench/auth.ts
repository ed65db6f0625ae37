import { createServer } from 'node:http'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { pino } from 'pino'
import { parseConfig } from '../src/config/index.js'
import { startStack, type RunningStack } from '../src/supervisor/stack.js'
import { listen, startBenchSystem } from './context.js'
import { measure, type BenchResult, type Subject } from './harness.js'
import { loadInTurn, startUpstream } from './http.js'

const subjects: Subject[] = [
  {
    name: 'http_chat_rps_jwt',
    unit: 'req/s',
    baseline: 'the same stack without server.auth (value: with oauth2_token against a JWKS, every request carrying one RS256 JWT, as one client sends it: verified once, then remembered)',
    better: 'higher',
    target: 'ratio >= 0.9',
  },
]

/**
 * What authentication costs a chat completion: two stacks alike but for server.auth, the same
 * upstream (in a process of its own, as http.ts runs it), loaded in turn. Every request to the
 * authenticated one carries the same RS256 JWT, as a client's requests do: the first is checked
 * against keys fetched once from a local JWKS, the rest find it among the tokens verified. The
 * issue's figure (`http_chat_rps_auth`) adds a five-rule access policy, which is not built: this
 * measures the authentication alone, under its own name.
 */
export async function authBench(rounds: number): Promise<BenchResult[]> {
  const upstream = await startUpstream()
  const { publicKey, privateKey } = await generateKeyPair('RS256')
  const jwk = { ...(await exportJWK(publicKey)), kid: 'bench', alg: 'RS256' }
  const jwks = createServer((_req, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })))
  const jwksUrl = await listen(jwks)
  const token = await new SignJWT({ groups: ['bench'] }).setProtectedHeader({ alg: 'RS256', kid: 'bench' }).setSubject('bench').setAudience('troupe-bench').setIssuer('https://bench.test').setExpirationTime('1h').sign(privateKey)
  const yaml = (auth: boolean) => `
providers:
  inference: [{ provider_id: up, provider_type: remote::openai, config: { base_url: ${upstream.url} } }]
registered_resources:
  models: [{ model_id: model-0, provider_id: up, provider_model_id: gpt-test }]
${auth ? `server:\n  auth:\n    provider_config: { type: oauth2_token, issuer: https://bench.test, audience: troupe-bench, jwks: { uri: '${jwksUrl}/jwks' } }\n` : ''}`
  const start = async (auth: boolean): Promise<RunningStack> => startStack(await startBenchSystem(1), parseConfig(yaml(auth), {}, 'bench-auth.yaml'), pino({ level: 'warn' }), { port: 0, host: '127.0.0.1' })
  const open = await start(false)
  const guarded = await start(true)
  const chat = JSON.stringify({ model: 'model-0', messages: [{ role: 'user', content: 'benchmark' }] })
  try {
    const check = await fetch(`${guarded.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: chat })
    if (check.status !== 200) throw new Error(`the authenticated stack answered ${check.status}: ${await check.text()}`)
    return await measure(subjects, rounds, 1, async () => {
      const rps = await loadInTurn({
        open: { url: `${open.url}/v1/chat/completions`, body: chat },
        guarded: { url: `${guarded.url}/v1/chat/completions`, body: chat, headers: { authorization: `Bearer ${token}` } },
      })
      return [{ value: rps.guarded, baseline: rps.open }]
    })
  } finally {
    await guarded.stop()
    await open.stop()
    await new Promise(resolve => jwks.close(resolve))
    await upstream.close()
  }
}
