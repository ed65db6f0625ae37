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
  {
    name: 'http_chat_rps_auth',
    unit: 'req/s',
    baseline: 'the same stack without server.auth (value: the JWT stack with a five-rule access_policy, the rule that permits the chat last, so every request is judged by all five)',
    better: 'higher',
    target: 'ratio >= 0.9',
  },
]

/**
 * Five rules in llama-stack's shape, the permitting one last: a request for the model is judged
 * against every rule before it (a principal, a regex, conditions on roles and teams).
 */
const FIVE_RULES = `
    access_policy:
      - forbid: { actions: [delete], resource: "model::*" }
        unless: user with admin in roles
      - forbid: { principal: intruder, actions: [create, read, update, delete] }
      - permit: { actions: [read], resource: "regex:model::internal-.*" }
        when: user with admin in roles
      - permit: { actions: [create], resource: "model::*" }
        when: user with developer in roles
      - permit: { actions: [read], resource: "model::*" }
        when: user with bench in teams
`

/**
 * What authentication costs a chat completion: two stacks alike but for server.auth, the same
 * upstream (in a process of its own, as http.ts runs it), loaded in turn. Every request to the
 * authenticated one carries the same RS256 JWT, as a client's requests do: the first is checked
 * against keys fetched once from a local JWKS, the rest find it among the tokens verified.
 * `http_chat_rps_auth` is a third stack, the same with a five-rule access policy besides: every
 * chat is then also a read check of its model.
 */
export async function authBench(rounds: number): Promise<BenchResult[]> {
  const upstream = await startUpstream()
  const { publicKey, privateKey } = await generateKeyPair('RS256')
  const jwk = { ...(await exportJWK(publicKey)), kid: 'bench', alg: 'RS256' }
  const jwks = createServer((_req, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })))
  const jwksUrl = await listen(jwks)
  const token = await new SignJWT({ groups: ['bench'] }).setProtectedHeader({ alg: 'RS256', kid: 'bench' }).setSubject('bench').setAudience('troupe-bench').setIssuer('https://bench.test').setExpirationTime('1h').sign(privateKey)
  type Guard = 'none' | 'jwt' | 'policy'
  const yaml = (guard: Guard) => `
providers:
  inference: [{ provider_id: up, provider_type: remote::openai, config: { base_url: ${upstream.url} } }]
registered_resources:
  models: [{ model_id: model-0, provider_id: up, provider_model_id: gpt-test }]
${guard === 'none' ? '' : `server:\n  auth:\n    provider_config: { type: oauth2_token, issuer: https://bench.test, audience: troupe-bench, jwks: { uri: '${jwksUrl}/jwks' } }\n${guard === 'policy' ? FIVE_RULES : ''}`}`
  const start = async (guard: Guard): Promise<RunningStack> => startStack(await startBenchSystem(1), parseConfig(yaml(guard), {}, 'bench-auth.yaml'), pino({ level: 'warn' }), { port: 0, host: '127.0.0.1' })
  const open = await start('none')
  const guarded = await start('jwt')
  const policed = await start('policy')
  const chat = JSON.stringify({ model: 'model-0', messages: [{ role: 'user', content: 'benchmark' }] })
  try {
    for (const stack of [guarded, policed]) {
      const check = await fetch(`${stack.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: chat })
      if (check.status !== 200) throw new Error(`the authenticated stack answered ${check.status}: ${await check.text()}`)
    }
    // The policy is in force: a delete by this caller (no admin role) is refused by the first rule.
    const refused = await fetch(`${policed.url}/v1/models/model-0`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } })
    if (refused.status !== 403) throw new Error(`the policed stack let a delete through: ${refused.status} ${await refused.text()}`)
    return await measure(subjects, rounds, 1, async () => {
      const rps = await loadInTurn({
        open: { url: `${open.url}/v1/chat/completions`, body: chat },
        guarded: { url: `${guarded.url}/v1/chat/completions`, body: chat, headers: { authorization: `Bearer ${token}` } },
        policed: { url: `${policed.url}/v1/chat/completions`, body: chat, headers: { authorization: `Bearer ${token}` } },
      })
      return [
        { value: rps.guarded, baseline: rps.open },
        { value: rps.policed, baseline: rps.open },
      ]
    })
  } finally {
    await policed.stop()
    await guarded.stop()
    await open.stop()
    await new Promise(resolve => jwks.close(resolve))
    await upstream.close()
  }
}
